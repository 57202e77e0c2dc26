//! twofa: the domain, its ports, the adapters behind them and the HTTP routers.
//!
//! `domain` is plain Rust (no AWS SDK), `ports` are the small traits the domain needs,
//! `adapters` implement them (embedded and, with the `aws` feature, AWS), and `http` holds one
//! axum router per endpoint group, shared by the Lambdas and the dev server.

pub mod adapters;
pub mod domain;
pub mod http;
pub mod ports;
#[cfg(feature = "aws")]
pub mod workers;

pub use domain::error::{Error, Result};
