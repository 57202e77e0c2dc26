//! Lambda: see `twofa::workers::receipts` (everything lives in the shared crate).

#[tokio::main]
async fn main() -> Result<(), twofa::workers::BoxError> {
    twofa::workers::receipts::run().await
}
