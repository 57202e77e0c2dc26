//! The console's sessions and sign-in throttle (issue 28; docs/console.md "Security").
//!
//! Signing in exchanges an account's auth token for a session: a random id (the OS CSPRNG)
//! sealed with the account sid into the `twofa_console` cookie, and a record kept by the store
//! under a hash of the id (`ports::ConsoleStore`), so signing out ends it on the server. A
//! session lives `IDLE_MS` after its last use and never more than `MAX_AGE_MS`; it is bound to
//! its account and to the account's token (a fingerprint of its digest: rotating the token
//! ends every session). Each request also holds the account to its suspension and IP
//! allow-list (`account::admit`), as the API does. The CSRF token is derived from the id.

use std::net::IpAddr;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::{
    account::{self, Account},
    crypto::{Keys, Purpose},
    error::{Error, Result},
    ids,
    time::Millis,
};
use crate::ports::{ConsoleStore, Store};

/// A session ends this long after its last use...
pub const IDLE_MS: Millis = 30 * 60_000;
/// ...and this long after it began, whatever its use.
pub const MAX_AGE_MS: Millis = 8 * 3_600_000;
/// A session's last use is written again only when it is older than this (a page view does
/// not write each time).
pub const TOUCH_AFTER_MS: Millis = 5 * 60_000;
/// Sign-in attempts are counted in fixed windows of this length...
pub const SIGN_IN_WINDOW_MS: Millis = 15 * 60_000;
/// ...at most this many per account sid...
pub const SIGN_INS_PER_ACCOUNT: u32 = 10;
/// ...and this many per client address (an IPv6 client: its /64).
pub const SIGN_INS_PER_ADDRESS: u32 = 30;
/// The seal's context of the cookie (and, with the session's key, of its flash).
const COOKIE_AAD: &str = "twofa_console";
const ID_LEN: usize = 32;

/// A session as the store keeps it: no secret (the id itself is only in the cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// `SessionId::key`: a hash of the id.
    pub key: String,
    pub account_sid: String,
    /// `token_fingerprint` of the account when the session began.
    pub token_fingerprint: String,
    pub created_ms: Millis,
    /// Its last use (written at most every `TOUCH_AFTER_MS`).
    pub seen_ms: Millis,
}

impl ConsoleSession {
    /// When it ends unless used again.
    pub fn expires_ms(&self) -> Millis {
        (self.seen_ms + IDLE_MS).min(self.created_ms + MAX_AGE_MS)
    }

    pub fn live_at(&self, now: Millis) -> bool {
        now < self.expires_ms()
    }
}

/// A session's id: 32 random bytes, known only to the cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_LEN]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl SessionId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn random() -> Result<Self> {
        let mut id = [0u8; ID_LEN];
        getrandom::getrandom(&mut id).map_err(|_| Error::Internal)?;
        Ok(SessionId(id))
    }

    /// What the store keys the session by: a hash, so a read of the store gives no cookie.
    pub fn key(&self) -> String {
        hex::encode(&self.digest(b"twofa/console-session\0")[..20])
    }

    /// The session's CSRF token.
    pub fn csrf(&self) -> String {
        hex::encode(&self.digest(b"twofa/console-csrf\0")[..16])
    }

    fn digest(&self, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label);
        h.update(self.0);
        h.finalize().into()
    }
}

/// The cookie's value: the id and the account sid, sealed (base64url).
pub fn seal_cookie(keys: &Keys, id: &SessionId, account_sid: &str) -> String {
    let mut plain = id.0.to_vec();
    plain.extend_from_slice(account_sid.as_bytes());
    b64().encode(keys.seal(Purpose::Console, &plain, COOKIE_AAD))
}

/// The id and account sid a cookie seals; None for anything else.
pub fn open_cookie(keys: &Keys, value: &str) -> Option<(SessionId, String)> {
    // A cookie ten times the size of ours is not ours (and not worth opening).
    if value.len() > 512 {
        return None;
    }
    let plain = keys.open(Purpose::Console, &b64().decode(value).ok()?, COOKIE_AAD).ok()?;
    if plain.len() <= ID_LEN {
        return None;
    }
    let (id, sid) = plain.split_at(ID_LEN);
    Some((SessionId(id.try_into().ok()?), String::from_utf8(sid.to_vec()).ok()?))
}

/// A message for the next page of the session `session_key`, sealed to it (base64url).
pub fn seal_flash(keys: &Keys, session_key: &str, message: &str) -> String {
    b64().encode(keys.seal(Purpose::Console, message.as_bytes(), &format!("{COOKIE_AAD}/flash/{session_key}")))
}

