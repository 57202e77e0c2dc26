//! A factor: something of a user's (an "entity", the customer's own user id) that proves them
//! without anything being sent: authenticator apps (TOTP, RFC 6238) and passkeys (WebAuthn).
//! Behaviour is in `domain::factors`, the algorithms in `domain::totp` and `domain::passkey`;
//! these are the types they act on.

use super::time::Millis;

/// Longest entity id (the customer's user id; it is a key, so no `#` and no `/`).
pub const MAX_ENTITY_LEN: usize = 64;
/// Most factors one entity may hold.
pub const MAX_FACTORS_PER_ENTITY: usize = 20;
/// Wrong first codes after which an unconfirmed factor can no longer be confirmed (it must be
/// created again): a secret seen by nobody else can be guessed no faster than a challenge.
pub const MAX_CONFIRM_FAILURES: u32 = 5;
/// Longest friendly name.
pub const MAX_FRIENDLY_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    Totp,
    Passkey,
}

impl FactorKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "totp" => Some(FactorKind::Totp),
            "passkey" => Some(FactorKind::Passkey),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Passkey => "passkey",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStatus {
    /// Created; waits for a first right code (`confirm`). It cannot be challenged yet.
    Unverified,
    /// Confirmed: challenges verify against it.
    Verified,
}

impl FactorStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unverified" => Some(FactorStatus::Unverified),
            "verified" => Some(FactorStatus::Verified),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Unverified => "unverified",
            FactorStatus::Verified => "verified",
        }
    }
}

/// The HMAC an authenticator computes codes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
}

impl TotpAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(TotpAlgorithm::Sha1),
            "SHA256" => Some(TotpAlgorithm::Sha256),
            _ => None,
        }
    }

    /// As `otpauth://` URIs and the API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "SHA1",
            TotpAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The seed's length: the hash's output size, as RFC 4226 recommends.
    pub fn seed_len(self) -> usize {
        match self {
            TotpAlgorithm::Sha1 => 20,
            TotpAlgorithm::Sha256 => 32,
        }
    }
}

/// How a TOTP factor's codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: TotpAlgorithm,
    /// 6 or 8.
    pub digits: u8,
    /// Seconds per time step (30).
    pub period_secs: u32,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams { algorithm: TotpAlgorithm::Sha1, digits: 6, period_secs: 30 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub sid: String,
    pub account_sid: String,
    pub entity: String,
    pub kind: FactorKind,
    pub friendly_name: Option<String>,
    pub status: FactorStatus,
    pub totp: TotpParams,
    /// A TOTP factor's seed, sealed under the keyring (`Purpose::Factor`, context
    /// `factor_aad`); it is shown once, at creation, and never again. Empty for a passkey.
    pub sealed_secret: Vec<u8>,
    /// The last time step whose code was accepted: a code counts at most once, and never one
    /// of an earlier step (RFC 6238 §5.2). None: no code accepted yet.
    pub last_step: Option<i64>,
    /// Wrong first codes so far (`MAX_CONFIRM_FAILURES`).
    pub confirm_failures: u32,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// A passkey factor's WebAuthn state; None for TOTP.
    pub passkey: Option<Passkey>,
}

/// A passkey factor's WebAuthn state. Nothing in it is secret (a public key, a counter, a
/// ceremony's challenge); what matters is that it changes only by conditional writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// The WebAuthn user handle its credential is registered under: random (16 bytes), not the
    /// entity, which may be personal data.
    pub user_handle: Vec<u8>,
    /// The registration ceremony `confirm` completes (the WebAuthn library's server state,
    /// encoded); None once the factor is verified.
    pub ceremony: Option<Vec<u8>>,
    /// The registered credential; None until `confirm`.
    pub credential: Option<PasskeyCredential>,
}

/// A registered WebAuthn credential, each part as the WebAuthn library encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyCredential {
    pub id: Vec<u8>,
    /// The transports the browser said it can be reached by (a hint for the next ceremony).
    pub transports: u8,
    /// The public key and its algorithm, as registered: never changes.
    pub static_state: Vec<u8>,
    /// The signature counter, user verification and backup flags: changes with each use,
    /// written only over the value read (`FactorStore::use_passkey`).
    pub dynamic_state: Vec<u8>,
}

impl Factor {
    /// The factor as the API and the admin command show it: never its secret, nor a passkey's
    /// keys.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "sid": self.sid,
            "entity": self.entity,
            "type": self.kind.as_str(),
            "friendlyName": self.friendly_name,
            "status": self.status.as_str(),
            "accountSid": self.account_sid,
            "uri": format!("/2fa/entities/{}/factors/{}", self.entity, self.sid),
            "dateCreated": super::time::iso(self.created_ms),
            "dateUpdated": super::time::iso(self.updated_ms),
        });
        if self.kind == FactorKind::Totp {
            v["algorithm"] = self.totp.algorithm.as_str().into();
            v["digits"] = self.totp.digits.into();
            v["period"] = self.totp.period_secs.into();
        }
        v
    }
}

/// What a factor's secret is sealed to: its account and sid, so a sealed seed moved to another
/// factor does not open.
pub fn factor_aad(account_sid: &str, factor_sid: &str) -> String {
    format!("{account_sid}/{factor_sid}")
}

/// Whether `entity` can name an entity: 1–64 letters, digits and `_ . - @ + = :`.
pub fn is_valid_entity(entity: &str) -> bool {
    !entity.is_empty()
        && entity.len() <= MAX_ENTITY_LEN
        && entity.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-@+=:".contains(&b))
}
