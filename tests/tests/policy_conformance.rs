//! Account policies on both stores (embedded, and DynamoDB on moto at `AWS_ENDPOINT_URL`):
//! geo permissions, the pumping guard and test destinations, through the domain's use cases.
//! Each test runs twice (`memory::…`, `dynamodb::…`), each DynamoDB run on its own table.

use std::sync::Arc;

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
        ids,
        otp::Delivery,
        policy::{update_policy, PolicyUpdate},
        send::{send, SendRequest},
    },
    ports::{Deps, Store},
    Error,
};

struct Fixture {
    deps: Deps,
    outbox: Arc<Outbox>,
    dynamo: Option<Arc<DynamoStore>>,
}

impl Fixture {
    fn new(store: Arc<dyn Store>, dynamo: Option<Arc<DynamoStore>>) -> Self {
        let clock = Arc::new(AdjustableClock::default());
        let outbox = Arc::new(Outbox::new(clock.clone()));
        let deps = Deps { store, dispatcher: outbox.clone(), clock, keys: Arc::new(Keys::random()) };
        Fixture { deps, outbox, dynamo }
    }

    fn memory() -> Self {
        Fixture::new(Arc::new(MemoryStore::new()), None)
    }

    async fn dynamodb() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| !u.is_empty()),
            "AWS_ENDPOINT_URL is not set: run `make test` (it starts moto)"
        );
        let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
        let table = format!("policy-{}", ids::new_sid(""));
        create_table(&client, &table).await.expect("create the table in moto");
        let store = Arc::new(DynamoStore::new(client, table));
        Fixture::new(store.clone(), Some(store))
    }

    async fn account(&self, parent: Option<&Account>) -> Account {
        let a = Account::new(ids::new_sid(ids::ACCOUNT), "token", &self.deps.keys, parent, 0);
        self.deps.store.put_account(&a).await.expect("account");
        a
    }

    /// Change `account`'s policy (JSON as `POST /dev/accounts` takes it) and read it back as
    /// authentication would.
    async fn set(&self, account: &Account, policy: serde_json::Value) -> Account {
        let update: PolicyUpdate = serde_json::from_value(policy).expect("policy JSON");
        update_policy(self.deps.store.as_ref(), &self.deps.keys, &account.sid, update).await.expect("policy");
        self.deps.store.get_account(&account.sid).await.expect("read").expect("account")
    }

    async fn send_sms(&self, account: &Account, to: &str) -> Result<String, Error> {
        send(&self.deps, account, sms(to)).await
    }
}

fn sms(to: &str) -> SendRequest {
    SendRequest {
        service: "2FA".into(),
        delivery: Delivery::sms("Twofa", to, "Your code: {code}"),
        length: 6,
        timeout_secs: 300,
        guard_time: None,
        limits: vec![],
        idempotency_key: None,
    }
}

async fn drop_table(store: &DynamoStore) {
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    client.delete_table().table_name(store.table()).send().await.expect("delete the table");
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::memory()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::dynamodb().await;
                    let store = f.dynamo.clone().expect("a DynamoDB store");
                    super::$name(f).await;
                    super::drop_table(&store).await;
                }
            )*
        }
    };
}

on_both_stores!(
    a_send_outside_the_allowed_countries_is_refused_and_writes_nothing,
    policy_of_an_unknown_account_is_not_found,
    a_sub_accounts_policy_is_its_own_and_reaches_its_copies,
);

// --- geo permissions ---------------------------------------------------------------------------

async fn a_send_outside_the_allowed_countries_is_refused_and_writes_nothing(f: Fixture) {
    // Given an account that allows SMS to the US and GB only, and calls everywhere
    let account = f.account(None).await;
    let account = f.set(&account, serde_json::json!({ "allowedCountries": { "sms": ["us", "GB"] } })).await;
    assert_eq!(account.policy.sms_countries, Some(vec!["GB".to_owned(), "US".to_owned()]));
    // When it sends an SMS to India
    let r = f.send_sms(&account, "+919960639901").await;
    // Then it is refused naming the country, and nothing was written or sent
    assert_eq!(r, Err(Error::CountryNotAllowed("IN".into())));
    assert_eq!(r.unwrap_err().to_string(), "Destination country not allowed: IN");
    assert!(f.deps.store.get_destination(&account.sid, "2FA", "+919960639901").await.unwrap().is_none());
    assert!(f.outbox.messages(None).is_empty());
    // And SMS to the allowed countries, and a call to India, go out
    assert!(f.send_sms(&account, "+14155550100").await.is_ok());
    assert!(f.send_sms(&account, "+447400123456").await.is_ok());
    let mut call = sms("+919960639902");
    call.delivery.channel = twofa::domain::otp::Channel::Call;
    assert!(send(&f.deps, &account, call).await.is_ok());
    // And once the list is lifted (null: every country), India is allowed again
    let account = f.set(&account, serde_json::json!({ "allowedCountries": { "sms": null } })).await;
    assert!(f.send_sms(&account, "+919960639901").await.is_ok());
    assert_eq!(f.outbox.messages(None).len(), 4);
}

async fn policy_of_an_unknown_account_is_not_found(f: Fixture) {
    let ghost = Account::new(ids::new_sid(ids::ACCOUNT), "token", &f.deps.keys, None, 0);
    let r = f.deps.store.set_policy(&ghost, &Default::default()).await;
    assert_eq!(r, Err(Error::NotFound));
    assert!(f.deps.store.get_account(&ghost.sid).await.unwrap().is_none(), "nothing created");
}

async fn a_sub_accounts_policy_is_its_own_and_reaches_its_copies(f: Fixture) {
    // Given a parent and its sub-account, the sub-account limited to JP
    let parent = f.account(None).await;
    let sub = f.account(Some(&parent)).await;
    let sub = f.set(&sub, serde_json::json!({ "allowedCountries": { "sms": ["JP"], "call": ["JP"] } })).await;
    // Then the parent keeps every country, the sub-account (and its copy under the parent) JP only
    let parent = f.deps.store.get_account(&parent.sid).await.unwrap().unwrap();
    assert_eq!(parent.policy.sms_countries, None);
    assert_eq!(f.send_sms(&sub, "+14155550100").await, Err(Error::CountryNotAllowed("US".into())));
    assert!(f.send_sms(&sub, "+819012345678").await.is_ok());
    let copies = f.deps.store.list_sub_accounts(&parent.sid).await.unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].policy, sub.policy);
}
