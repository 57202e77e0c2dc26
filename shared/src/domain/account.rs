//! Accounts, authentication and acting for sub-accounts.

use std::{borrow::Cow, net::IpAddr};

use super::{
    cidr::Cidr,
    crypto::Keys,
    error::{Error, Result},
    ids,
    policy::AccountPolicy,
    time::Millis,
};
use crate::ports::AccountStore;

/// How deep a sub-account tree may go (keeps `ancestors` small and lookups bounded).
pub const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub sid: String,
    /// `Keys::hash_token` of the auth token; the token itself is never stored.
    pub token_hash: Vec<u8>,
    pub email: Option<String>,
    /// Every account above this one, nearest last; empty for a top-level account.
    pub ancestors: Vec<String>,
    pub suspended: bool,
    /// Caller networks allowed (CIDR blocks; a bare address is one host); empty allows any.
    pub allowed_ips: Vec<Cidr>,
    pub created_ms: Millis,
    /// Geo permissions, pumping guard settings, test destinations.
    pub policy: AccountPolicy,
    /// How many times `policy` was replaced (0: never, and accounts stored before versions).
    /// `AccountStore::set_policy` writes only over the version it was given, so a change
    /// made from a stale read is refused rather than undoing another one. Never shown.
    pub policy_version: u64,
}

impl Account {
    pub fn new(sid: String, token: &str, keys: &Keys, parent: Option<&Account>, now: Millis) -> Self {
        let ancestors = parent
            .map(|p| {
                let mut a = p.ancestors.clone();
                a.push(p.sid.clone());
                a
            })
            .unwrap_or_default();
        Account {
            token_hash: keys.hash_token(&sid, token),
            sid,
            email: None,
            ancestors,
            suspended: false,
            allowed_ips: vec![],
            created_ms: now,
            // A sub-account may send from its parent's senders, no more, until told otherwise.
            policy: AccountPolicy { senders: parent.and_then(|p| p.policy.senders.clone()), ..Default::default() },
            policy_version: 0,
        }
    }

    pub fn parent(&self) -> Option<&str> {
        self.ancestors.last().map(String::as_str)
    }

    /// True when `other` is this account or one below it.
    pub fn is_self_or_ancestor_of(&self, other: &Account) -> bool {
        other.sid == self.sid || other.ancestors.iter().any(|a| a == &self.sid)
    }
}

/// Check Basic credentials. Unknown account and wrong token answer alike (and take alike: the
/// hash is computed either way).
/// The longest auth token any account can have (ours are 32 hex digits; a dev server's may be
/// chosen, up to this).
pub const MAX_TOKEN_LEN: usize = 128;

pub async fn authenticate(
    store: &dyn AccountStore,
    keys: &Keys,
    sid: &str,
    token: &str,
    ip: Option<IpAddr>,
) -> Result<Account> {
    // Credentials no account can have are refused before any key is built from them (a 2 KB
    // sid would be a DynamoDB key over its size limit: a 500, not a 401).
    if !ids::is_sid(ids::ACCOUNT, sid) || token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Error::Unauthenticated);
    }
    let account = store.get_account(sid).await?;
    // An unknown account's check is made too, against nothing, so both take alike.
    let stored = account.as_ref().map_or(&[][..], |a| &a.token_hash[..]);
    let matches = keys.token_matches(sid, token, stored);
    let Some(account) = account.filter(|_| matches) else {
        return Err(Error::Unauthenticated);
    };
    admit(store, &account, ip).await?;
    Ok(account)
}

/// What holds for an authenticated account on every request (the API's and the console's):
/// not suspended, nor any of its ancestors, and `ip` within its allow-list if it has one;
/// `Error::Forbidden` otherwise.
pub async fn admit(store: &dyn AccountStore, account: &Account, ip: Option<IpAddr>) -> Result<()> {
    if account.suspended {
        return Err(Error::Forbidden);
    }
    if !account.allowed_ips.is_empty() && !ip.is_some_and(|ip| account.allowed_ips.iter().any(|n| n.contains(ip))) {
        return Err(Error::Forbidden);
    }
    // Suspending an account suspends everything under it: a sub-account is refused while any
    // of its ancestors is suspended (read now, so one created later under a suspended parent is
    // refused too, and resuming the parent lets it in again). A top-level account has none.
    none_suspended(store, &account.ancestors).await
}

/// `Error::Forbidden` when any of `sids` is suspended, or missing (a tree that lost an account
/// fails closed). Read together: on DynamoDB one round trip's wait when not cached (one
/// GetItem each), none when cached (30 s per process, as the account itself) or `sids` is
/// empty.
async fn none_suspended(store: &dyn AccountStore, sids: &[String]) -> Result<()> {
    let accounts = futures::future::try_join_all(sids.iter().map(|sid| store.get_account(sid))).await?;
    if accounts.iter().any(|a| a.as_ref().is_none_or(|a| a.suspended)) {
        return Err(Error::Forbidden);
    }
    Ok(())
}

/// The account a request acts for: the caller, or `accountSid` when that names the caller or
/// one of its sub-accounts (direct or deeper). Anything else is 403, and so is a sub-account
/// that is suspended or sits under a suspended account between it and the caller (the
/// caller's own and its ancestors' were checked by `authenticate`).
/// The caller itself is borrowed, not copied: most requests act for the caller.
pub async fn act_for<'a>(
    store: &dyn AccountStore,
    caller: &'a Account,
    account_sid: Option<&str>,
) -> Result<Cow<'a, Account>> {
    let sid = match account_sid {
        None => return Ok(Cow::Borrowed(caller)),
        Some(sid) if sid == caller.sid => return Ok(Cow::Borrowed(caller)),
        // No account has another shape: refused without a key built from it.
        Some(sid) if !ids::is_sid(ids::ACCOUNT, sid) => return Err(Error::Forbidden),
        Some(sid) => sid,
    };
    let Some(target) = store.get_account(sid).await? else {
        return Err(Error::Forbidden);
    };
    // The caller is one of the target's ancestors; those after it are between the two.
    let Some(at) = target.ancestors.iter().position(|a| *a == caller.sid) else {
        return Err(Error::Forbidden);
    };
    if target.suspended {
        return Err(Error::Forbidden);
    }
    // A direct sub-account has none between: no further read.
    none_suspended(store, &target.ancestors[at + 1..]).await?;
    Ok(Cow::Owned(target))
}
