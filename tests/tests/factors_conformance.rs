//! Factors' use cases (`domain::factors`, verify) on both stores, written once and run on the
//! embedded store and on DynamoDB (moto at `AWS_ENDPOINT_URL`, a table per test): two right
//! codes at once verify once, a first code confirms once, and a factor follows the keys as they
//! rotate. The port's own conditional writes are in store_conformance.rs.

mod common;

use std::sync::Arc;

use common::{authenticator::Authenticator, base32_decode};
use futures::future::join_all;
use twofa::{
    adapters::{clock::AdjustableClock, outbox::Outbox},
    domain::{
        account::Account,
        account_admin,
        crypto::{Keys, MasterKey},
        factor::{Factor, TotpParams},
        factors::{self, ChallengeRequest, NewPasskey, NewTotp, Proof},
        ids,
        policy::{update_policy, PolicyUpdate},
        time::Millis,
        totp,
        verify::{self, VerifyTarget},
    },
    ports::{AdminStore, Deps, NoScheduler, Store},
    Error,
};

const T0: Millis = 1_700_000_000_000;

on_both_stores!(
    of_concurrent_right_codes_on_two_challenges_exactly_one_verifies,
    a_factor_sealed_under_an_older_key_verifies_and_moves_to_the_current_one,
    the_operators_reseal_moves_every_factor_off_the_retiring_key,
    of_concurrent_right_first_codes_exactly_one_confirms,
    of_concurrent_registrations_of_one_passkey_exactly_one_confirms,
    of_concurrent_assertions_of_one_passkey_challenge_exactly_one_verifies,
    a_cloned_passkey_with_a_stale_counter_is_refused_and_the_original_signs_on,
);

// ---- the use cases over each store -----------------------------------------------------------

fn ring(kids: &[u8]) -> Keys {
    let masters = kids.iter().map(|&k| MasterKey::new(k, i64::from(k), vec![k + 1; 32]).unwrap()).collect();
    Keys::from_ring(masters).unwrap()
}

fn deps(store: Arc<dyn Store>, keys: Keys) -> (Deps, Arc<AdjustableClock>) {
    let clock = Arc::new(AdjustableClock::default());
    let deps = Deps {
        store,
        dispatcher: Arc::new(Outbox::new(clock.clone())),
        clock: clock.clone(),
        keys: Arc::new(keys),
        scheduler: Arc::new(NoScheduler),
    };
    (deps, clock)
}

async fn new_account(deps: &Deps) -> Account {
    let account = Account::new(ids::new_sid(ids::ACCOUNT), "token", &deps.keys, None, T0);
    deps.store.put_account(&account).await.expect("account");
    account
}

/// A confirmed factor of `entity` and its seed, the clock then moved to the next time step.
async fn confirmed(deps: &Deps, clock: &AdjustableClock, account: &Account, entity: &str) -> (Factor, Vec<u8>) {
    let new = NewTotp { entity: entity.into(), friendly_name: None, issuer: None, params: TotpParams::default() };
    let created = factors::create(deps, account, new).await.unwrap();
    let seed = base32_decode(&created.secret);
    let code = totp::code(&seed, &created.factor.totp, totp::step_at(&created.factor.totp, deps.clock.now_ms()));
    let factor =
        factors::confirm(deps, account, entity, &created.factor.sid, Some(Proof::Code(code.clone()))).await.unwrap();
    clock.advance_secs(30);
    (factor, seed)
}

/// A challenge of `f` in `service` (a newer challenge of the entity in the same service cancels
/// an older one, as a newer send to a number does).
async fn challenge(deps: &Deps, account: &Account, f: &Factor, service: &str) -> String {
    let req = ChallengeRequest {
        service: service.into(),
        timeout_secs: 300,
        limits: vec![],
        idempotency_key: None,
        callback: None,
    };
    factors::challenge(deps, account, &f.entity, &f.sid, req).await.unwrap().sid
}

fn now_code(deps: &Deps, f: &Factor, seed: &[u8]) -> String {
    totp::code(seed, &f.totp, totp::step_at(&f.totp, deps.clock.now_ms()))
}

