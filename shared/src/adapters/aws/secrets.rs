//! The keyring in Secrets Manager: one secret whose `AWSCURRENT` version holds the whole
//! keyring (`StoredKeys`): the bare string the template generated (key 0, never rotated), or
//! the current key with the previous one inside (`"previous"`: a key, or `null` once
//! retired). So a function reads its keyring with one request, its cold start's one network
//! call. Rotating puts a new version that keeps the old current key as its previous one;
//! retiring puts one without it.
//!
//! A stack rotated by the version before this one has a current JSON without a `previous`
//! field and its previous key in the `AWSPREVIOUS` version: only for such a version is
//! `AWSPREVIOUS` read too (a second request, after the first), until its next rotation or
//! retirement writes the one-read form. Both write paths also leave `AWSPREVIOUS` on the key
//! before (rotate: Secrets Manager moves it there; retire: taken off), so functions of the
//! version before, which read both stages, read the same keyring while a deploy rolls.

use aws_sdk_secretsmanager::{operation::get_secret_value::GetSecretValueError, Client};

use crate::{
    domain::{
        account_admin,
        crypto::{Keys, MasterKey, StoredKeys, StoredPrevious, KEY_ACTIVATION_DELAY_MS},
        otp::MAX_TIMEOUT_SECS,
        time::Millis,
    },
    ports::AdminStore,
};

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

/// How long after a key became active its predecessor may be retired: every OTP sealed and
/// hashed under the predecessor has ended by then (an OTP lives at most a day), and every
/// function reads the new keyring (`KEY_REFRESH_MS`) well within it.
pub const RETIRE_AFTER_MS: Millis = MAX_TIMEOUT_SECS as Millis * 1000 + KEY_ACTIVATION_DELAY_MS;

/// What retiring did.
#[derive(Debug, PartialEq, Eq)]
pub struct Retired {
    /// The retired key's id.
    pub kid: u8,
    /// The current key's id, that values were sealed again under.
    pub current: u8,
    /// Account values sealed again.
    pub resealed: usize,
}

/// The keyring as the secret holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The `AWSCURRENT` version's id.
    pub id: String,
    pub current: MasterKey,
    /// The previous key, inside the current version (or, for a version written before it
    /// moved inside, in `AWSPREVIOUS`).
    pub previous: Option<MasterKey>,
    /// Secrets Manager requests the read took (1 but for a keyring in the form before).
    pub requests: usize,
}

impl Stored {
    /// The keys the functions use: the current one and the previous one, if any.
    pub fn keys(&self) -> Result<Keys, KeyringError> {
        let masters = std::iter::once(self.current.clone()).chain(self.previous.clone()).collect();
        Keys::from_ring(masters).map_err(|_| KeyringError::Unreadable("the current and previous keys have one id"))
    }
}

