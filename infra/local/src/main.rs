//! `make run`: the whole API on 127.0.0.1:3000 (PORT overrides), embedded.

use twofa::{
    adapters::{
        memory::DEFAULT_MAX_OTPS,
        outbox::DEFAULT_OUTBOX_MAX,
        provider::{HttpProvider, ProviderConfig},
    },
    domain::{crypto::Keys, ids},
    ports::AccountStore,
};
use twofa_local::{hex_token, serve, Dev};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread: it may start the process again (same pid) with the tuning in place.
    twofa_local::tune_allocator();
    run()
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let keys = match std::env::var("TWOFA_SECRET_KEY") {
        Ok(hex_key) => Keys::from_master(&hex::decode(hex_key.trim()).map_err(|_| "TWOFA_SECRET_KEY must be hex")?)
            .map_err(|_| "TWOFA_SECRET_KEY must be at least 32 bytes (64 hex chars)")?,
        Err(_) => Keys::random(),
    };
    // Memory stays bounded: the newest OTPs and outbox messages only (README "Dev server").
    let env_usize = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok());
    let dev = Dev::bounded(
        keys,
        env_usize("TWOFA_DEV_MAX_OTPS").unwrap_or(DEFAULT_MAX_OTPS),
        env_usize("TWOFA_DEV_OUTBOX_MAX").unwrap_or(DEFAULT_OUTBOX_MAX),
    );
    // SMS through a provider of your own (README "Your own provider"), else to the outbox.
    let provider = ProviderConfig::sms_from_env(true)?;
    if let Some(p) = &provider {
        println!("  SMS go to {} (receipts: POST /2fa/receipts/{})", p.url.origin().ascii_serialization(), p.name);
    }
    let dev = match provider {
        Some(p) => dev.with_sms_provider(HttpProvider::new(p)),
        None => dev,
    };
    let sid = std::env::var("TWOFA_DEV_ACCOUNT_SID").unwrap_or_else(|_| ids::new_sid(ids::ACCOUNT));
    let token = std::env::var("TWOFA_DEV_AUTH_TOKEN").unwrap_or_else(|_| hex_token());
    if !ids::is_sid(ids::ACCOUNT, &sid) || token.is_empty() || token.len() > twofa::domain::account::MAX_TOKEN_LEN {
        return Err(format!(
            "TWOFA_DEV_ACCOUNT_SID must be AC and 32 lower-case hex digits, TWOFA_DEV_AUTH_TOKEN 1 to {} characters",
            twofa::domain::account::MAX_TOKEN_LEN
        )
        .into());
    }
    let secret = std::env::var("TWOFA_DEV_WEBHOOK_SECRET").ok();
    let (account, secret, _) = dev
        .create_account_with(Some(sid.clone()), &token, None, Default::default(), secret)
        .await
        .map_err(|e| format!("dev account: {e}"))?;
    // Load tests send to many numbers and verify few: the pumping guard would pause them.
    if std::env::var("TWOFA_DEV_PUMPING_GUARD").is_ok_and(|v| v == "off") {
        let mut policy = account.policy.clone();
        policy.guard.enabled = false;
        dev.store.set_policy(&account, &policy).await.map_err(|e| format!("dev account policy: {e}"))?;
    }

    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("twofa dev server on http://127.0.0.1:{port}");
    println!("  account sid: {sid}");
    println!("  auth token:  {token}");
    println!("  webhook secret: {secret}  (callbacks: POST /dev/accounts {{\"accountSid\":\"{sid}\",\"callbackUrl\":\"http://127.0.0.1:9000/cb\"}})");
    println!(
        "  try: curl -s -u '{sid}:{token}' http://127.0.0.1:{port}/2fa/send -H 'Content-Type: application/json' \\"
    );
    println!("         -d '{{\"service\":\"2FA\",\"from\":\"Twofa\",\"to\":\"+14155550100\",\"body\":\"Your code is {{code}}\"}}'");
    println!("  then: curl -s 'http://127.0.0.1:{port}/dev/outbox?to=%2B14155550100'");
    println!("  console: http://127.0.0.1:{port}/console  (sign in with the sid and token above)");
    serve(listener, dev.app()).await?;
    Ok(())
}
