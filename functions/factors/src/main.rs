//! Lambda for the factors endpoint group (`/2fa/entities/{entity}/factors`): everything lives
//! in the shared crate. A factor's challenge sends nothing, so it is built without the
//! delivery clients.

#[tokio::main]
async fn main() -> Result<(), twofa::http::lambda::BoxError> {
    twofa::http::lambda::run_with(twofa::http::factors::router, twofa::http::lambda::sending_nothing).await
}
