//! Where a function's init time goes: each step of `twofa::http::lambda::run` before the first
//! Runtime API poll, timed alone in a fresh process (release build, as the functions). With
//! `AWS_ENDPOINT_URL` set (make bench: the init stand-in) it also times three Secrets Manager
//! calls: the first pays the SDK's one-time request setup.

use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut parts: Vec<(&str, f64)> = Vec::new();
    let t = Instant::now();
    // A region's patterns compile the first time one of its numbers is parsed: here the US.
    let _ = twofa::domain::phone::parse("+14155550100", "to");
    parts.push(("first_us_number_ms", ms(t.elapsed())));
    let t = Instant::now();
    twofa::http::lambda::init_tracing();
    parts.push(("tracing_ms", ms(t.elapsed())));
    let t = Instant::now();
    let sdk = twofa::adapters::aws::aws_config().await;
    parts.push(("aws_config_ms", ms(t.elapsed())));
    let t = Instant::now();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    parts.push(("one_client_ms", ms(t.elapsed())));
    let t = Instant::now();
    let more = (aws_sdk_sns::Client::new(&sdk), aws_sdk_ses::Client::new(&sdk));
    parts.push(("two_more_clients_ms", ms(t.elapsed())));
    let t = Instant::now();
    let keys = twofa::domain::crypto::Keys::from_master(&[7u8; 64]).expect("keys");
    parts.push(("keys_ms", ms(t.elapsed())));
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        for name in ["secret_call_1_ms", "secret_call_2_ms", "secret_call_3_ms"] {
            let t = Instant::now();
            let _ = sm.get_secret_value().secret_id("twofa").send().await;
            parts.push((name, ms(t.elapsed())));
        }
    }
    drop((ddb, more, keys));
    let line: Vec<String> = parts.iter().map(|(name, v)| format!("{name}={v:.2}")).collect();
    println!("init_parts {}", line.join(" "));
}