async fn of_concurrent_right_codes_on_two_challenges_exactly_one_verifies(store: Arc<dyn Store>) {
    let (deps, clock) = deps(store, Keys::random());
    let account = new_account(&deps).await;
    let (f, seed) = confirmed(&deps, &clock, &account, "frank").await;
    // Given two open challenges of one factor and the app's code
    let (a, b) = (challenge(&deps, &account, &f, "web").await, challenge(&deps, &account, &f, "app").await);
    let code = now_code(&deps, &f, &seed);
    // When each is verified twice with it, all at once
    let answers = join_all([&a, &b, &a, &b].map(|sid| {
        let (deps, account, sid, code) = (deps.clone(), account.clone(), sid.clone(), code.clone());
        tokio::spawn(async move { verify::verify(&deps, &account, VerifyTarget::RequestId(sid), &code).await })
    }))
    .await;
    // Then exactly one verified; the code counts once
    let verified: Vec<_> = answers.into_iter().map(|r| r.unwrap()).filter(Result::is_ok).collect();
    assert_eq!(verified.len(), 1, "{verified:?}");
    // And the other challenge takes the next step's code
    clock.advance_secs(30);
    let other = if verified[0].as_deref() == Ok(a.as_str()) { b } else { a };
    let next = now_code(&deps, &f, &seed);
    assert_eq!(verify::verify(&deps, &account, VerifyTarget::RequestId(other.clone()), &next).await, Ok(other));
}

async fn a_factor_sealed_under_an_older_key_verifies_and_moves_to_the_current_one(store: Arc<dyn Store>) {
    // Given a factor created and confirmed while key 1 was the only key
    let (deps, clock) = deps(store.clone(), ring(&[1]));
    let account = new_account(&deps).await;
    let (f, seed) = confirmed(&deps, &clock, &account, "grace").await;
    assert_eq!(f.sealed_secret[1], 1, "sealed under key 1");
    // When key 2 arrives and a challenge is verified
    deps.keys.replace(ring(&[1, 2]), 0);
    let sid = challenge(&deps, &account, &f, "2FA").await;
    let code = now_code(&deps, &f, &seed);
    assert_eq!(verify::verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), &code).await, Ok(sid));
    // Then its secret is sealed under key 2
    let stored = store.get_factor(&account.sid, "grace", &f.sid).await.unwrap().unwrap();
    assert_eq!(stored.sealed_secret[1], 2, "resealed under the current key");
    // And once key 1 is gone it still verifies
    deps.keys.replace(ring(&[2]), 0);
    clock.advance_secs(30);
    let sid = challenge(&deps, &account, &f, "2FA").await;
    let code = now_code(&deps, &f, &seed);
    assert_eq!(verify::verify(&deps, &account, VerifyTarget::RequestId(sid.clone()), &code).await, Ok(sid));
}

