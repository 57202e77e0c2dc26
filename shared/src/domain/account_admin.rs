//! Account administration (the `twofa-admin` command): create, list, suspend and resume,
//! rotate the token, restrict caller IPs. Policies and callbacks go through
//! `policy::update_policy_with` like the dev server's.

use super::{
    account::{Account, MAX_DEPTH},
    callbacks,
    cidr::Cidr,
    crypto::{Keys, Purpose},
    error::{Error, Result},
    factors, ids,
    policy::{backoff, AccountPolicy, SealedSecret, WebhookSecret, POLICY_TRIES},
    send::is_email,
    time::Millis,
};
use crate::ports::AdminStore;

/// Most CIDR blocks in one allow-list (they live in the account item).
pub const MAX_ALLOWED_IPS: usize = 100;

/// An auth token in clear, to show once. `Debug` shows nothing of it.
pub struct AuthToken(pub String);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

/// A new account, with the credentials shown this once (stored only hashed or sealed).
#[derive(Debug)]
pub struct Created {
    pub account: Account,
    pub token: AuthToken,
    pub webhook_secret: WebhookSecret,
}

/// A new token: 128 bits from the OS CSPRNG, as hex.
fn new_token() -> AuthToken {
    AuthToken(ids::new_sid(""))
}

/// Create an account (a sub-account of `parent` when given) with `email`, a new token and a
/// new webhook secret. `Error::NotFound` when the parent does not exist.
pub async fn create(
    store: &dyn AdminStore,
    keys: &Keys,
    now: Millis,
    email: &str,
    parent: Option<&str>,
) -> Result<Created> {
    let email = email.trim();
    if !is_email(email) {
        return Err(Error::invalid("email", "must be an email address"));
    }
    let parent = match parent {
        Some(sid) => Some(store.get_account(sid).await?.ok_or(Error::NotFound)?),
        None => None,
    };
    if parent.as_ref().is_some_and(|p| p.ancestors.len() + 1 > MAX_DEPTH) {
        return Err(Error::invalid("parent", format!("sub-accounts go at most {MAX_DEPTH} deep")));
    }
    // Senders: a sub-account starts with its parent's; the deployment's first account with
    // any sender the deployment has (the single-tenant setup is one command); any other
    // account with none, until the operator grants some (`policy SID --json '{"senders":…}'`).
    let first = parent.is_none() && store.list_accounts().await?.is_empty();
    let token = new_token();
    let mut account = Account::new(ids::new_sid(ids::ACCOUNT), &token.0, keys, parent.as_ref(), now);
    account.email = Some(email.to_owned());
    if parent.is_none() && !first {
        account.policy.senders = Some(vec![]);
    }
    let secret = callbacks::new_secret();
    account.policy.webhook_secret = Some(SealedSecret(callbacks::seal_secret(keys, &account.sid, &secret)));
    store.put_account(&account).await?;
    Ok(Created { account, token, webhook_secret: WebhookSecret(secret) })
}

async fn existing(store: &dyn AdminStore, sid: &str) -> Result<Account> {
    store.get_account(sid).await?.ok_or(Error::NotFound)
}

async fn existing_fresh(store: &dyn AdminStore, sid: &str) -> Result<Account> {
    store.get_account_fresh(sid).await?.ok_or(Error::NotFound)
}

/// Suspend (every request with its credentials answers 403) or resume an account.
pub async fn set_suspended(store: &dyn AdminStore, sid: &str, suspended: bool) -> Result<Account> {
    let mut account = existing(store, sid).await?;
    store.set_suspended(&account, suspended).await?;
    account.suspended = suspended;
    Ok(account)
}

/// A new token for the account; the old one stops working.
pub async fn rotate_token(store: &dyn AdminStore, keys: &Keys, sid: &str) -> Result<AuthToken> {
    let account = existing(store, sid).await?;
    let token = new_token();
    store.replace_token_hash(&account, &keys.hash_token(&account.sid, &token.0)).await?;
    Ok(token)
}

/// What `reseal` did before a key is retired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Values sealed again under the current key (token digests, webhook secrets, test codes,
    /// provider secrets).
    pub values: usize,
    /// Accounts whose token is still stored as a bare HMAC under key 0 (from before keys
    /// rotated): only the token itself could be hashed again, so they need a new one
    /// (`rotate-token`), or to keep key 0.
    pub blocked: Vec<String>,
}

