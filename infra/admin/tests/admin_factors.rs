//! `twofa-admin account factors` and `remove-factor` on the store's ports: each test written
//! once, run on the embedded store and on DynamoDB (moto at `AWS_ENDPOINT_URL`, a table per
//! test). The factors are made as the API makes them (`domain::factors`), then seen and
//! removed by the commands.

use std::{sync::Arc, time::Duration};

use twofa::ports::AdminStore;
use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
        },
        clock::AdjustableClock,
        memory::MemoryStore,
        outbox::Outbox,
    },
    domain::{
        account::Account,
        crypto::Keys,
        factor::{TotpAlgorithm, TotpParams},
        factors::{self, NewPasskey, NewTotp, Proof},
        ids,
        policy::{update_policy, PolicyUpdate},
        totp,
    },
    ports::{Clock, Deps, NoScheduler, Store},
    Error,
};
use twofa_admin::{run, Command};

/// One deployment: the API's view of the store (to make factors as it does) and the
/// operator's (the commands'), on the same data.
struct Deployment {
    deps: Deps,
    operator: Arc<dyn AdminStore>,
    keys: Arc<Keys>,
    clock: Arc<AdjustableClock>,
    account: Account,
}

async fn deployment<S: Store + AdminStore + 'static>(store: Arc<S>) -> Deployment {
    let clock = Arc::new(AdjustableClock::default());
    let keys = Arc::new(Keys::random());
    let account = Account::new(ids::new_sid(ids::ACCOUNT), "t", &keys, None, clock.now_ms());
    store.put_account(&account).await.expect("put account");
    let deps = Deps {
        store: store.clone(),
        dispatcher: Arc::new(Outbox::new(clock.clone())),
        clock: clock.clone(),
        keys: keys.clone(),
        scheduler: Arc::new(NoScheduler),
    };
    Deployment { deps, operator: store, keys, clock, account }
}

async fn dynamo() -> Deployment {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto (make test)");
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("twofa-admin-factors-{}", ids::new_sid(""));
    create_table(&client, &table).await.expect("table");
    deployment(Arc::new(DynamoStore::new(client, table).with_account_cache_ttl(Duration::ZERO))).await
}

async fn memory() -> Deployment {
    deployment(Arc::new(MemoryStore::new())).await
}

/// RFC 4648 base32 decoded, as an authenticator app reads a typed-in secret.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::memory().await).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $name() { super::$name(super::dynamo().await).await })*
        }
    };
}

both!(
    an_entitys_factors_are_listed_with_their_settings_and_never_their_secret,
    a_removed_factor_is_gone_from_the_list_and_from_the_api,
    removing_a_factor_that_is_not_there_says_so,
    an_entity_that_cannot_be_one_or_an_unknown_account_is_refused,
    a_passkey_is_listed_beside_an_apps_factor_and_removed,
);

impl Deployment {
    async fn admin(&self, command: Command) -> Result<String, String> {
        run(command, self.operator.as_ref(), &self.keys, self.clock.as_ref()).await
    }

    /// A factor of `entity` as the API creates it: (its sid, its secret in base32).
    async fn factor(&self, entity: &str, name: Option<&str>, params: TotpParams) -> (String, String) {
        let new = NewTotp { entity: entity.into(), friendly_name: name.map(Into::into), issuer: None, params };
        let created = factors::create(&self.deps, &self.account, new).await.expect("create");
        (created.factor.sid, created.secret)
    }

    fn factors(&self, entity: &str, json: bool) -> Command {
        Command::Factors { sid: self.account.sid.clone(), entity: entity.into(), json }
    }

    fn remove(&self, entity: &str, factor: &str) -> Command {
        Command::RemoveFactor { sid: self.account.sid.clone(), entity: entity.into(), factor: factor.into() }
    }
}