async fn the_operators_reseal_moves_every_factor_off_the_retiring_key<S: Store + AdminStore + 'static>(store: Arc<S>) {
    // Given factors of two accounts made while key 1 was the only key, never used since
    let (deps, clock) = deps(store.clone(), ring(&[1]));
    let (one, two) = (new_account(&deps).await, new_account(&deps).await);
    let mut made = vec![];
    for (account, entity) in [(&one, "hana"), (&one, "ivan"), (&two, "hana")] {
        made.push((account.clone(), confirmed(&deps, &clock, account, entity).await));
    }
    // And a passkey, which keeps nothing sealed
    let three = passkey_account(&deps).await;
    let mut key = Authenticator::new();
    let passkey = registered_passkey(&deps, &three, "hana", &mut key).await;
    // When key 2 arrives and the operator reseals what key 1 sealed, before retiring it
    deps.keys.replace(ring(&[1, 2]), 0);
    let done = account_admin::reseal(store.as_ref(), &deps.keys, 1).await.unwrap();
    // Then every factor's secret is under key 2 (besides the accounts' own values)
    assert!(done.values >= made.len(), "{done:?}");
    for (account, (f, _)) in &made {
        let stored = store.get_factor(&account.sid, &f.entity, &f.sid).await.unwrap().unwrap();
        assert_eq!(stored.sealed_secret[1], 2, "{} resealed", f.sid);
    }
    // And with key 1 retired each one still verifies its app's codes
    deps.keys.replace(ring(&[2]), 0);
    for (account, (f, seed)) in &made {
        let sid = challenge(&deps, account, f, "2FA").await;
        let code = now_code(&deps, f, seed);
        assert_eq!(verify::verify(&deps, account, VerifyTarget::RequestId(sid.clone()), &code).await, Ok(sid));
    }
    // And the passkey, passed over, still signs in
    let (sid, options) = passkey_challenge(&deps, &three, &passkey).await;
    let a = key.assert(&options, ORIGIN);
    assert_eq!(factors::verify_passkey(&deps, &three, "hana", &passkey.sid, &sid, &a).await, Ok(sid));
    // And a second reseal finds nothing left under key 1
    let again = account_admin::reseal(store.as_ref(), &deps.keys, 1).await.unwrap();
    assert_eq!(again.values, 0, "{again:?}");
}

async fn of_concurrent_right_first_codes_exactly_one_confirms(store: Arc<dyn Store>) {
    // Given a new factor and its app's first code
    let (deps, _clock) = deps(store, Keys::random());
    let account = new_account(&deps).await;
    let new = NewTotp { entity: "jack".into(), friendly_name: None, issuer: None, params: TotpParams::default() };
    let created = factors::create(&deps, &account, new).await.unwrap();
    let f = created.factor;
    let code = now_code(&deps, &f, &base32_decode(&created.secret));
    // When eight confirms race with it
    let answers = join_all((0..8).map(|_| {
        let (deps, account, sid, code) = (deps.clone(), account.clone(), f.sid.clone(), code.clone());
        tokio::spawn(
            async move { factors::confirm(&deps, &account, "jack", &sid, Some(Proof::Code(code.clone()))).await },
        )
    }))
    .await;
    // Then exactly one confirmed it, and the others were told it is verified already
    let answers: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 1, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(matches!(refused, Error::InvalidParameter { param, .. } if param == "factorSid"), "{refused:?}");
    }
    // And no wrong code was counted against it
    assert_eq!(deps.store.get_factor(&account.sid, "jack", &f.sid).await.unwrap().unwrap().confirm_failures, 0);
}

// ---- passkeys ----------------------------------------------------------------------------------

const ORIGIN: &str = "https://app.example.com";

/// An account whose relying party is example.com, used from `ORIGIN`.
async fn passkey_account(deps: &Deps) -> Account {
    let account = new_account(deps).await;
    let update: PolicyUpdate =
        serde_json::from_value(serde_json::json!({ "passkeys": { "rpId": "example.com", "origins": [ORIGIN] } }))
            .unwrap();
    update_policy(deps.store.as_ref(), &deps.keys, &account.sid, update).await.unwrap();
    deps.store.get_account(&account.sid).await.unwrap().unwrap()
}

/// A passkey factor of `entity` registered by `key`.
async fn registered_passkey(deps: &Deps, account: &Account, entity: &str, key: &mut Authenticator) -> Factor {
    let new = NewPasskey { entity: entity.into(), friendly_name: None, user_name: None };
    let (f, options) = factors::create_passkey(deps, account, new).await.unwrap();
    let credential = key.register(&options, ORIGIN);
    factors::confirm(deps, account, entity, &f.sid, Some(Proof::Credential(credential))).await.unwrap()
}

/// A passkey challenge: its sid and request options.
async fn passkey_challenge(deps: &Deps, account: &Account, f: &Factor) -> (String, serde_json::Value) {
    let req = ChallengeRequest {
        service: "2FA".into(),
        timeout_secs: 300,
        limits: vec![],
        idempotency_key: None,
        callback: None,
    };
    let c = factors::challenge(deps, account, &f.entity, &f.sid, req).await.unwrap();
    (c.sid, c.options.expect("a passkey challenge has options"))
}

