//! `AccountAdminStore` conformance: each test is written once and runs on the embedded store
//! and on DynamoDB (moto at `AWS_ENDPOINT_URL`, a table per test): same answers, and the
//! copies of a sub-account under its ancestors change with it.

use std::{sync::Arc, time::Duration};

use twofa::{
    adapters::{
        aws::{
            aws_config,
            dynamodb::{create_table, DynamoStore},
        },
        memory::MemoryStore,
    },
    domain::{
        account::{act_for, authenticate, Account},
        cidr::Cidr,
        crypto::Keys,
        ids,
    },
    ports::{AccountStore, AdminStore},
    Error,
};

async fn dynamo() -> Arc<dyn AdminStore> {
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto (make test)");
    let client = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let table = format!("twofa-admin-{}", ids::new_sid(""));
    create_table(&client, &table).await.expect("table");
    Arc::new(DynamoStore::new(client, table).with_account_cache_ttl(Duration::ZERO))
}

fn memory() -> Arc<dyn AdminStore> {
    Arc::new(MemoryStore::new())
}

/// A top-level account, a child and a grandchild, stored.
async fn given_a_tree(store: &dyn AdminStore) -> (Account, Account, Account) {
    given_a_tree_keyed(store, &Keys::random()).await
}

/// `given_a_tree`, each account's token "t" hashed with `keys`.
async fn given_a_tree_keyed(store: &dyn AdminStore, keys: &Keys) -> (Account, Account, Account) {
    let root = Account::new(ids::new_sid(ids::ACCOUNT), "t", keys, None, 1_000);
    let child = Account::new(ids::new_sid(ids::ACCOUNT), "t", keys, Some(&root), 2_000);
    let grandchild = Account::new(ids::new_sid(ids::ACCOUNT), "t", keys, Some(&child), 3_000);
    for a in [&root, &child, &grandchild] {
        store.put_account(a).await.expect("put");
    }
    (root, child, grandchild)
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::memory()).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $name() { super::$name(super::dynamo().await).await })*
        }
    };
}

both!(
    every_account_is_listed_oldest_first,
    suspension_reaches_the_account_and_its_copies_under_every_ancestor,
    a_token_rotation_from_a_stale_read_is_contended_and_changes_nothing,
    allowed_networks_are_stored_and_read_back_as_blocks,
    changes_to_a_missing_account_are_not_found,
    sub_accounts_of_a_suspended_account_are_forbidden_until_it_is_resumed,
    acting_for_a_sub_account_under_a_suspended_one_is_forbidden_until_it_is_resumed,
);

async fn every_account_is_listed_oldest_first(store: Arc<dyn AdminStore>) {
    // Given a tree of three accounts
    let (root, child, grandchild) = given_a_tree(store.as_ref()).await;
    // When every account is listed
    let all = store.list_accounts().await.unwrap();
    // Then each appears once, in creation order, as stored
    assert_eq!(all, vec![root, child, grandchild]);
}

async fn suspension_reaches_the_account_and_its_copies_under_every_ancestor(store: Arc<dyn AdminStore>) {
    // Given a grandchild
    let (root, child, grandchild) = given_a_tree(store.as_ref()).await;
    // When it is suspended
    store.set_suspended(&grandchild, true).await.unwrap();
    // Then it reads suspended itself and in both ancestors' lists
    assert!(store.get_account(&grandchild.sid).await.unwrap().unwrap().suspended);
    for ancestor in [&root, &child] {
        let subs = store.list_sub_accounts(&ancestor.sid).await.unwrap();
        let copy = subs.iter().find(|a| a.sid == grandchild.sid).expect("the copy");
        assert!(copy.suspended, "the copy under {}", ancestor.sid);
    }
    assert!(!store.get_account(&child.sid).await.unwrap().unwrap().suspended, "its parent is not");
    // And resuming undoes it everywhere
    store.set_suspended(&grandchild, false).await.unwrap();
    assert!(!store.get_account(&grandchild.sid).await.unwrap().unwrap().suspended);
    assert!(store.list_sub_accounts(&root.sid).await.unwrap().iter().all(|a| !a.suspended));
}

async fn a_token_rotation_from_a_stale_read_is_contended_and_changes_nothing(store: Arc<dyn AdminStore>) {
    // Given a sub-account, read once
    let (_, child, _) = given_a_tree(store.as_ref()).await;
    // When its token hash is replaced, then replaced again from the first read
    store.replace_token_hash(&child, b"first-new-hash").await.unwrap();
    let err = store.replace_token_hash(&child, b"second-new-hash").await.unwrap_err();
    // Then the second loses and the first stands
    assert_eq!(err, Error::Contended);
    assert_eq!(store.get_account(&child.sid).await.unwrap().unwrap().token_hash, b"first-new-hash".to_vec());
}

