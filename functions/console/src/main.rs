//! Lambda for the operator console (`/console`, docs/console.md): everything lives in the
//! shared crate.

#[tokio::main]
async fn main() -> Result<(), twofa::http::lambda::BoxError> {
    twofa::http::lambda::run(twofa::http::console::router).await
}