async fn of_concurrent_registrations_of_one_passkey_exactly_one_confirms(store: Arc<dyn Store>) {
    // Given a new passkey factor and the authenticator's answer to its options
    let (deps, _clock) = deps(store, Keys::random());
    let account = passkey_account(&deps).await;
    let new = NewPasskey { entity: "kate".into(), friendly_name: None, user_name: None };
    let (f, options) = factors::create_passkey(&deps, &account, new).await.unwrap();
    let credential = Authenticator::new().register(&options, ORIGIN);
    // When eight confirms race with it
    let answers = join_all((0..8).map(|_| {
        let (deps, account, sid, c) = (deps.clone(), account.clone(), f.sid.clone(), credential.clone());
        tokio::spawn(async move { factors::confirm(&deps, &account, "kate", &sid, Some(Proof::Credential(c))).await })
    }))
    .await;
    // Then exactly one confirmed it, the others were told it is verified already
    let answers: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 1, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert!(matches!(refused, Error::InvalidParameter { param, .. } if param == "factorSid"), "{refused:?}");
    }
    // And the stored factor holds the credential, its ceremony over
    let stored = deps.store.get_factor(&account.sid, "kate", &f.sid).await.unwrap().unwrap();
    let pk = stored.passkey.expect("a passkey");
    assert!(pk.ceremony.is_none() && pk.credential.is_some(), "{pk:?}");
    assert_eq!(stored.confirm_failures, 0);
}

async fn of_concurrent_assertions_of_one_passkey_challenge_exactly_one_verifies(store: Arc<dyn Store>) {
    // Given a registered passkey, a challenge, and the authenticator's assertion for it
    let (deps, _clock) = deps(store, Keys::random());
    let account = passkey_account(&deps).await;
    let mut key = Authenticator::new();
    let f = registered_passkey(&deps, &account, "liam", &mut key).await;
    let (sid, options) = passkey_challenge(&deps, &account, &f).await;
    let assertion = key.assert(&options, ORIGIN);
    // When it is presented eight times at once
    let answers = join_all((0..8).map(|_| {
        let (deps, account, fsid, sid, a) =
            (deps.clone(), account.clone(), f.sid.clone(), sid.clone(), assertion.clone());
        tokio::spawn(async move { factors::verify_passkey(&deps, &account, "liam", &fsid, &sid, &a).await })
    }))
    .await;
    // Then exactly one verified the challenge
    let answers: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 1, "{answers:?}");
    assert_eq!(
        deps.store.get_otp(&account.sid, &sid).await.unwrap().unwrap().status_at(deps.clock.now_ms()).as_str(),
        "success"
    );
}

async fn a_cloned_passkey_with_a_stale_counter_is_refused_and_the_original_signs_on(store: Arc<dyn Store>) {
    // Given a registered passkey, a copy of its key, and the original signing in once
    let (deps, _clock) = deps(store, Keys::random());
    let account = passkey_account(&deps).await;
    let mut key = Authenticator::new();
    let f = registered_passkey(&deps, &account, "mia", &mut key).await;
    let mut clone = key.clone_stale();
    let (first, options) = passkey_challenge(&deps, &account, &f).await;
    let a = key.assert(&options, ORIGIN);
    assert!(factors::verify_passkey(&deps, &account, "mia", &f.sid, &first, &a).await.is_ok());
    // When the copy signs the next challenge
    let (second, options) = passkey_challenge(&deps, &account, &f).await;
    let a = clone.assert(&options, ORIGIN);
    let refused = factors::verify_passkey(&deps, &account, "mia", &f.sid, &second, &a).await;
    // Then it is refused as a wrong code
    assert_eq!(refused.map_err(|r| r.error), Err(Error::InvalidCode));
    // And the original, its counter still ahead, signs that challenge in
    let a = key.assert(&options, ORIGIN);
    assert_eq!(factors::verify_passkey(&deps, &account, "mia", &f.sid, &second, &a).await, Ok(second));
}
