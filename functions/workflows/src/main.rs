//! Lambda for the /2fa workflows endpoint group: everything lives in the shared crate.

#[tokio::main]
async fn main() -> Result<(), twofa::http::lambda::BoxError> {
    twofa::http::lambda::run(twofa::http::workflows::router).await
}