/// Seal again under the current key every account value that is under `retiring`: token
/// digests, webhook secrets and test numbers' codes, so that nothing stored in an account
/// needs that key any more. A value that opens under no key is left as it is (it was already
/// unreadable).
pub async fn reseal(store: &dyn AdminStore, keys: &Keys, retiring: u8) -> Result<Resealed> {
    if keys.writer_kid() == retiring {
        return Err(Error::invalid("key", "the key to retire is still the one written with"));
    }
    let mut done = Resealed::default();
    for mut account in store.list_accounts().await? {
        let sid = account.sid.clone();
        if Keys::kid_of_hash(&account.token_hash) == Some(0) && account.token_hash.len() == 32 {
            if retiring == 0 {
                done.blocked.push(sid.clone());
            }
        } else if keys.open_any(Purpose::Token, &account.token_hash, &sid).is_ok_and(|o| o.kid == retiring) {
            let hash = keys.reseal_token(&sid, &account.token_hash).ok_or(Error::Internal)?;
            store.replace_token_hash(&account, &hash).await?;
            done.values += 1;
        }
        // The policy is written only over the version read: when it changed meanwhile (or the
        // list was behind), it is read again as stored and resealed again.
        let mut attempt = 0;
        loop {
            let (policy, changed) = resealed_policy(keys, &account, retiring);
            if changed == 0 {
                break;
            }
            match store.set_policy(&account, &policy).await {
                Ok(()) => {
                    done.values += changed;
                    break;
                }
                Err(Error::Contended) if attempt + 1 < POLICY_TRIES => {
                    backoff(attempt).await;
                    attempt += 1;
                    account = existing_fresh(store, &sid).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    done.values += reseal_factors(store, keys, retiring).await?;
    Ok(done)
}

/// Every factor's secret under `retiring` sealed again under the current key: how many. A
/// factor changed meanwhile (a verify resealed it first, or it is gone) is read again.
async fn reseal_factors(store: &dyn AdminStore, keys: &Keys, retiring: u8) -> Result<usize> {
    let (mut resealed, mut after) = (0, None);
    loop {
        let page = store.factors_page(after.as_deref()).await?;
        for factor in page.factors {
            let mut current = Some(factor);
            for _ in 0..POLICY_TRIES {
                let Some(f) = current.take() else { break };
                let Some(sealed) = factors::resealed_secret(keys, &f, retiring)? else { break };
                if store.reseal_factor(&f.account_sid, &f.entity, &f.sid, &f.sealed_secret, &sealed).await? {
                    resealed += 1;
                    break;
                }
                current = store.get_factor(&f.account_sid, &f.entity, &f.sid).await?;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(resealed),
        }
    }
}

/// `account`'s policy with its values under `retiring` sealed again under the current key,
/// and how many there were.
fn resealed_policy(keys: &Keys, account: &Account, retiring: u8) -> (AccountPolicy, usize) {
    let sid = &account.sid;
    let mut policy = account.policy.clone();
    let mut changed = 0;
    if let Some(sealed) = &policy.webhook_secret {
        if let Ok(Some(again)) = callbacks::reseal_secret(keys, sid, &sealed.0, retiring) {
            policy.webhook_secret = Some(SealedSecret(again));
            changed += 1;
        }
    }
    for t in &mut policy.test_destinations {
        if let Ok(Some(again)) = t.resealed(keys, sid, retiring) {
            *t = again;
            changed += 1;
        }
    }
    for p in &mut policy.providers {
        if let Ok(Some(again)) = p.resealed(keys, sid, retiring) {
            *p = again;
            changed += 1;
        }
    }
    (policy, changed)
}

/// An allow-list as given (addresses or CIDR blocks), checked: at most `MAX_ALLOWED_IPS`,
/// each a network, repeats dropped; 400 naming `cidr` otherwise.
pub fn parse_allowed_ips(blocks: &[String]) -> Result<Vec<Cidr>> {
    if blocks.len() > MAX_ALLOWED_IPS {
        return Err(Error::invalid("cidr", format!("at most {MAX_ALLOWED_IPS} blocks")));
    }
    let mut list: Vec<Cidr> = Vec::with_capacity(blocks.len());
    for b in blocks {
        let cidr = b.parse::<Cidr>().map_err(|e| Error::invalid("cidr", e.to_string()))?;
        if !list.contains(&cidr) {
            list.push(cidr);
        }
    }
    Ok(list)
}

/// Only callers from these networks may use the account's credentials; none: any caller.
pub async fn allow_ips(store: &dyn AdminStore, sid: &str, blocks: &[String]) -> Result<Vec<Cidr>> {
    let list = parse_allowed_ips(blocks)?;
    let account = existing(store, sid).await?;
    store.set_allowed_ips(&account, &list).await?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        adapters::memory::MemoryStore,
        domain::account::authenticate,
        ports::{AccountAdminStore, AccountStore},
    };

    async fn given_an_account() -> (MemoryStore, Keys, Created) {
        let store = MemoryStore::new();
        let keys = Keys::random();
        let created = create(&store, &keys, 1_000, "ops@example.com", None).await.unwrap();
        (store, keys, created)
    }

    fn ring(kids: &[u8]) -> Keys {
        use crate::domain::crypto::MasterKey;
        let masters = kids.iter().map(|&k| MasterKey::new(k, i64::from(k), vec![k + 1; 32]).unwrap()).collect();
        Keys::from_ring(masters).unwrap()
    }

    #[tokio::test]
    async fn resealing_moves_every_account_value_off_the_retiring_key_and_names_tokens_only_a_new_token_can_move() {
        use crate::domain::policy::{update_policy_with, PolicyUpdate, TestNumberInput};
        // Given accounts made under key 1: one with a test number and a provider of its own,
        // and one whose token is a bare HMAC from before keys rotated (key 0)
        let store = MemoryStore::new();
        let old = ring(&[1]);
        let c = create(&store, &old, 1_000, "a@example.com", None).await.unwrap();
        let sid = c.account.sid.clone();
        let tests = vec![TestNumberInput { to: "+14155550100".into(), code: "4321".into() }];
        let providers = vec![crate::domain::providers::ProviderInput {
            name: "acme".into(),
            url: "https://sms.acme.example/send".into(),
        }];
        let update = PolicyUpdate { test_numbers: Some(tests), providers: Some(Some(providers)), ..Default::default() };
        let made = update_policy_with(&store, &old, &sid, update, callbacks::UrlRules::Public).await.unwrap();
        let provider_secret = made.provider_secrets[0].secret.clone();
        // When key 2 is current and key 1 is resealed away from
        let both = ring(&[1, 2]);
        let done = reseal(&store, &both, 1).await.unwrap();
        // Then the token digest, the webhook secret, the test code and the provider's secret
        // were sealed again
        assert_eq!(done, Resealed { values: 4, blocked: vec![] });
        // And they all work under key 2 alone
        let new = ring(&[2]);
        let stored = store.get_account(&sid).await.unwrap().unwrap();
        assert!(authenticate(&store, &new, &sid, &c.token.0, None).await.is_ok());
        let secret = stored.policy.webhook_secret.as_ref().unwrap();
        assert_eq!(
            callbacks::open_key(&new, &sid, &secret.0).unwrap(),
            callbacks::secret_key(&c.webhook_secret.0).unwrap()
        );
        assert_eq!(stored.policy.test_destinations[0].code(&new, &sid).unwrap().reveal(), "4321");
        assert_eq!(
            stored.policy.providers[0].open(&new, &sid).unwrap().key,
            callbacks::secret_key(&provider_secret).unwrap()
        );
        assert!(authenticate(&store, &old, &sid, &c.token.0, None).await.is_err(), "key 1 alone opens nothing now");
        // And resealing again finds nothing under key 1
        assert_eq!(reseal(&store, &both, 1).await.unwrap(), Resealed::default());
        // And a key still written with cannot be resealed away from
        assert!(reseal(&store, &both, 2).await.is_err());
        // Given an account whose token is stored as before keys rotated (a bare HMAC)
        let legacy = Keys::from_master(&[9u8; 32]).unwrap();
        let mut account = create(&store, &legacy, 1_000, "b@example.com", None).await.unwrap().account;
        let bare = hex::decode("083a67666b804b054abb1089b1b8a26a6333f7d24fcd81da8506d237fe80a2d9").unwrap();
        store.replace_token_hash(&account, &bare).await.unwrap();
        account.token_hash = bare;
        // Then retiring key 0 names it: only a new token moves it
        let after = Keys::from_ring(vec![
            crate::domain::crypto::MasterKey::new(0, 0, vec![9u8; 32]).unwrap(),
            crate::domain::crypto::MasterKey::new(3, 1, vec![3u8; 32]).unwrap(),
        ])
        .unwrap();
        let done = reseal(&store, &after, 0).await.unwrap();
        assert_eq!(done.blocked, vec![account.sid.clone()]);
    }

    #[tokio::test]
    async fn a_created_account_authenticates_with_its_token_and_keeps_it_only_hashed() {
        let (store, keys, c) = given_an_account().await;
        let sid = &c.account.sid;
        assert!(ids::is_sid(ids::ACCOUNT, sid));
        let stored = store.get_account(sid).await.unwrap().unwrap();
        assert_eq!(stored.email.as_deref(), Some("ops@example.com"));
        assert!(!stored.token_hash.windows(8).any(|w| c.token.0.as_bytes().windows(8).any(|t| t == w)));
        assert!(keys.token_matches(sid, &c.token.0, &stored.token_hash), "a sealed digest, not the token");
        assert!(authenticate(&store, &keys, sid, &c.token.0, None).await.is_ok());
        assert_eq!(authenticate(&store, &keys, sid, "nope", None).await.unwrap_err(), Error::Unauthenticated);
        let sealed = stored.policy.webhook_secret.expect("a webhook secret");
        assert_eq!(
            callbacks::open_key(&keys, sid, &sealed.0).unwrap(),
            callbacks::secret_key(&c.webhook_secret.0).unwrap()
        );
    }

    #[tokio::test]
    async fn a_sub_account_sits_under_its_parent_and_an_unknown_parent_is_refused() {
        let (store, keys, parent) = given_an_account().await;
        let sub = create(&store, &keys, 2_000, "team@example.com", Some(&parent.account.sid)).await.unwrap();
        assert_eq!(sub.account.ancestors, vec![parent.account.sid.clone()]);
        let err = create(&store, &keys, 2_000, "x@example.com", Some("ACnope")).await.unwrap_err();
        assert_eq!(err, Error::NotFound);
        assert!(matches!(create(&store, &keys, 0, "not an address", None).await.unwrap_err(),
            Error::InvalidParameter { param, .. } if param == "email"));
        let all = store.list_accounts().await.unwrap();
        assert_eq!(all.iter().map(|a| &a.sid).collect::<Vec<_>>(), vec![&parent.account.sid, &sub.account.sid]);
    }

    #[tokio::test]
    async fn suspended_accounts_are_forbidden_until_resumed() {
        let (store, keys, c) = given_an_account().await;
        let sid = &c.account.sid;
        set_suspended(&store, sid, true).await.unwrap();
        assert_eq!(authenticate(&store, &keys, sid, &c.token.0, None).await.unwrap_err(), Error::Forbidden);
        set_suspended(&store, sid, false).await.unwrap();
        assert!(authenticate(&store, &keys, sid, &c.token.0, None).await.is_ok());
        assert_eq!(set_suspended(&store, "ACnope", true).await.unwrap_err(), Error::NotFound);
    }

    #[tokio::test]
    async fn a_rotated_token_replaces_the_old_one() {
        let (store, keys, c) = given_an_account().await;
        let sid = &c.account.sid;
        let new = rotate_token(&store, &keys, sid).await.unwrap();
        assert_ne!(new.0, c.token.0);
        assert_eq!(authenticate(&store, &keys, sid, &c.token.0, None).await.unwrap_err(), Error::Unauthenticated);
        assert!(authenticate(&store, &keys, sid, &new.0, None).await.is_ok());
    }

    #[tokio::test]
    async fn a_rotation_from_a_stale_read_loses_to_the_one_that_landed() {
        let (store, keys, c) = given_an_account().await;
        let stale = store.get_account(&c.account.sid).await.unwrap().unwrap();
        rotate_token(&store, &keys, &c.account.sid).await.unwrap();
        assert_eq!(store.replace_token_hash(&stale, b"whatever").await.unwrap_err(), Error::Contended);
    }

    #[tokio::test]
    async fn only_callers_in_the_allowed_blocks_get_in() {
        let (store, keys, c) = given_an_account().await;
        let sid = &c.account.sid;
        let list = allow_ips(&store, sid, &["203.0.113.0/24".into(), "2001:db8::1".into()]).await.unwrap();
        assert_eq!(list.len(), 2);
        let auth = |ip: &str| authenticate(&store, &keys, sid, &c.token.0, Some(ip.parse().unwrap()));
        assert!(auth("203.0.113.77").await.is_ok());
        assert!(auth("2001:db8::1").await.is_ok());
        assert_eq!(auth("198.51.100.1").await.unwrap_err(), Error::Forbidden);
        assert!(matches!(allow_ips(&store, sid, &["10.0.0.0/40".into()]).await.unwrap_err(),
            Error::InvalidParameter { param, .. } if param == "cidr"));
        allow_ips(&store, sid, &[]).await.unwrap();
        assert!(auth("198.51.100.1").await.is_ok(), "an empty list allows any caller again");
    }
}