async fn an_entitys_factors_are_listed_with_their_settings_and_never_their_secret(d: Deployment) {
    // Given an entity with two factors, the first confirmed with a code from its app, and
    // another entity with one
    let (first, first_secret) = d.factor("alice", Some("Work phone"), TotpParams::default()).await;
    let eight = TotpParams { algorithm: TotpAlgorithm::Sha256, digits: 8, period_secs: 30 };
    d.clock.advance_secs(1);
    let (second, second_secret) = d.factor("alice", None, eight).await;
    let (other, _) = d.factor("bob", None, TotpParams::default()).await;
    let code = totp::code(
        &base32_decode(&first_secret),
        &TotpParams::default(),
        totp::step_at(&TotpParams::default(), d.clock.now_ms()),
    );
    factors::confirm(&d.deps, &d.account, "alice", &first, Some(Proof::Code(code.clone()))).await.expect("confirm");
    // When the operator lists the entity's factors, as a table and as JSON
    let table = d.admin(d.factors("alice", false)).await.unwrap();
    let json = d.admin(d.factors("alice", true)).await.unwrap();
    // Then the table has a header and one row for each, oldest first, with its settings
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("FACTOR") && lines[0].contains("STATUS") && lines[0].contains("LAST CODE"));
    assert!(lines[1].starts_with(&first) && lines[1].contains("verified") && lines[1].contains("SHA1"), "{table}");
    assert!(lines[1].contains("Work phone") && !lines[1].contains("unverified"), "{table}");
    assert!(lines[2].starts_with(&second) && lines[2].contains("unverified"), "{table}");
    assert!(lines[2].contains("SHA256") && lines[2].contains(" 8 ") && lines[2].contains("30s"), "{table}");
    // And the JSON says the same, the confirmed one with when its last code was
    let all: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let all = all.as_array().expect("a list");
    assert_eq!(all.len(), 2);
    assert_eq!((all[0]["sid"].as_str(), all[0]["status"].as_str()), (Some(first.as_str()), Some("verified")));
    assert_eq!((all[0]["friendlyName"].as_str(), all[0]["digits"].as_u64()), (Some("Work phone"), Some(6)));
    assert!(all[0]["lastCodeAt"].is_string() && all[1]["lastCodeAt"].is_null(), "{json}");
    assert_eq!((all[1]["algorithm"].as_str(), all[1]["digits"].as_u64()), (Some("SHA256"), Some(8)));
    // And the other entity's factor is not among them, and no secret is printed
    for out in [&table, &json] {
        assert!(!out.contains(&other), "{out}");
        assert!(!out.contains(&first_secret) && !out.contains(&second_secret), "a secret printed: {out}");
        assert!(!out.to_lowercase().contains("secret"), "{out}");
    }
    // And an entity without factors says so
    let none = d.admin(d.factors("carol", false)).await.unwrap();
    assert_eq!(none, format!("{} carol: no factors\n", d.account.sid));
    assert_eq!(d.admin(d.factors("carol", true)).await.unwrap(), "[]\n");
}

async fn a_removed_factor_is_gone_from_the_list_and_from_the_api(d: Deployment) {
    // Given an entity with two factors (a lost phone and a new one)
    let (lost, _) = d.factor("alice", Some("Lost phone"), TotpParams::default()).await;
    let (kept, _) = d.factor("alice", Some("New phone"), TotpParams::default()).await;
    // When the operator removes the lost one
    let out = d.admin(d.remove("alice", &lost)).await.unwrap();
    // Then it says so, and the list and the API have only the other
    assert_eq!(out, format!("{} alice {lost}: removed (unverified)\n", d.account.sid));
    let table = d.admin(d.factors("alice", false)).await.unwrap();
    assert!(!table.contains(&lost) && table.contains(&kept), "{table}");
    assert_eq!(factors::get(&d.deps, &d.account, "alice", &lost).await.unwrap_err(), Error::FactorNotFound);
    assert_eq!(factors::get(&d.deps, &d.account, "alice", &kept).await.unwrap().sid, kept);
}

