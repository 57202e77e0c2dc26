//! Baseline for the dev server's throughput: axum answering a small JSON to any POST or GET,
//! on the same runtime, allocator (and its settings) and profile (`speed`) as `twofa-local`.
//! `PORT` (default 3001).

use axum::{routing::any, Json, Router};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The dev server's allocator settings, by the same code.
    twofa_local::tune_allocator();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    let app = Router::new().fallback(any(|| async { Json::<Value>(json!({ "code": 200, "message": "OK" })) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
