//! `twofa-seed`: what `make local-aws` needs in moto that `sam deploy` makes on AWS: the table,
//! the master secret (in Secrets Manager, read by the functions as on AWS) and a verified SES
//! sender. Prints shell `export` lines with the table's name and the secret's ARN. Accounts are
//! then made as on AWS, with the admin command (`twofa-admin account create`).
//!
//!   twofa-seed --table NAME --secret NAME [--sender EMAIL]...
//!
//! Runs against the endpoint of the environment (`AWS_ENDPOINT_URL`). Table and secret are
//! reused when they exist (the secret's value is kept, so earlier accounts stay valid).

use rand::{distributions::Alphanumeric, Rng};
use twofa::{
    adapters::aws::{aws_config, dynamodb::create_table},
    domain::crypto::Keys,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    table: String,
    secret: String,
    senders: Vec<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut table = None;
    let mut secret = None;
    let mut senders = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--table" => table = Some(value),
            "--secret" => secret = Some(value),
            "--sender" => senders.push(value),
            _ => {
                return Err(format!(
                    "unknown flag {flag} (usage: twofa-seed --table NAME --secret NAME [--sender EMAIL]...)"
                )
                .into())
            }
        }
    }
    Ok(Args { table: table.ok_or("--table is required")?, secret: secret.ok_or("--secret is required")?, senders })
}

/// The master secret's ARN and value: the existing one, or a new random one (64 chars of
/// [a-z0-9], as the template's `GenerateSecretString` makes it).
async fn master_secret(client: &aws_sdk_secretsmanager::Client, name: &str) -> Result<(String, String), BoxError> {
    if let Ok(out) = client.get_secret_value().secret_id(name).send().await {
        let arn = out.arn().ok_or("secret without an ARN")?.to_owned();
        let value = out.secret_string().ok_or("the master secret is not a string")?.to_owned();
        return Ok((arn, value));
    }
    let value: String =
        rand::rngs::OsRng.sample_iter(&Alphanumeric).map(|c| (c as char).to_ascii_lowercase()).take(64).collect();
    let out = client.create_secret().name(name).secret_string(&value).send().await?;
    Ok((out.arn().ok_or("secret without an ARN")?.to_owned(), value))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let sdk = aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&ddb, &args.table).await.map_err(|e| format!("create table {}: {e:?}", args.table))?;
    let ses = aws_sdk_ses::Client::new(&sdk);
    for sender in &args.senders {
        ses.verify_email_identity().email_address(sender).send().await?;
    }
    let (arn, master) = master_secret(&aws_sdk_secretsmanager::Client::new(&sdk), &args.secret).await?;
    // The functions refuse a shorter key at cold start: refuse it here, before they run.
    Keys::from_master(master.as_bytes()).map_err(|_| "the master secret is shorter than 32 bytes")?;
    println!("export TWOFA_TABLE={}", args.table);
    println!("export TWOFA_SECRET_ARN={arn}");
    Ok(())
}
