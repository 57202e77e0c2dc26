//! The console's management pages on the DynamoDB store (moto): what they change lands in the
//! table as the API and the admin command read it, an account's copies under its ancestors
//! included (`make test` starts moto; see tests/common/aws.rs).

mod common;

use std::{net::SocketAddr, sync::Arc};

use common::{
    aws::deployment,
    browser::{element_text, Console},
};
use twofa::{
    adapters::{aws::dynamodb::DynamoStore, outbox::Outbox},
    domain::{account::Account, callbacks, callbacks::UrlRules, cidr::Cidr, ids},
    ports::{AccountStore, Deps, LimitStore, NoScheduler, SystemClock},
};

#[tokio::test]
async fn a_sub_accounts_changes_in_the_console_land_in_its_item_and_its_copy_under_the_parent() {
    // Given a table on moto with a parent account and a sub-account, and the console (its
    // Lambda's router) on that table
    let d = deployment().await;
    let token = ids::new_sid("");
    let sub = Account::new(ids::new_sid(ids::ACCOUNT), &token, &d.keys, Some(&d.account), 0);
    d.store.put_account(&sub).await.expect("sub-account");
    let clock = Arc::new(SystemClock);
    let deps = Deps {
        store: d.store.clone(),
        dispatcher: Arc::new(Outbox::new(clock.clone()).with_url_rules(UrlRules::Public)),
        clock,
        keys: Arc::new(d.keys.clone()),
        scheduler: Arc::new(NoScheduler),
    };
    let app = twofa::http::console::router(deps);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    // When the sub-account signs in and changes its geo permissions, test numbers, allowed
    // IPs and webhook secret, and creates a limit
    let console = Console::sign_in(&base, &sub.sid, &token).await;
    console.change("/console/account/geo", &[("smsCountries", "US"), ("callCountries", "none")]).await;
    console.change("/console/account/test-numbers", &[("to", "+14155550100"), ("code", "2468")]).await;
    console.change("/console/account/allowed-ips", &[("allowedIps", "127.0.0.1, 203.0.113.0/24")]).await;
    let rotated = console.post("/console/account/rotate-secret", &[]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let secret = element_text(&rotated.text, r#"data-field="secret""#).expect("the secret");
    let buckets = r#"[{"name":"m","max":1,"interval":60}]"#;
    console.change("/console/limits", &[("name", "per_phone"), ("buckets", buckets)]).await;
    // Then a process that never saw them (no cache) reads them from the table: the account's
    // own item...
    let fresh = DynamoStore::new(d.ddb.clone(), d.store.table().to_owned());
    let stored = fresh.get_account(&sub.sid).await.unwrap().expect("the sub-account");
    let want_ips: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "203.0.113.0/24".parse().unwrap()];
    assert_eq!(stored.policy.sms_countries, Some(vec!["US".to_owned()]));
    assert_eq!(stored.policy.call_countries, Some(vec![]));
    assert_eq!(stored.policy.test_destinations[0].code(&d.keys, &sub.sid).unwrap().reveal(), "2468");
    assert_eq!(stored.allowed_ips, want_ips);
    let sealed = stored.policy.webhook_secret.as_ref().expect("a webhook secret");
    assert_eq!(
        callbacks::open_key(&d.keys, &sub.sid, &sealed.0).unwrap(),
        callbacks::secret_key(&secret).unwrap(),
        "the secret shown is the one stored"
    );
    // ...and its copy under the parent, which the parent's tree reads
    let copies = fresh.list_sub_accounts(&d.account.sid).await.unwrap();
    let copy = copies.iter().find(|a| a.sid == sub.sid).expect("the copy under the parent");
    assert_eq!(copy.policy, stored.policy);
    assert_eq!(copy.allowed_ips, want_ips);
    // And the limit is the sub-account's
    let limits = fresh.list_limits(&sub.sid).await.unwrap();
    assert_eq!(limits.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["per_phone"]);
    assert_eq!(limits[0].buckets_json, buckets);
    // And the parent's own item is untouched
    let parent = fresh.get_account(&d.account.sid).await.unwrap().unwrap();
    assert_eq!(parent.policy.sms_countries, None);
    assert!(parent.allowed_ips.is_empty());
}
