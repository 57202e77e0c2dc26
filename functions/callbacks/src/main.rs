//! Lambda: see `twofa::workers::callbacks` (everything lives in the shared crate).

#[tokio::main]
async fn main() -> Result<(), twofa::workers::BoxError> {
    twofa::workers::callbacks::run().await
}
