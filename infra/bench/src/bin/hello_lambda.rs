//! Baseline for the Lambda figures: the smallest `lambda_http` function, built with the same
//! profile as the twofa functions (size, init time).

use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(r#"{"message":"hello"}"#))?,
        )
    }))
    .await
}