/// Why a keyring operation did not happen. The sentences name no key material.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyringError {
    /// Secrets Manager could not be read or written (the operation is not done).
    Unavailable(String),
    /// A version holds no key this code can read.
    Unreadable(&'static str),
    /// The operator must wait or do something first; the sentence says what.
    Refused(String),
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyringError::Unavailable(what) => write!(f, "Secrets Manager: {what}"),
            KeyringError::Unreadable(what) => f.write_str(what),
            KeyringError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for KeyringError {}

pub struct SecretKeyring {
    client: Client,
    secret_id: String,
}

impl SecretKeyring {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretKeyring { client, secret_id: secret_id.into() }
    }

    /// The keyring: one request (`AWSCURRENT`), but for a keyring rotated by the version
    /// before this one (a current JSON with no `previous` field), whose previous key is then
    /// read from `AWSPREVIOUS` too.
    pub async fn read(&self) -> Result<Stored, KeyringError> {
        let (id, stored) =
            self.version(CURRENT).await?.ok_or(KeyringError::Unreadable("the secret has no current version"))?;
        let (previous, requests) = match stored.previous {
            StoredPrevious::None => (None, 1),
            StoredPrevious::Kept(key) => (Some(key), 1),
            // That version's previous key is `AWSPREVIOUS`'s current one (its own text is a
            // bare string or a rotated key without a `previous` field).
            StoredPrevious::Staged => (self.version(PREVIOUS).await?.map(|(_, p)| p.current), 2),
        };
        Ok(Stored { id, current: stored.current, previous, requests })
    }

    async fn version(&self, stage: &str) -> Result<Option<(String, StoredKeys)>, KeyringError> {
        let out = match self.client.get_secret_value().secret_id(&self.secret_id).version_stage(stage).send().await {
            Ok(out) => out,
            // No version has the stage: no previous key (a secret never rotated, or retired).
            Err(e) if matches!(e.as_service_error(), Some(GetSecretValueError::ResourceNotFoundException(_))) => {
                return Ok(None)
            }
            Err(_) => return Err(KeyringError::Unavailable(format!("cannot read the secret's {stage} version"))),
        };
        let text = out.secret_string().ok_or(KeyringError::Unreadable("a secret version is not a string"))?;
        let stored = StoredKeys::parse(text).map_err(|_| {
            KeyringError::Unreadable("a secret version is no key (at least 32 bytes, or a rotated key)")
        })?;
        Ok(Some((out.version_id().unwrap_or_default().to_owned(), stored)))
    }

    /// The keyring the functions use: the current key and the previous one, if any.
    pub async fn load(&self) -> Result<Keys, KeyringError> {
        self.read().await?.keys()
    }

    /// Put `keys` as the new current version; Secrets Manager moves `AWSPREVIOUS` to the
    /// version it replaces.
    async fn put(&self, keys: StoredKeys) -> Result<(), KeyringError> {
        self.client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(keys.to_text())
            .client_request_token(uuid_v4())
            .send()
            .await
            .map(|_| ())
            .map_err(|_| KeyringError::Unavailable("cannot put the keyring's new version".into()))
    }

    /// Make a new current key, active `delay_ms` after `now` (functions read the new keyring
    /// within `KEY_REFRESH_MS`, so `KEY_ACTIVATION_DELAY_MS` lets all of them read what it
    /// seals before any writes with it). Refused while a previous key is kept (retire it
    /// first: a third key would drop it from the ring while values may still need it) and
    /// while the current key is not active yet.
    pub async fn rotate(&self, now: Millis, delay_ms: Millis) -> Result<MasterKey, KeyringError> {
        let Stored { current, previous, .. } = self.read().await?;
        if let Some(previous) = previous {
            return Err(KeyringError::Refused(format!(
                "key {} is still kept as the previous key; retire it first (twofa-admin keys retire-previous)",
                previous.kid
            )));
        }
        if current.active_from_ms > now {
            return Err(KeyringError::Refused(format!(
                "key {} becomes active only at {} ms; rotate after that",
                current.kid, current.active_from_ms
            )));
        }
        // Ids 1–255 in turn (0 is the secret as it was before keys rotated).
        let kid = if current.kid == u8::MAX { 1 } else { current.kid + 1 };
        let key = MasterKey::random(kid, now + delay_ms);
        // The key it replaces goes inside: functions read both with one request.
        self.put(StoredKeys { current: key.clone(), previous: StoredPrevious::Kept(current) }).await?;
        Ok(key)
    }

    /// Stop keeping the previous key (None: there is none). Refused until `RETIRE_AFTER_MS`
    /// after the current key became active (OTPs under the previous one may still be
    /// pending), and while an account keeps a token only the previous key reads (a bare HMAC
    /// from before keys rotated). Every other account value under it (token digests, webhook
    /// secrets, test codes) is sealed again under the current key first.
    pub async fn retire_previous(&self, store: &dyn AdminStore, now: Millis) -> Result<Option<Retired>, KeyringError> {
        let stored = self.read().await?;
        let Some(previous) = stored.previous.clone() else { return Ok(None) };
        self.may_retire(&stored.current, now)?;
        let keys = stored.keys()?;
        let resealed = account_admin::reseal(store, &keys, previous.kid)
            .await
            .map_err(|e| KeyringError::Unavailable(format!("accounts not sealed again: {e}")))?;
        if !resealed.blocked.is_empty() {
            return Err(KeyringError::Refused(format!(
                "key {} is still needed by the tokens of {} (stored before keys rotated: only a new token moves \
                 them: twofa-admin account rotate-token SID); {} other values were sealed again",
                previous.kid,
                resealed.blocked.join(" "),
                resealed.values
            )));
        }
        // The current key alone, saying so (`"previous": null`): functions stop reading the
        // previous key at their next read.
        self.put(StoredKeys { current: stored.current.clone(), previous: StoredPrevious::None }).await?;
        // Secrets Manager moved `AWSPREVIOUS` to the version just replaced, which still holds
        // the previous key: functions of the version before this one read that stage (and would
        // find the current key's id twice), so it comes off.
        self.client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(PREVIOUS)
            .remove_from_version_id(&stored.id)
            .send()
            .await
            .map_err(|_| {
                KeyringError::Unavailable(format!(
                    "key {} is retired, but AWSPREVIOUS could not be taken off the version before ({}): functions \
                     of the version before this one fail to read the keyring until it is (aws secretsmanager \
                     update-secret-version-stage --version-stage AWSPREVIOUS --remove-from-version-id {})",
                    previous.kid, stored.id, stored.id
                ))
            })?;
        Ok(Some(Retired { kid: previous.kid, current: stored.current.kid, resealed: resealed.values }))
    }

    /// `Refused` while OTPs under the key before `current` may still be pending.
    pub fn may_retire(&self, current: &MasterKey, now: Millis) -> Result<(), KeyringError> {
        let at = current.active_from_ms + RETIRE_AFTER_MS;
        if now < at {
            return Err(KeyringError::Refused(format!(
                "OTPs under the previous key may be pending until {} (a day after key {} became active); retire after that",
                crate::domain::time::iso(at),
                current.kid
            )));
        }
        Ok(())
    }
}

/// A version's idempotency token (Secrets Manager wants 32–64 characters).
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
