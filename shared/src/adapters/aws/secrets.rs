//! The keyring in Secrets Manager: one secret whose `AWSCURRENT` version is the current key and
//! whose `AWSPREVIOUS` version, while it has one, the previous key. A version's text is
//! `MasterKey::parse`'s: the bare string the template generated (key 0) or a rotated key's
//! JSON. Rotating puts a new version (Secrets Manager moves `AWSPREVIOUS` to the old current
//! one itself); retiring takes `AWSPREVIOUS` off it, so functions stop reading it.

use aws_sdk_secretsmanager::{operation::get_secret_value::GetSecretValueError, Client};

use crate::{
    domain::{
        account_admin,
        crypto::{Keys, MasterKey, KEY_ACTIVATION_DELAY_MS},
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

/// One version of the secret: its Secrets Manager id and the key it holds.
#[derive(Debug, Clone)]
pub struct Version {
    pub id: String,
    pub key: MasterKey,
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

    /// The current and the previous version (two requests, at once).
    pub async fn versions(&self) -> Result<(Version, Option<Version>), KeyringError> {
        let (current, previous) = tokio::join!(self.version(CURRENT), self.version(PREVIOUS));
        let current = current?.ok_or(KeyringError::Unreadable("the secret has no current version"))?;
        Ok((current, previous?))
    }

    async fn version(&self, stage: &str) -> Result<Option<Version>, KeyringError> {
        let out = match self.client.get_secret_value().secret_id(&self.secret_id).version_stage(stage).send().await {
            Ok(out) => out,
            // No version has the stage: no previous key (a secret never rotated, or retired).
            Err(e) if matches!(e.as_service_error(), Some(GetSecretValueError::ResourceNotFoundException(_))) => {
                return Ok(None)
            }
            Err(_) => return Err(KeyringError::Unavailable(format!("cannot read the secret's {stage} version"))),
        };
        let text = out.secret_string().ok_or(KeyringError::Unreadable("a secret version is not a string"))?;
        let key = MasterKey::parse(text).map_err(|_| {
            KeyringError::Unreadable("a secret version is no key (at least 32 bytes, or a rotated key)")
        })?;
        Ok(Some(Version { id: out.version_id().unwrap_or_default().to_owned(), key }))
    }

    /// The keyring the functions use: the current key and the previous one, if any.
    pub async fn load(&self) -> Result<Keys, KeyringError> {
        let (current, previous) = self.versions().await?;
        let masters = std::iter::once(current.key).chain(previous.map(|p| p.key)).collect();
        Keys::from_ring(masters).map_err(|_| KeyringError::Unreadable("the current and previous keys have one id"))
    }

    /// Make a new current key, active `delay_ms` after `now` (functions read the new keyring
    /// within `KEY_REFRESH_MS`, so `KEY_ACTIVATION_DELAY_MS` lets all of them read what it
    /// seals before any writes with it). Refused while a previous key is kept (retire it
    /// first: a third key would drop it from the ring while values may still need it) and
    /// while the current key is not active yet.
    pub async fn rotate(&self, now: Millis, delay_ms: Millis) -> Result<MasterKey, KeyringError> {
        let (current, previous) = self.versions().await?;
        if let Some(previous) = previous {
            return Err(KeyringError::Refused(format!(
                "key {} is still kept as the previous key; retire it first (twofa-admin keys retire-previous)",
                previous.key.kid
            )));
        }
        if current.key.active_from_ms > now {
            return Err(KeyringError::Refused(format!(
                "key {} becomes active only at {} ms; rotate after that",
                current.key.kid, current.key.active_from_ms
            )));
        }
        // Ids 1–255 in turn (0 is the secret as it was before keys rotated).
        let kid = if current.key.kid == u8::MAX { 1 } else { current.key.kid + 1 };
        let key = MasterKey::random(kid, now + delay_ms);
        self.client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(key.to_text())
            .client_request_token(uuid_v4())
            .send()
            .await
            .map_err(|_| KeyringError::Unavailable("cannot put the new key".into()))?;
        Ok(key)
    }

    /// Stop keeping the previous key (None: there is none). Refused until `RETIRE_AFTER_MS`
    /// after the current key became active (OTPs under the previous one may still be
    /// pending), and while an account keeps a token only the previous key reads (a bare HMAC
    /// from before keys rotated). Every other account value under it (token digests, webhook
    /// secrets, test codes) is sealed again under the current key first.
    pub async fn retire_previous(&self, store: &dyn AdminStore, now: Millis) -> Result<Option<Retired>, KeyringError> {
        let (current, previous) = self.versions().await?;
        let Some(previous) = previous else { return Ok(None) };
        self.may_retire(&current, now)?;
        let keys = Keys::from_ring(vec![current.key.clone(), previous.key.clone()])
            .map_err(|_| KeyringError::Unreadable("the current and previous keys have one id"))?;
        let resealed = account_admin::reseal(store, &keys, previous.key.kid)
            .await
            .map_err(|e| KeyringError::Unavailable(format!("accounts not sealed again: {e}")))?;
        if !resealed.blocked.is_empty() {
            return Err(KeyringError::Refused(format!(
                "key {} is still needed by the tokens of {} (stored before keys rotated: only a new token moves \
                 them: twofa-admin account rotate-token SID); {} other values were sealed again",
                previous.key.kid,
                resealed.blocked.join(" "),
                resealed.values
            )));
        }
        self.client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(PREVIOUS)
            .remove_from_version_id(&previous.id)
            .send()
            .await
            .map_err(|_| KeyringError::Unavailable("cannot take AWSPREVIOUS off the previous key".into()))?;
        Ok(Some(Retired { kid: previous.key.kid, current: current.key.kid, resealed: resealed.values }))
    }

    /// `Refused` while OTPs under the key before `current` may still be pending.
    pub fn may_retire(&self, current: &Version, now: Millis) -> Result<(), KeyringError> {
        let at = current.key.active_from_ms + RETIRE_AFTER_MS;
        if now < at {
            return Err(KeyringError::Refused(format!(
                "OTPs under the previous key may be pending until {} (a day after key {} became active); retire after that",
                crate::domain::time::iso(at),
                current.key.kid
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
