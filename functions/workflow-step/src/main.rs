//! Lambda for one workflow step (the state machine's Task): everything lives in the shared crate.

#[tokio::main]
async fn main() -> Result<(), twofa::http::lambda::BoxError> {
    twofa::http::step_lambda::run().await
}
