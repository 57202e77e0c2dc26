//! The console's store port (`ports::ConsoleStore`) and its use cases (`domain::console`),
//! written once and run on the embedded store (`memory::…`) and on DynamoDB (`dynamodb::…`,
//! moto at `AWS_ENDPOINT_URL`, a table per test): sessions, sign-out, and the sign-in counter
//! that admits exactly its max however many attempts race.

mod common;

use std::sync::Arc;

use futures::future::join_all;
use twofa::{
    domain::{
        account::Account,
        console::{self, ConsoleSession, ResumeError, SignInError, IDLE_MS, SIGN_INS_PER_ACCOUNT, TOUCH_AFTER_MS},
        crypto::Keys,
        ids,
        time::Millis,
    },
    ports::Store,
    Error,
};

const T0: Millis = 1_700_000_000_000;

on_both_stores!(
    a_session_reads_back_is_touched_and_is_gone_once_deleted,
    a_second_session_under_the_same_key_is_contended,
    a_counter_counts_up_to_its_max_then_refuses,
    concurrent_attempts_on_one_counter_admit_exactly_its_max,
    sign_in_resume_and_sign_out_on_the_store,
    the_sign_in_limit_holds_for_concurrent_wrong_tokens,
);

fn session(key: &str) -> ConsoleSession {
    ConsoleSession {
        key: key.to_owned(),
        account_sid: "AC0123".into(),
        token_fingerprint: "f00d".into(),
        created_ms: T0,
        seen_ms: T0,
    }
}

fn key() -> String {
    ids::new_sid("k")
}

async fn a_session_reads_back_is_touched_and_is_gone_once_deleted(store: Arc<dyn Store>) {
    // Given a stored session
    let k = key();
    let s = session(&k);
    store.put_console_session(&s).await.unwrap();
    // Then it reads back as stored
    assert_eq!(store.get_console_session(&k).await.unwrap(), Some(s.clone()));
    // When it is used later
    assert!(store.touch_console_session(&k, T0 + 60_000, T0 + 60_000 + IDLE_MS).await.unwrap());
    // Then its last use moved, nothing else
    let touched = store.get_console_session(&k).await.unwrap().unwrap();
    assert_eq!(touched, ConsoleSession { seen_ms: T0 + 60_000, ..s });
    // When it is deleted (signed out)
    store.delete_console_session(&k).await.unwrap();
    // Then it is gone, a touch says so and brings nothing back, and a second delete is fine
    assert_eq!(store.get_console_session(&k).await.unwrap(), None);
    assert!(!store.touch_console_session(&k, T0 + 120_000, T0 + IDLE_MS).await.unwrap());
    assert_eq!(store.get_console_session(&k).await.unwrap(), None);
    store.delete_console_session(&k).await.unwrap();
}

async fn a_second_session_under_the_same_key_is_contended(store: Arc<dyn Store>) {
    let k = key();
    store.put_console_session(&session(&k)).await.unwrap();
    let other = ConsoleSession { account_sid: "AC9".into(), ..session(&k) };
    assert_eq!(store.put_console_session(&other).await, Err(Error::Contended));
    assert_eq!(store.get_console_session(&k).await.unwrap().unwrap().account_sid, "AC0123");
}

async fn a_counter_counts_up_to_its_max_then_refuses(store: Arc<dyn Store>) {
    let (k, other) = (key(), key());
    for i in 0..3 {
        assert!(store.count_attempt(&k, 3, T0, T0 + 60_000).await.unwrap(), "attempt {i}");
    }
    assert!(!store.count_attempt(&k, 3, T0, T0 + 60_000).await.unwrap(), "the fourth");
    assert!(!store.count_attempt(&k, 3, T0 + 1, T0 + 60_000).await.unwrap(), "still full");
    assert!(store.count_attempt(&other, 3, T0, T0 + 60_000).await.unwrap(), "another counter is apart");
}

async fn concurrent_attempts_on_one_counter_admit_exactly_its_max(store: Arc<dyn Store>) {
    // Given one counter of max 10
    let k = key();
    // When 40 attempts race
    let admitted = join_all((0..40).map(|_| {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move { store.count_attempt(&k, 10, T0, T0 + 60_000).await })
    }))
    .await;
    // Then exactly 10 were admitted, whatever the order
    let admitted = admitted.into_iter().map(|r| r.unwrap().unwrap()).filter(|a| *a).count();
    assert_eq!(admitted, 10);
}

async fn account(store: &dyn Store, keys: &Keys, token: &str) -> Account {
    let account = Account::new(ids::new_sid(ids::ACCOUNT), token, keys, None, T0);
    store.put_account(&account).await.unwrap();
    account
}

async fn sign_in_resume_and_sign_out_on_the_store(store: Arc<dyn Store>) {
    // Given an account
    let keys = Keys::random();
    let a = account(store.as_ref(), &keys, "token-1").await;
    let dyn_store: &dyn Store = store.as_ref();
    // When it signs in
    let (cookie, id) = console::sign_in(dyn_store, &keys, &a.sid, "token-1", None, T0).await.unwrap();
    // Then the store keeps the session under a hash of its id, never the id or token
    let stored = store.get_console_session(&id.key()).await.unwrap().expect("a session");
    assert_eq!(stored.account_sid, a.sid);
    assert!(!cookie.contains(&stored.key));
    // And the cookie resumes it, later too, its last use moving
    let (resumed, _) = console::resume(dyn_store, &keys, &cookie, None, T0 + 1000).await.unwrap();
    assert_eq!(resumed.sid, a.sid);
    console::resume(dyn_store, &keys, &cookie, None, T0 + TOUCH_AFTER_MS + 1).await.unwrap();
    assert_eq!(store.get_console_session(&id.key()).await.unwrap().unwrap().seen_ms, T0 + TOUCH_AFTER_MS + 1);
    // When it signs out
    console::sign_out(dyn_store, &keys, &cookie).await.unwrap();
    // Then the cookie resumes nothing
    assert_eq!(
        console::resume(dyn_store, &keys, &cookie, None, T0 + TOUCH_AFTER_MS + 2).await.unwrap_err(),
        ResumeError::SignedOut
    );
}

async fn the_sign_in_limit_holds_for_concurrent_wrong_tokens(store: Arc<dyn Store>) {
    // Given an account, and 25 concurrent sign-ins with wrong tokens from different addresses
    let keys = Arc::new(Keys::random());
    let a = account(store.as_ref(), &keys, "token-1").await;
    let outcomes = join_all((0..25u8).map(|i| {
        let (store, keys, sid) = (store.clone(), keys.clone(), a.sid.clone());
        tokio::spawn(async move {
            let ip = Some(std::net::IpAddr::from([10, 0, 0, i]));
            console::sign_in(store.as_ref(), &keys, &sid, "wrong", ip, T0).await.unwrap_err()
        })
    }))
    .await;
    // Then exactly the account's limit were checked (and wrong), the rest refused unchecked
    let outcomes: Vec<SignInError> = outcomes.into_iter().map(Result::unwrap).collect();
    let wrong = outcomes.iter().filter(|o| **o == SignInError::Wrong).count();
    let throttled = outcomes.iter().filter(|o| matches!(o, SignInError::TooMany { .. })).count();
    assert_eq!((wrong, throttled), (SIGN_INS_PER_ACCOUNT as usize, 25 - SIGN_INS_PER_ACCOUNT as usize));
    // And the right token is refused too until the window ends
    let refused = console::sign_in(store.as_ref(), &keys, &a.sid, "token-1", None, T0).await;
    assert!(matches!(refused, Err(SignInError::TooMany { .. })));
}
