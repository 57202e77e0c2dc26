//! `twofa-seed`: what `make local-aws` needs in moto before `sam local start-api` can answer a
//! request: the table, the master secret (in Secrets Manager, read by the functions as on AWS),
//! a verified SES sender and one account. Prints shell `export` lines with the names, the
//! account's sid and its token (shown once: only a keyed hash of it is stored).
//!
//!   twofa-seed --table NAME --secret NAME [--sender EMAIL]...
//!
//! Runs against the endpoint of the environment (`AWS_ENDPOINT_URL`). Table and secret are
//! reused when they exist (the secret's value is kept, so earlier accounts stay valid); every
//! run makes a new account. The admin command (`twofa-admin`) replaces this once it lands.

use rand::{distributions::Alphanumeric, Rng};
use twofa::{
    adapters::aws::{aws_config, dynamodb::create_table},
    domain::{account::Account, crypto::Keys, ids},
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
    let keys = Keys::from_master(master.as_bytes()).map_err(|_| "the master secret is shorter than 32 bytes")?;
    let store = twofa::adapters::aws::dynamodb::DynamoStore::new(ddb, args.table.clone());
    let token = ids::new_sid("");
    let account = Account::new(ids::new_sid(ids::ACCOUNT), &token, &keys, None, 0);
    twofa::ports::AccountStore::put_account(&store, &account).await.map_err(|e| format!("put account: {e:?}"))?;
    println!("export TWOFA_TABLE={}", args.table);
    println!("export TWOFA_SECRET_ARN={arn}");
    println!("export TWOFA_ACCOUNT_SID={}", account.sid);
    println!("export TWOFA_AUTH_TOKEN={token}");
    Ok(())
}