/// The message `seal_flash` sealed for this session; None for anything else.
pub fn open_flash(keys: &Keys, session_key: &str, value: &str) -> Option<String> {
    if value.len() > 2048 {
        return None;
    }
    let plain =
        keys.open(Purpose::Console, &b64().decode(value).ok()?, &format!("{COOKIE_AAD}/flash/{session_key}")).ok()?;
    String::from_utf8(plain).ok()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A fingerprint of the account's auth token (of the digest its stored hash seals, so a
/// re-sealed hash under a new key keeps it; a rotated token changes it).
pub fn token_fingerprint(keys: &Keys, account: &Account) -> Result<String> {
    let digest = keys.open(Purpose::Token, &account.token_hash, &account.sid)?;
    let mut h = Sha256::new();
    h.update(b"twofa/console-token\0");
    h.update(&digest);
    Ok(hex::encode(&h.finalize()[..16]))
}

/// Why a sign-in did not start a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInError {
    /// No such account, or the wrong token (alike).
    Wrong,
    /// The account (or one above it) is suspended, or the address is not in its allow-list.
    Refused,
    /// Too many attempts for the account or from the address: try again after this many
    /// seconds.
    TooMany {
        retry_after_secs: u64,
    },
    Failed(Error),
}

/// The counters an attempt at `now` counts in, with their maximum: the client address's
/// (an IPv6 client's /64) and, for a sid an account can have, the account's. The window's
/// start is in each key, so a new window is a new counter.
pub fn attempt_keys(account_sid: &str, ip: Option<IpAddr>, now: Millis) -> Vec<(String, u32)> {
    let window = now.div_euclid(SIGN_IN_WINDOW_MS) * SIGN_IN_WINDOW_MS;
    let address = match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    };
    let mut keys = vec![(format!("ip:{address}#{window}"), SIGN_INS_PER_ADDRESS)];
    if ids::is_sid(ids::ACCOUNT, account_sid) {
        keys.push((format!("account:{account_sid}#{window}"), SIGN_INS_PER_ACCOUNT));
    }
    keys
}

/// Seconds from `now` to the end of its sign-in window.
pub fn retry_after_secs(now: Millis) -> u64 {
    let end = now.div_euclid(SIGN_IN_WINDOW_MS) * SIGN_IN_WINDOW_MS + SIGN_IN_WINDOW_MS;
    ((end - now + 999) / 1000) as u64
}

/// Sign `account_sid` in with `token` from `ip` at `now`: the attempt is counted first (the
/// address's counter, then the account's), then the credentials and the account checked as
/// the API checks them, then the session stored. The cookie's value and the session's id.
pub async fn sign_in(
    store: &dyn Store,
    keys: &Keys,
    account_sid: &str,
    token: &str,
    ip: Option<IpAddr>,
    now: Millis,
) -> std::result::Result<(String, SessionId), SignInError> {
    for (key, max) in attempt_keys(account_sid, ip, now) {
        let expires = now.div_euclid(SIGN_IN_WINDOW_MS) * SIGN_IN_WINDOW_MS + SIGN_IN_WINDOW_MS;
        if !store.count_attempt(&key, max, now, expires).await.map_err(SignInError::Failed)? {
            return Err(SignInError::TooMany { retry_after_secs: retry_after_secs(now) });
        }
    }
    let account = match account::authenticate(store, keys, account_sid, token, ip).await {
        Ok(a) => a,
        Err(Error::Unauthenticated) => return Err(SignInError::Wrong),
        Err(Error::Forbidden) => return Err(SignInError::Refused),
        Err(e) => return Err(SignInError::Failed(e)),
    };
    let id = SessionId::random().map_err(SignInError::Failed)?;
    let session = ConsoleSession {
        key: id.key(),
        account_sid: account.sid.clone(),
        token_fingerprint: token_fingerprint(keys, &account).map_err(SignInError::Failed)?,
        created_ms: now,
        seen_ms: now,
    };
    store.put_console_session(&session).await.map_err(SignInError::Failed)?;
    Ok((seal_cookie(keys, &id, &account.sid), id))
}

/// Why a cookie gives no signed-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeError {
    /// Not a session: no cookie of ours, signed out, expired, or the account's token rotated
    /// (sign in again).
    SignedOut,
    /// The account (or one above it) is suspended, or the address is not in its allow-list.
    Refused,
    Failed(Error),
}