async fn allowed_networks_are_stored_and_read_back_as_blocks(store: Arc<dyn AdminStore>) {
    // Given a sub-account
    let (root, child, _) = given_a_tree(store.as_ref()).await;
    let blocks: Vec<Cidr> = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"].iter().map(|b| b.parse().unwrap()).collect();
    // When its allow-list is set
    store.set_allowed_ips(&child, &blocks).await.unwrap();
    // Then it reads back as set, on the account and on its copy
    assert_eq!(store.get_account(&child.sid).await.unwrap().unwrap().allowed_ips, blocks);
    let copy = store.list_sub_accounts(&root.sid).await.unwrap().into_iter().find(|a| a.sid == child.sid).unwrap();
    assert_eq!(copy.allowed_ips, blocks);
    // And an empty list clears it
    store.set_allowed_ips(&child, &[]).await.unwrap();
    assert!(store.get_account(&child.sid).await.unwrap().unwrap().allowed_ips.is_empty());
}

async fn changes_to_a_missing_account_are_not_found(store: Arc<dyn AdminStore>) {
    // Given an account that was never stored
    let ghost = Account::new(ids::new_sid(ids::ACCOUNT), "t", &Keys::random(), None, 0);
    // When it is changed, then each change is NotFound and nothing is created
    assert_eq!(store.set_suspended(&ghost, true).await.unwrap_err(), Error::NotFound);
    assert_eq!(store.replace_token_hash(&ghost, b"h").await.unwrap_err(), Error::NotFound);
    assert_eq!(store.set_allowed_ips(&ghost, &[]).await.unwrap_err(), Error::NotFound);
    assert_eq!(store.get_account(&ghost.sid).await.unwrap(), None);
    assert!(store.list_accounts().await.unwrap().is_empty());
}

/// Whether `account` gets in with its own token ("t"): `Ok(())` or the error it gets.
async fn signs_in(store: &dyn AccountStore, keys: &Keys, account: &Account) -> Result<(), Error> {
    authenticate(store, keys, &account.sid, "t", None).await.map(|_| ())
}

async fn sub_accounts_of_a_suspended_account_are_forbidden_until_it_is_resumed(store: Arc<dyn AdminStore>) {
    // Given a tree of three accounts whose tokens get in
    let keys = Keys::random();
    let (root, child, grandchild) = given_a_tree_keyed(store.as_ref(), &keys).await;
    let accounts: &dyn AccountStore = store.as_ref();
    for a in [&root, &child, &grandchild] {
        assert_eq!(signs_in(accounts, &keys, a).await, Ok(()), "{} before", a.sid);
    }
    // When the child is suspended
    store.set_suspended(&child, true).await.unwrap();
    // Then the grandchild, not suspended itself, is refused with its own credentials too
    assert_eq!(signs_in(accounts, &keys, &child).await, Err(Error::Forbidden));
    assert_eq!(signs_in(accounts, &keys, &grandchild).await, Err(Error::Forbidden), "under a suspended parent");
    assert_eq!(signs_in(accounts, &keys, &root).await, Ok(()), "above it, nothing changes");
    // And so is one created under it after the suspension
    let late = Account::new(ids::new_sid(ids::ACCOUNT), "t", &keys, Some(&grandchild), 4_000);
    store.put_account(&late).await.unwrap();
    assert_eq!(signs_in(accounts, &keys, &late).await, Err(Error::Forbidden), "created later");
    // And when the child is resumed, every one of them gets in again
    store.set_suspended(&child, false).await.unwrap();
    for a in [&root, &child, &grandchild, &late] {
        assert_eq!(signs_in(accounts, &keys, a).await, Ok(()), "{} after", a.sid);
    }
    // But one suspended itself stays so when its ancestor is resumed
    store.set_suspended(&root, true).await.unwrap();
    store.set_suspended(&grandchild, true).await.unwrap();
    store.set_suspended(&root, false).await.unwrap();
    assert_eq!(signs_in(accounts, &keys, &child).await, Ok(()));
    assert_eq!(signs_in(accounts, &keys, &grandchild).await, Err(Error::Forbidden));
}

async fn acting_for_a_sub_account_under_a_suspended_one_is_forbidden_until_it_is_resumed(store: Arc<dyn AdminStore>) {
    // Given a tree of three accounts, the root acting for its grandchild
    let (root, child, grandchild) = given_a_tree(store.as_ref()).await;
    let accounts: &dyn AccountStore = store.as_ref();
    let acts = |sid: String| {
        let root = root.clone();
        async move { act_for(accounts, &root, Some(&sid)).await.map(|a| a.sid.clone()) }
    };
    assert_eq!(acts(grandchild.sid.clone()).await, Ok(grandchild.sid.clone()));
    // When the child between them is suspended
    store.set_suspended(&child, true).await.unwrap();
    // Then the root may act for neither the child nor the grandchild under it
    assert_eq!(acts(child.sid.clone()).await, Err(Error::Forbidden));
    assert_eq!(acts(grandchild.sid.clone()).await, Err(Error::Forbidden), "under a suspended account");
    // And when the child is resumed, it may act for both again
    store.set_suspended(&child, false).await.unwrap();
    assert_eq!(acts(child.sid.clone()).await, Ok(child.sid.clone()));
    assert_eq!(acts(grandchild.sid.clone()).await, Ok(grandchild.sid));
}
