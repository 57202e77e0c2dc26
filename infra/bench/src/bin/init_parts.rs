//! Where a function's init time goes: each step of `twofa::http::lambda::run` before the first
//! Runtime API poll, timed alone in a fresh process (release build, as the functions).

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let t = Instant::now();
    // A region's patterns compile the first time one of its numbers is parsed: here the US.
    let _ = twofa::domain::phone::parse("+14155550100", "to");
    let phone = t.elapsed();
    let t = Instant::now();
    let sdk = twofa::adapters::aws::aws_config().await;
    let config = t.elapsed();
    let t = Instant::now();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let clients = t.elapsed();
    let t = Instant::now();
    let keys = twofa::domain::crypto::Keys::from_master(&[7u8; 64]).expect("keys");
    let derive = t.elapsed();
    drop((ddb, keys));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "init_parts first_us_number_ms={:.2} aws_config_ms={:.2} client_ms={:.2} keys_ms={:.2}",
        ms(phone),
        ms(config),
        ms(clients),
        ms(derive)
    );
}