/// The session a cookie names, at `now`, from `ip`: its account, checked as the API checks a
/// caller (`account::admit`), and its id. Its last use is written when it is older than
/// `TOUCH_AFTER_MS`.
pub async fn resume(
    store: &dyn Store,
    keys: &Keys,
    cookie: &str,
    ip: Option<IpAddr>,
    now: Millis,
) -> std::result::Result<(Account, SessionId), ResumeError> {
    let (id, account_sid) = open_cookie(keys, cookie).ok_or(ResumeError::SignedOut)?;
    let key = id.key();
    let session = store.get_console_session(&key).await.map_err(ResumeError::Failed)?;
    let session = session.filter(|s| s.account_sid == account_sid && s.live_at(now)).ok_or(ResumeError::SignedOut)?;
    let account = store.get_account(&account_sid).await.map_err(ResumeError::Failed)?.ok_or(ResumeError::SignedOut)?;
    let fingerprint = token_fingerprint(keys, &account).map_err(|_| ResumeError::SignedOut)?;
    if !super::crypto::ct_eq(fingerprint.as_bytes(), session.token_fingerprint.as_bytes()) {
        return Err(ResumeError::SignedOut);
    }
    match account::admit(store, &account, ip).await {
        Ok(()) => {}
        Err(Error::Forbidden) => return Err(ResumeError::Refused),
        Err(e) => return Err(ResumeError::Failed(e)),
    }
    if now - session.seen_ms >= TOUCH_AFTER_MS {
        let touched = ConsoleSession { seen_ms: now, ..session };
        // Gone meanwhile (signed out in another tab): this request was the last.
        if !store.touch_console_session(&key, now, touched.expires_ms()).await.map_err(ResumeError::Failed)? {
            return Err(ResumeError::SignedOut);
        }
    }
    Ok((account, id))
}

/// End the session a cookie names (nothing for a cookie that names none).
pub async fn sign_out<S: ConsoleStore + ?Sized>(store: &S, keys: &Keys, cookie: &str) -> Result<()> {
    match open_cookie(keys, cookie) {
        Some((id, _)) => store.delete_console_session(&id.key()).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_to_its_id_and_account_and_nothing_else_opens() {
        // Given a keyring and a fresh session id
        let keys = Keys::random();
        let id = SessionId::random().unwrap();
        // When its cookie is sealed and opened
        let cookie = seal_cookie(&keys, &id, "AC0123");
        // Then it gives the id and account back; a changed or foreign cookie gives nothing
        assert_eq!(open_cookie(&keys, &cookie), Some((id.clone(), "AC0123".to_owned())));
        let mut changed = cookie.clone().into_bytes();
        changed[10] = if changed[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(open_cookie(&keys, std::str::from_utf8(&changed).unwrap()), None);
        assert_eq!(open_cookie(&Keys::random(), &cookie), None);
        assert_eq!(open_cookie(&keys, "not-a-cookie"), None);
    }

    #[test]
    fn a_flash_opens_only_for_its_session() {
        let keys = Keys::random();
        let flash = seal_flash(&keys, "k1", "Limit created");
        assert_eq!(open_flash(&keys, "k1", &flash).as_deref(), Some("Limit created"));
        assert_eq!(open_flash(&keys, "k2", &flash), None);
    }

    #[test]
    fn ids_are_random_and_their_key_and_csrf_differ_from_each_other() {
        let (a, b) = (SessionId::random().unwrap(), SessionId::random().unwrap());
        assert_ne!(a, b);
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), a.csrf());
        assert_eq!(a.csrf().len(), 32);
    }

    #[test]
    fn a_session_ends_idle_after_30_minutes_and_in_any_case_after_8_hours() {
        let s = ConsoleSession {
            key: "k".into(),
            account_sid: "AC1".into(),
            token_fingerprint: "f".into(),
            created_ms: 0,
            seen_ms: 0,
        };
        assert!(s.live_at(IDLE_MS - 1));
        assert!(!s.live_at(IDLE_MS));
        let late = ConsoleSession { seen_ms: MAX_AGE_MS - 60_000, ..s };
        assert!(late.live_at(MAX_AGE_MS - 1));
        assert!(!late.live_at(MAX_AGE_MS), "used a minute ago, but 8 hours old");
    }

    #[test]
    fn attempts_count_per_address_and_per_well_formed_account_sid_in_15_minute_windows() {
        let sid = format!("AC{}", "a".repeat(32));
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let keys = attempt_keys(&sid, Some(ip), SIGN_IN_WINDOW_MS + 5);
        assert_eq!(keys[0], (format!("ip:2001:db8:1:2::/64#{SIGN_IN_WINDOW_MS}"), SIGN_INS_PER_ADDRESS));
        assert_eq!(keys[1], (format!("account:{sid}#{SIGN_IN_WINDOW_MS}"), SIGN_INS_PER_ACCOUNT));
        assert_eq!(attempt_keys("nonsense", None, 0).len(), 1, "no counter for a sid no account has");
        assert_eq!(retry_after_secs(SIGN_IN_WINDOW_MS - 1500), 2);
    }
}