async fn removing_a_factor_that_is_not_there_says_so(d: Deployment) {
    // Given a factor of alice
    let (sid, _) = d.factor("alice", None, TotpParams::default()).await;
    // When the operator removes it from another entity, removes a sid that is no factor's, or
    // removes it twice
    let elsewhere = d.admin(d.remove("bob", &sid)).await.unwrap_err();
    let malformed = d.admin(d.remove("alice", "YFnope")).await.unwrap_err();
    d.admin(d.remove("alice", &sid)).await.unwrap();
    let twice = d.admin(d.remove("alice", &sid)).await.unwrap_err();
    // Then each says there is no such factor of that entity
    assert_eq!(elsewhere, format!("no factor {sid} of entity bob"));
    assert_eq!(malformed, "no factor YFnope of entity alice");
    assert_eq!(twice, format!("no factor {sid} of entity alice"));
}

async fn an_entity_that_cannot_be_one_or_an_unknown_account_is_refused(d: Deployment) {
    // When the operator names an entity id that no entity can have, or an unknown account
    let bad = d.admin(d.factors("a/b", false)).await.unwrap_err();
    let bad_remove = d.admin(d.remove("a#b", "YF0")).await.unwrap_err();
    let unknown =
        d.admin(Command::Factors { sid: "ACnope".into(), entity: "alice".into(), json: false }).await.unwrap_err();
    let unknown_remove = d
        .admin(Command::RemoveFactor { sid: "ACnope".into(), entity: "alice".into(), factor: "YF0".into() })
        .await
        .unwrap_err();
    // Then the entity is named as the bad parameter, and the account as unknown
    assert!(bad.starts_with("Invalid parameter: entity"), "{bad}");
    assert!(bad_remove.starts_with("Invalid parameter: entity"), "{bad_remove}");
    assert_eq!((unknown.as_str(), unknown_remove.as_str()), ("no account ACnope", "no account ACnope"));
}

async fn a_passkey_is_listed_beside_an_apps_factor_and_removed(d: Deployment) {
    // Given an account with a relying party, and an entity with an app's factor and a passkey
    let update: PolicyUpdate = serde_json::from_value(
        serde_json::json!({ "passkeys": { "rpId": "example.com", "origins": ["https://example.com"] } }),
    )
    .unwrap();
    update_policy(d.deps.store.as_ref(), &d.keys, &d.account.sid, update).await.expect("policy");
    let account = d.deps.store.get_account(&d.account.sid).await.unwrap().unwrap();
    let (app, _) = d.factor("erin", None, TotpParams::default()).await;
    d.clock.advance_secs(1);
    let new = NewPasskey { entity: "erin".into(), friendly_name: Some("Laptop".into()), user_name: None };
    let (passkey, _) = factors::create_passkey(&d.deps, &account, new).await.expect("passkey");
    // When the operator lists the entity's factors
    let table = d.admin(d.factors("erin", false)).await.unwrap();
    let json = d.admin(d.factors("erin", true)).await.unwrap();
    // Then the passkey has its row, without the code settings an app's factor has
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with(&app) && lines[1].contains("totp"), "{table}");
    assert!(lines[2].starts_with(&passkey.sid) && lines[2].contains("passkey"), "{table}");
    assert!(lines[2].contains("Laptop") && !lines[2].contains("SHA1"), "{table}");
    let all: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!((all[1]["type"].as_str(), all[1]["status"].as_str()), (Some("passkey"), Some("unverified")), "{json}");
    assert!(all[1].get("algorithm").is_none(), "{json}");
    // And once removed it is gone
    let removed = d.admin(d.remove("erin", &passkey.sid)).await.unwrap();
    assert!(removed.contains(&passkey.sid) && removed.contains("removed"), "{removed}");
    assert_eq!(d.admin(d.factors("erin", true)).await.unwrap().matches("\"sid\"").count(), 1);
}
