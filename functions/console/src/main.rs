//! Lambda for the operator console (`/console`, docs/console.md): everything lives in the
//! shared crate. It sends nothing, so it is built without the delivery clients.

#[tokio::main]
async fn main() -> Result<(), twofa::http::lambda::BoxError> {
    twofa::http::lambda::run_with(twofa::http::console::router, twofa::http::lambda::sending_nothing).await
}
