//! Secrets: OTP codes, their keyed hashes, sealed copies, and token hashes.
//!
//! One master secret (from outside the table: an env var locally, Secrets Manager in AWS) is
//! expanded into independent keys by HMAC with a label, so a leak of one use does not expose
//! another. Nothing here implements `Display`, and `Debug` is redacted, so a key cannot end up
//! in a log line by accident.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use hmac::{Hmac, Mac};
use rand::{rngs::OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

pub const MIN_CODE_LEN: u8 = 4;
pub const MAX_CODE_LEN: u8 = 10;

/// An OTP code in clear. Only `reveal` shows it; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    pub fn new(digits: impl Into<String>) -> Self {
        Code(digits.into())
    }
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(***)")
    }
}

/// `len` decimal digits, each uniform over 0..=9, from the OS CSPRNG. Rejection sampling
/// (bytes >= 250 are drawn again) avoids the modulo bias of `byte % 10`.
pub fn generate_code(len: u8) -> Code {
    let mut digits = String::with_capacity(len as usize);
    let mut buf = [0u8; 16];
    while digits.len() < len as usize {
        OsRng.fill_bytes(&mut buf);
        for b in buf {
            if b < 250 && digits.len() < len as usize {
                digits.push(char::from(b'0' + b % 10));
            }
        }
    }
    Code(digits)
}

/// Marks an OTP sid that carries a country (`Keys::otp_sid`).
const SID_COUNTRY_TAG: u8 = 0xC7;
/// Marks (three times over) the sid of a factor's challenge (`Keys::factor_challenge_sid`).
const SID_FACTOR_TAG: u8 = 0xF7;
use super::phone::NON_GEOGRAPHIC;

/// The first byte of a value sealed with a key id (`Keys::seal`). A value without it (sealed
/// before keys rotated) opens only under key 0, the secret as it was.
const SEALED_V2: u8 = 0xA2;
/// `SEALED_V2`, key id, period (u32, big-endian), then the nonce and the ciphertext.
const SEALED_HEADER: usize = 6;
const NONCE: usize = 12;
const TAG: usize = 16;
/// A code hash with a key id: that id, then the HMAC (a bare 32-byte HMAC is key 0's).
const HASH_LEN: usize = 32;

/// How long one sealing key is used: an hour. At 100,000 seals a second (a deployment's ten
/// busiest accounts at their ceiling, two seals per pair) an hour is 3.6e8 seals, under the
/// 2^32 random 96-bit nonces NIST SP 800-38D allows per AES-GCM key by a factor of 12.
pub const SEAL_PERIOD_MS: Millis = 3_600_000;

/// How long a key made current waits before it is written with: every running function
/// reloads the keyring within `KEY_REFRESH_MS`, so by then all of them can read what it seals.
pub const KEY_ACTIVATION_DELAY_MS: Millis = 15 * 60_000;
/// How often a running function reads the keyring again.
pub const KEY_REFRESH_MS: Millis = 5 * 60_000;
/// How long a running function still reads a key its reload no longer has: twice its account
/// cache's 30 s, so an account read before the operator sealed its values again still works.
pub const KEY_RETIRE_GRACE_MS: Millis = 60_000;

/// What a sealed value is for: each purpose seals under its own key (per period), so a value
/// cannot be opened as another kind of value even with a matching context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An OTP's code and its checks' codes (context: the OTP sid).
    Code,
    /// An account's webhook secret.
    WebhookSecret,
    /// A test number's fixed code.
    TestCode,
    /// A search page token.
    PageToken,
    /// An auth token's digest (`Keys::hash_token`).
    Token,
    /// The `whsec_` secret of a provider of an account's own (`domain::providers`).
    ProviderSecret,
    /// The console's session cookie and the flash it leaves (`domain::console`).
    Console,
    /// A factor's secret, such as a TOTP seed (context: the account and factor sid).
    Factor,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Code => "code",
            Purpose::WebhookSecret => "webhook-secret",
            Purpose::TestCode => "test-code",
            Purpose::PageToken => "page-token",
            Purpose::Token => "token",
            Purpose::ProviderSecret => "provider-secret",
            Purpose::Console => "console",
            Purpose::Factor => "factor",
        }
    }
}

use super::time::Millis;

/// One version of the master secret, as the keyring holds it: its key id (0 for the secret as
/// it was before keys rotated, 1–255 after), when it starts being written with, and its bytes.
#[derive(Clone)]
pub struct MasterKey {
    pub kid: u8,
    pub active_from_ms: Millis,
    secret: Vec<u8>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(kid {}, active from {}, ***)", self.kid, self.active_from_ms)
    }
}

impl MasterKey {
    /// `secret` must carry at least 32 bytes of entropy.
    pub fn new(kid: u8, active_from_ms: Millis, secret: Vec<u8>) -> Result<Self> {
        if secret.len() < 32 {
            return Err(Error::Internal);
        }
        Ok(MasterKey { kid, active_from_ms, secret })
    }

    /// A fresh random secret.
    pub fn random(kid: u8, active_from_ms: Millis) -> Self {
        let mut secret = vec![0u8; 32];
        OsRng.fill_bytes(&mut secret);
        MasterKey { kid, active_from_ms, secret }
    }
}

/// What one version of the secret holds: the current key and, since a rotation keeps it
/// inside the new version, the previous one, so that a function reads the whole keyring with
/// one request. Its text is a bare string (key 0: the secret the template generated, never
/// rotated) or `{"kid": N, "key": "<hex>", "activeFromMs": T, "previous": P}`, where `P` is
/// `{"kid", "key", "activeFromMs"}` (key 0's bytes in hex too) or `null` (none: retired).
#[derive(Debug, Clone)]
pub struct StoredKeys {
    pub current: MasterKey,
    pub previous: StoredPrevious,
}

/// Where the previous key is (`StoredKeys`).
#[derive(Debug, Clone)]
pub enum StoredPrevious {
    /// None: a bare string (never rotated), or `"previous": null` (retired).
    None,
    /// Inside the version.
    Kept(MasterKey),
    /// Not said: a rotated key written before the previous key moved inside (no `previous`
    /// field). The secret's `AWSPREVIOUS` version holds the previous key, if it has one.
    Staged,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    kid: u8,
    key: String,
    active_from_ms: Millis,
}

impl StoredKey {
    fn master(self) -> Result<MasterKey> {
        MasterKey::new(self.kid, self.active_from_ms, hex::decode(self.key).map_err(|_| Error::Internal)?)
    }
}

fn key_json(key: &MasterKey) -> serde_json::Value {
    serde_json::json!({"kid": key.kid, "key": hex::encode(&key.secret), "activeFromMs": key.active_from_ms})
}

impl StoredKeys {
    /// A version's text, in any of the forms above.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if !text.starts_with('{') {
            let current = MasterKey::new(0, 0, text.as_bytes().to_vec())?;
            return Ok(StoredKeys { current, previous: StoredPrevious::None });
        }
        let mut json: serde_json::Value = serde_json::from_str(text).map_err(|_| Error::Internal)?;
        // Taken out whole: an absent field (`Staged`) and `null` (`None`) differ.
        let previous = json.as_object_mut().ok_or(Error::Internal)?.remove("previous");
        let current = serde_json::from_value::<StoredKey>(json).map_err(|_| Error::Internal)?;
        // Key 0 is only ever the bare string.
        if current.kid == 0 {
            return Err(Error::Internal);
        }
        let current = current.master()?;
        let previous = match previous {
            None => StoredPrevious::Staged,
            Some(serde_json::Value::Null) => StoredPrevious::None,
            Some(p) => {
                let p = serde_json::from_value::<StoredKey>(p).map_err(|_| Error::Internal)?.master()?;
                if p.kid == current.kid {
                    return Err(Error::Internal);
                }
                StoredPrevious::Kept(p)
            }
        };
        Ok(StoredKeys { current, previous })
    }

    /// The keys a keyring is made of: the current one and the previous one kept inside (a
    /// `Staged` previous key is the caller's to read).
    pub fn masters(&self) -> Vec<MasterKey> {
        let previous = match &self.previous {
            StoredPrevious::Kept(p) => Some(p.clone()),
            StoredPrevious::None | StoredPrevious::Staged => None,
        };
        std::iter::once(self.current.clone()).chain(previous).collect()
    }

    /// The text `parse` reads back (key 0 alone keeps its bare form; `Staged` writes the form
    /// from before the previous key moved inside, which only tests write).
    pub fn to_text(&self) -> String {
        let mut json = key_json(&self.current);
        match &self.previous {
            StoredPrevious::None if self.current.kid == 0 => {
                return String::from_utf8_lossy(&self.current.secret).into_owned()
            }
            StoredPrevious::None => json["previous"] = serde_json::Value::Null,
            StoredPrevious::Kept(p) => json["previous"] = key_json(p),
            StoredPrevious::Staged => {}
        }
        json.to_string()
    }
}

/// The keys one master secret expands into. Each HMAC is keyed once: a use clones its keyed
/// state rather than hash the key pads again.
struct KeyVersion {
    kid: u8,
    active_from_ms: Millis,
    code_mac: HmacSha256,
    /// Key 0's token hashes (a bare HMAC, before tokens were sealed digests).
    token_mac: HmacSha256,
    /// Masks the country an OTP sid carries (`otp_sid`).
    sid_mac: HmacSha256,
    /// Derives a sealing key per purpose and period.
    seal_root: HmacSha256,
    /// The one sealing key of values sealed before keys rotated (key 0 only).
    legacy_seal: Aes256Gcm,
    /// Sealing keys derived already, with their purpose and period: a derivation is an HMAC
    /// and an AES-256-GCM key schedule, which a seal paid each time; now once an hour per
    /// purpose and process. At most `SEAL_PERIODS_KEPT` periods a purpose (the newest: seals
    /// use the current one; opens mostly recent ones), and only keys that sealed or opened a
    /// value, so values with made-up headers cannot push them out.
    sealing: std::sync::RwLock<Vec<(Purpose, u32, Aes256Gcm)>>,
}

/// Sealing keys kept per purpose (`KeyVersion::sealing`).
const SEAL_PERIODS_KEPT: usize = 8;

impl KeyVersion {
    fn of(master: &MasterKey) -> Result<Self> {
        let m = &master.secret;
        Ok(KeyVersion {
            kid: master.kid,
            active_from_ms: master.active_from_ms,
            code_mac: keyed(&derive(m, "twofa/v1/code")),
            token_mac: keyed(&derive(m, "twofa/v1/token")),
            sid_mac: keyed(&derive(m, "twofa/v1/otp-sid-country")),
            seal_root: keyed(&derive(m, "twofa/v2/seal")),
            legacy_seal: Aes256Gcm::new_from_slice(&derive(m, "twofa/v1/seal")).map_err(|_| Error::Internal)?,
            sealing: std::sync::RwLock::default(),
        })
    }

    /// `f` with the sealing key for `purpose` and `period`, derived once and kept when `f`
    /// gives something back (it sealed, or the tag checked).
    fn with_sealing_key<T>(&self, purpose: Purpose, period: u32, f: impl FnOnce(&Aes256Gcm) -> Option<T>) -> Option<T> {
        let same = |&(p, n, _): &(Purpose, u32, Aes256Gcm)| p == purpose && n == period;
        {
            let kept = self.sealing.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, _, key)) = kept.iter().find(|e| same(e)) {
                return f(key);
            }
        }
        let key = self.sealing_key(purpose, period);
        let out = f(&key)?;
        let mut kept = self.sealing.write().unwrap_or_else(|e| e.into_inner());
        if !kept.iter().any(same) {
            let of_purpose = || kept.iter().enumerate().filter(|(_, (p, _, _))| *p == purpose);
            if of_purpose().count() >= SEAL_PERIODS_KEPT {
                let oldest = of_purpose().min_by_key(|(_, (_, n, _))| *n).map(|(i, _)| i).expect("kept keys");
                if kept[oldest].1 > period {
                    return Some(out);
                }
                kept.swap_remove(oldest);
            }
            kept.push((purpose, period, key));
        }
        Some(out)
    }

    fn sealing_key(&self, purpose: Purpose, period: u32) -> Aes256Gcm {
        let mut mac = self.seal_root.clone();
        mac.update(purpose.label().as_bytes());
        mac.update(b"\0");
        mac.update(&period.to_be_bytes());
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Aes256Gcm::new_from_slice(&key).expect("32 bytes")
    }

    fn code_mac(&self, otp_sid: &str, code: &str) -> [u8; 32] {
        let mut mac = self.code_mac.clone();
        mac.update(otp_sid.as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The HMAC that masks a sid's country: of every byte but the three it masks.
    fn sid_mask(&self, sid: &[u8; 16]) -> [u8; 32] {
        let mut mac = self.sid_mac.clone();
        mac.update(&sid[..6]);
        mac.update(&sid[9..]);
        mac.finalize().into_bytes().into()
    }
}

/// The keyring's versions, newest first.
struct Ring {
    versions: Vec<KeyVersion>,
    masters: Vec<MasterKey>,
    /// Keys a reload dropped, read (never written with) until the time beside each.
    leaving: Vec<(u8, Millis)>,
}

impl Ring {
    fn of(mut masters: Vec<MasterKey>) -> Result<Self> {
        masters.sort_by_key(|m| std::cmp::Reverse(m.active_from_ms));
        let mut kids: Vec<u8> = masters.iter().map(|m| m.kid).collect();
        kids.sort_unstable();
        kids.dedup();
        if masters.is_empty() || kids.len() != masters.len() {
            return Err(Error::Internal);
        }
        let versions = masters.iter().map(KeyVersion::of).collect::<Result<_>>()?;
        Ok(Ring { versions, masters, leaving: vec![] })
    }

    fn leaving_until(&self, kid: u8) -> Option<Millis> {
        self.leaving.iter().find(|(k, _)| *k == kid).map(|(_, until)| *until)
    }

    /// The keys values are read under now, newest first.
    fn live(&self) -> impl Iterator<Item = &KeyVersion> {
        let now = wall_now();
        self.versions.iter().filter(move |v| self.leaving_until(v.kid).is_none_or(|until| now < until))
    }

    /// The key written with at `now`: the newest one already active (the oldest if none is);
    /// never one that is leaving.
    fn writer(&self, now: Millis) -> &KeyVersion {
        let kept = || self.versions.iter().filter(|v| self.leaving_until(v.kid).is_none());
        kept().find(|v| v.active_from_ms <= now).or_else(|| kept().next_back()).expect("a kept key")
    }

    fn version(&self, kid: u8) -> Option<&KeyVersion> {
        self.live().find(|v| v.kid == kid)
    }
}

fn wall_now() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// The keyring: every key a stored value may name (the current one and, after a rotation,
/// the previous one). New values are written under the current key once it is active; a value
/// names its key (its id in the value), so it is read under that key whichever is current.
/// The ring can be replaced while it is used (`replace`, a running function's reload).
/// Nothing here implements `Display`, and `Debug` is redacted.
pub struct Keys {
    ring: std::sync::RwLock<std::sync::Arc<Ring>>,
}

impl Clone for Keys {
    fn clone(&self) -> Self {
        Keys { ring: std::sync::RwLock::new(std::sync::Arc::clone(&self.ring())) }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn keyed(key: &[u8; 32]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// What `Keys::open_any` found: the plaintext and the id of the key that opened it.
pub struct Opened {
    pub plaintext: Vec<u8>,
    pub kid: u8,
}

impl Keys {
    /// A keyring of one key: `master` as key 0 (the secret as it was before keys rotated; a
    /// dev server's `TWOFA_SECRET_KEY`). `master` must carry at least 32 bytes of entropy.
    pub fn from_master(master: &[u8]) -> Result<Self> {
        Self::from_ring(vec![MasterKey::new(0, 0, master.to_vec())?])
    }

    /// A keyring of these keys (distinct ids, at least one).
    pub fn from_ring(masters: Vec<MasterKey>) -> Result<Self> {
        Ok(Keys { ring: std::sync::RwLock::new(std::sync::Arc::new(Ring::of(masters)?)) })
    }

    /// A fresh random master, for tests and a dev server started without one.
    pub fn random() -> Self {
        Self::from_ring(vec![MasterKey::random(0, 0)]).expect("one key")
    }

    /// Take `other`'s keys (a reloaded keyring), for every holder of this one. A key `other`
    /// no longer has (retired) is still read for `grace_ms`, never written with: a running
    /// function's caches (an account read before its values were sealed again, for 30 s) may
    /// still hold values under it.
    pub fn replace(&self, other: Keys, grace_ms: Millis) {
        let fresh = std::sync::Arc::clone(&other.ring());
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let now = wall_now();
        let mut masters = fresh.masters.clone();
        let mut leaving = vec![];
        for m in &ring.masters {
            let until = ring.leaving_until(m.kid).unwrap_or(now + grace_ms);
            if until > now && !masters.iter().any(|n| n.kid == m.kid) {
                masters.push(m.clone());
                leaving.push((m.kid, until));
            }
        }
        if leaving.is_empty() {
            *ring = fresh;
            return;
        }
        if let Ok(mut merged) = Ring::of(masters) {
            merged.leaving = leaving;
            *ring = std::sync::Arc::new(merged);
        } else {
            *ring = fresh;
        }
    }

    /// The ring, read-locked while it is used (no reference count taken per use: a reload,
    /// every few minutes, is the only writer). Never held across another `ring()`.
    fn ring(&self) -> std::sync::RwLockReadGuard<'_, std::sync::Arc<Ring>> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The keyring's keys, newest first (for the operator: ids and activation times), but
    /// those leaving.
    pub fn masters(&self) -> Vec<MasterKey> {
        let ring = self.ring();
        ring.masters.iter().filter(|m| ring.leaving_until(m.kid).is_none()).cloned().collect()
    }

    /// The id of the key written with now.
    pub fn writer_kid(&self) -> u8 {
        self.ring().writer(wall_now()).kid
    }

    /// The code's hash to store: HMAC-SHA256 of the code, bound to the OTP it belongs to (so a
    /// hash copied onto another OTP does not verify there), under the current key, after
    /// that key's id.
    pub fn hash_code(&self, otp_sid: &str, code: &str) -> Vec<u8> {
        let ring = self.ring();
        let key = ring.writer(wall_now());
        let mut out = Vec::with_capacity(1 + HASH_LEN);
        out.push(key.kid);
        out.extend_from_slice(&key.code_mac(otp_sid, code));
        out
    }

    /// Every hash the code may be stored as, one per key of the ring (and key 0's bare form):
    /// a store compares a presented code with these without reading the OTP first.
    pub fn code_hashes(&self, otp_sid: &str, code: &str) -> Vec<Vec<u8>> {
        let ring = self.ring();
        let mut out = Vec::with_capacity(ring.versions.len() + 1);
        for key in ring.live() {
            let mac = key.code_mac(otp_sid, code);
            let mut named = Vec::with_capacity(1 + HASH_LEN);
            named.push(key.kid);
            named.extend_from_slice(&mac);
            out.push(named);
            if key.kid == 0 {
                out.push(mac.to_vec());
            }
        }
        out
    }

    /// Constant-time check of a code against its stored hash, under the key the hash names.
    pub fn code_matches(&self, otp_sid: &str, code: &str, stored_hash: &[u8]) -> bool {
        let ring = self.ring();
        let (kid, mac) = match stored_hash.len() {
            HASH_LEN => (0, stored_hash),
            n if n == HASH_LEN + 1 => (stored_hash[0], &stored_hash[1..]),
            _ => return false,
        };
        ring.version(kid).is_some_and(|key| ct_eq(&key.code_mac(otp_sid, code), mac))
    }

    /// The stored form of an auth token: its SHA-256 digest (with the account sid) sealed
    /// under the current key. A digest rather than a keyed hash so that the operator can seal
    /// it again under a new key without knowing the token (`twofa-admin keys retire-previous`).
    pub fn hash_token(&self, account_sid: &str, token: &str) -> Vec<u8> {
        self.seal(Purpose::Token, &token_digest(account_sid, token), account_sid)
    }

    /// Constant-time check of a token against its stored form (a sealed digest, or key 0's
    /// bare HMAC from before keys rotated).
    pub fn token_matches(&self, account_sid: &str, token: &str, stored: &[u8]) -> bool {
        let digest = token_digest(account_sid, token);
        if stored.len() == HASH_LEN {
            let ring = self.ring();
            let Some(key) = ring.version(0) else { return false };
            let mut mac = key.token_mac.clone();
            mac.update(account_sid.as_bytes());
            mac.update(b"\0");
            mac.update(token.as_bytes());
            let legacy: [u8; 32] = mac.finalize().into_bytes().into();
            return ct_eq(&legacy, stored);
        }
        self.open(Purpose::Token, stored, account_sid).is_ok_and(|d| ct_eq(&d, &digest))
    }

    /// The id of the key a stored token, code hash or sealed value is under, when it names
    /// one this ring has (a bare value: key 0).
    pub fn kid_of_hash(stored: &[u8]) -> Option<u8> {
        match stored.len() {
            HASH_LEN => Some(0),
            n if n == HASH_LEN + 1 => Some(stored[0]),
            _ => None,
        }
    }

    /// A stored token's digest sealed again under the current key, or None when it is a
    /// bare HMAC (only the token itself could be hashed again) or does not open.
    pub fn reseal_token(&self, account_sid: &str, stored: &[u8]) -> Option<Vec<u8>> {
        let opened = self.open_any(Purpose::Token, stored, account_sid).ok()?;
        Some(self.seal(Purpose::Token, &opened.plaintext, account_sid))
    }

    /// A fresh OTP sid (`OTP` + 32 hex, as always) created at `created_ms` (its first 6 bytes,
    /// `ids::otp_sid_bytes`) that carries `country` (two letters, or `001`) so that verify, which has only
    /// the sid, knows which country's pumping-guard counter to count in without reading the OTP
    /// first. Bytes 6..9 become a tag and the two letters, masked with an HMAC of the other 13
    /// under the current key: they still look uniformly random (56 random bits remain) and
    /// only the server can read the country back.
    pub fn otp_sid(&self, country: Option<&str>, created_ms: Millis, shards: usize) -> String {
        let mut bytes = super::ids::otp_sid_bytes(created_ms, shards);
        // libphonenumber's non-geographic region (`001`: +800, +870, +881…) goes as `01`.
        let country = country.map(|cc| if cc == NON_GEOGRAPHIC { "01" } else { cc });
        if let Some(cc) = country
            .map(str::as_bytes)
            .filter(|cc| cc.len() == 2 && cc.iter().all(u8::is_ascii_uppercase) || *cc == b"01")
        {
            let ring = self.ring();
            let mask = ring.writer(wall_now()).sid_mask(&bytes);
            bytes[6] = SID_COUNTRY_TAG ^ mask[0];
            bytes[7] = cc[0] ^ mask[1];
            bytes[8] = cc[1] ^ mask[2];
        }
        super::ids::otp_sid_of(bytes)
    }

    /// A fresh OTP sid for a factor's challenge (`domain::factors`): `otp_sid`'s shape, its
    /// masked bytes a tag of their own, so verify knows from the sid alone that the code is to
    /// be checked against a factor and not against a stored hash.
    pub fn factor_challenge_sid(&self, created_ms: Millis, shards: usize) -> String {
        let mut bytes = super::ids::otp_sid_bytes(created_ms, shards);
        let ring = self.ring();
        let mask = ring.writer(wall_now()).sid_mask(&bytes);
        bytes[6] = SID_FACTOR_TAG ^ mask[0];
        bytes[7] = SID_FACTOR_TAG ^ mask[1];
        bytes[8] = SID_FACTOR_TAG ^ mask[2];
        super::ids::otp_sid_of(bytes)
    }

    /// Whether `factor_challenge_sid` made `sid`, under any key of the ring (a sid of a send
    /// reads as one by chance 1 in 2^24 per key, and then verifies nothing: it names no factor).
    pub fn is_factor_challenge(&self, sid: &str) -> bool {
        let Some(hex_part) = sid.strip_prefix(super::ids::OTP) else { return false };
        let mut bytes = [0u8; 16];
        if hex::decode_to_slice(hex_part, &mut bytes).is_err() {
            return false;
        }
        let ring = self.ring();
        let tagged = ring.live().any(|key| {
            let mask = key.sid_mask(&bytes);
            [bytes[6] ^ mask[0], bytes[7] ^ mask[1], bytes[8] ^ mask[2]] == [SID_FACTOR_TAG; 3]
        });
        tagged
    }

    /// The country `otp_sid` put in `sid`, if it carries one, under any key of the ring. A sid
    /// minted without one reads as None except by chance (1 in ~25,000 per key); verify then
    /// learns the OTP's real country from the refused write and counts there.
    pub fn otp_sid_country(&self, sid: &str) -> Option<String> {
        let hex_part = sid.strip_prefix(super::ids::OTP)?;
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        let ring = self.ring();
        let country = ring.live().find_map(|key| {
            let mask = key.sid_mask(&bytes);
            let cc = [bytes[7] ^ mask[1], bytes[8] ^ mask[2]];
            if bytes[6] ^ mask[0] != SID_COUNTRY_TAG {
                return None;
            }
            if cc == *b"01" {
                return Some(NON_GEOGRAPHIC.to_owned());
            }
            cc.iter().all(u8::is_ascii_uppercase).then(|| String::from_utf8_lossy(&cc).into_owned())
        });
        country
    }

    /// AES-256-GCM under the current key's sealing key for `purpose` and this hour, with a
    /// random nonce; `aad` binds the ciphertext to its context (the OTP sid, the account), so
    /// a sealed value moved elsewhere does not open. Output: `SEALED_V2`, key id, period,
    /// nonce, ciphertext. The nonce is public and must only never repeat: 96 bits from
    /// `ThreadRng` (a CSPRNG seeded and reseeded from the OS) rather than a system call per
    /// send; a key per hour keeps each key far below the random-nonce limit.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let now = wall_now();
        let ring = self.ring();
        let key = ring.writer(now);
        let period = (now / SEAL_PERIOD_MS) as u32;
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = key
            .with_sealing_key(purpose, period, |k| {
                k.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).ok()
            })
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(SEALED_HEADER + NONCE + ct.len());
        out.push(SEALED_V2);
        out.push(key.kid);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// True when `sealed` names a key this ring no longer has (a value from before a
    /// retirement), rather than being damaged or from elsewhere.
    pub fn under_retired_key(&self, sealed: &[u8]) -> bool {
        let ring = self.ring();
        match sealed {
            [SEALED_V2, kid, ..] if sealed.len() >= SEALED_HEADER + NONCE + TAG => ring.version(*kid).is_none(),
            _ => ring.version(0).is_none(),
        }
    }

    /// The plaintext of a value `seal` made for `purpose` in the context `aad`, under any key
    /// of the ring (a value sealed before keys rotated: under key 0).
    pub fn open(&self, purpose: Purpose, sealed: &[u8], aad: &str) -> Result<Vec<u8>> {
        self.open_any(purpose, sealed, aad).map(|o| o.plaintext)
    }

    /// `open`, telling which key opened the value (an operator re-seals what the previous
    /// key opens).
    pub fn open_any(&self, purpose: Purpose, sealed: &[u8], aad: &str) -> Result<Opened> {
        let ring = self.ring();
        let payload = |msg| Payload { msg, aad: aad.as_bytes() };
        if sealed.len() >= SEALED_HEADER + NONCE + TAG && sealed[0] == SEALED_V2 {
            if let Some(key) = ring.version(sealed[1]) {
                let period = u32::from_be_bytes(sealed[2..6].try_into().expect("4 bytes"));
                let (nonce, ct) = sealed[SEALED_HEADER..].split_at(NONCE);
                if let Some(plaintext) =
                    key.with_sealing_key(purpose, period, |k| k.decrypt(Nonce::from_slice(nonce), payload(ct)).ok())
                {
                    return Ok(Opened { plaintext, kid: key.kid });
                }
            }
        }
        // Sealed before keys rotated: the nonce first, under key 0's one sealing key. (Such a
        // value may begin with `SEALED_V2` by chance; the tag tells them apart.)
        let key = ring.version(0).ok_or(Error::Internal)?;
        if sealed.len() < NONCE + TAG {
            return Err(Error::Internal);
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        let plaintext = key.legacy_seal.decrypt(Nonce::from_slice(nonce), payload(ct)).map_err(|_| Error::Internal)?;
        Ok(Opened { plaintext, kid: 0 })
    }
}

/// What a token's stored form seals: SHA-256 of the account sid and the token.
fn token_digest(account_sid: &str, token: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"twofa/token\0");
    h.update(account_sid.as_bytes());
    h.update(b"\0");
    h.update(token.as_bytes());
    h.finalize().into()
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn codes_have_the_requested_length_and_only_digits() {
        for len in MIN_CODE_LEN..=MAX_CODE_LEN {
            let code = generate_code(len);
            assert_eq!(code.reveal().len(), len as usize);
            assert!(code.reveal().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn code_digits_are_uniform() {
        // Given 200k digits, each of the ten should be within 5% of 20k (chi-square would be
        // stricter; this catches modulo bias and stuck generators, which are the real risks).
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            for b in generate_code(10).reveal().bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        for (digit, n) in counts.iter().enumerate() {
            assert!((19_000..=21_000).contains(n), "digit {digit} seen {n} times");
        }
    }

    /// Pearson's chi-square of digit counts against uniform (9 degrees of freedom).
    fn chi_square(counts: &[u64; 10]) -> f64 {
        let expected = counts.iter().sum::<u64>() as f64 / 10.0;
        counts.iter().map(|&n| (n as f64 - expected).powi(2) / expected).sum()
    }

    /// P(chi-square with 9 degrees of freedom > 45.0) ~ 9e-7: over the 49 positions of lengths
    /// 4 to 10, a uniform generator fails about once in 20 000 runs.
    const CHI_SQUARE_LIMIT: f64 = 45.0;

    /// Counts per digit, per position, of `n` codes of `len` digits from `gen`.
    fn position_counts(n: usize, len: u8, mut gen: impl FnMut(u8) -> String) -> Vec<[u64; 10]> {
        let mut counts = vec![[0u64; 10]; len as usize];
        for _ in 0..n {
            for (pos, b) in gen(len).bytes().enumerate() {
                counts[pos][(b - b'0') as usize] += 1;
            }
        }
        counts
    }

    #[test]
    fn every_digit_position_is_uniform_by_chi_square_over_a_million_codes_of_each_length() {
        for len in 4..=10u8 {
            for (pos, counts) in
                position_counts(1_000_000, len, |l| generate_code(l).reveal().to_owned()).iter().enumerate()
            {
                let x2 = chi_square(counts);
                assert!(x2 < CHI_SQUARE_LIMIT, "length {len}, position {pos}: chi-square {x2:.1} for {counts:?}");
            }
        }
    }

    #[test]
    fn the_chi_square_check_catches_modulo_bias_and_a_stuck_position() {
        // `byte % 10` without rejection: digits 0-5 come 26 times in 256, 6-9 25 times.
        let mut rng = rand::thread_rng();
        let biased =
            position_counts(1_000_000, 4, |l| (0..l).map(|_| char::from(b'0' + rng.gen::<u8>() % 10)).collect());
        assert!(biased.iter().all(|c| chi_square(c) > CHI_SQUARE_LIMIT), "modulo bias must fail");
        // One position that favours one digit by 1 % is caught as well.
        let mut i = 0u64;
        let stuck = position_counts(1_000_000, 4, |l| {
            i += 1;
            let mut code = generate_code(l).reveal().to_owned();
            if i.is_multiple_of(100) {
                code.replace_range(2..3, "7");
            }
            code
        });
        assert!(chi_square(&stuck[2]) > CHI_SQUARE_LIMIT, "a 1 % lean to one digit must fail");
    }

    #[test]
    fn code_debug_is_redacted() {
        assert_eq!(format!("{:?}", Code::new("123456")), "Code(***)");
        assert_eq!(format!("{:?}", Keys::random()), "Keys(***)");
    }

    #[test]
    fn values_stored_before_keys_rotated_keep_verifying_under_key_0() {
        // Given the master secret as it was (key 0)
        let keys = Keys::from_master(&[7u8; 32]).unwrap();
        // Then a token hash and a code hash stored by earlier versions (bare HMAC-SHA256 under
        // the labelled keys; values from Python's hmac) still match
        let token = hex::decode("083a67666b804b054abb1089b1b8a26a6333f7d24fcd81da8506d237fe80a2d9").unwrap();
        assert!(keys.token_matches("AC1", "tok", &token));
        assert!(!keys.token_matches("AC1", "tok2", &token));
        let code = hex::decode("46345512be3303488732bf31bb4334d19a8e3f17523a5c5748c8f1d42cbdf250").unwrap();
        assert!(keys.code_matches("OTP1", "123456", &code));
        assert!(keys.code_hashes("OTP1", "123456").contains(&code), "a store compares the bare form too");
        // And new code hashes name their key: its id, then the same HMAC
        assert_eq!(keys.hash_code("OTP1", "123456"), [&[0u8][..], &code].concat());
        // And a value sealed before (nonce || ciphertext under the one v1 sealing key) opens
        let legacy = Aes256Gcm::new_from_slice(&derive(&[7u8; 32], "twofa/v1/seal")).unwrap();
        let nonce = [9u8; 12];
        let ct = legacy.encrypt(Nonce::from_slice(&nonce), Payload { msg: b"4242", aad: b"OTPa" }).unwrap();
        let sealed = [&nonce[..], &ct].concat();
        assert_eq!(keys.open(Purpose::Code, &sealed, "OTPa").unwrap(), b"4242");
    }

    #[test]
    fn code_hash_matches_only_the_same_code_on_the_same_otp() {
        let keys = Keys::random();
        let h = keys.hash_code("OTPa", "123456");
        assert!(keys.code_matches("OTPa", "123456", &h));
        assert!(!keys.code_matches("OTPa", "123457", &h));
        assert!(!keys.code_matches("OTPb", "123456", &h));
        assert!(!Keys::random().code_matches("OTPa", "123456", &h), "another key must not verify");
    }

    #[test]
    fn sealed_values_open_only_in_their_context_and_purpose() {
        let keys = Keys::random();
        let sealed = keys.seal(Purpose::Code, b"123456", "OTPa");
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(keys.open(Purpose::Code, &sealed, "OTPa").unwrap(), b"123456");
        assert!(keys.open(Purpose::Code, &sealed, "OTPb").is_err());
        assert!(keys.open(Purpose::TestCode, &sealed, "OTPa").is_err(), "another purpose's key");
    }

    #[test]
    fn tokens_are_stored_as_sealed_digests_that_match_only_their_token_and_account() {
        let keys = Keys::random();
        let stored = keys.hash_token("AC1", "secret-token");
        assert!(!stored.windows(6).any(|w| w == b"secret"));
        assert!(keys.token_matches("AC1", "secret-token", &stored));
        assert!(!keys.token_matches("AC1", "secret-tokem", &stored));
        assert!(!keys.token_matches("AC2", "secret-token", &stored));
        assert!(!Keys::random().token_matches("AC1", "secret-token", &stored));
    }

    fn ring(keys: &[(u8, Millis, u8)]) -> Keys {
        Keys::from_ring(
            keys.iter().map(|&(kid, from, fill)| MasterKey::new(kid, from, vec![fill; 32]).unwrap()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn after_a_rotation_values_under_the_previous_key_keep_working_and_new_ones_use_the_new_key() {
        // Given values written under key 0
        let before = ring(&[(0, 0, 1)]);
        let sealed = before.seal(Purpose::WebhookSecret, b"whsec", "AC1");
        let token = before.hash_token("AC1", "tok");
        let code = before.hash_code("OTP1", "1234");
        let sid = before.otp_sid(Some("GB"), 5, 256);
        // When key 1 becomes current (active now) beside it
        let after = ring(&[(0, 0, 1), (1, 1, 2)]);
        // Then the old values still open, match and read under key 0
        assert_eq!(after.open(Purpose::WebhookSecret, &sealed, "AC1").unwrap(), b"whsec");
        assert!(after.token_matches("AC1", "tok", &token));
        assert!(after.code_matches("OTP1", "1234", &code));
        assert!(after.code_hashes("OTP1", "1234").contains(&code));
        assert_eq!(after.otp_sid_country(&sid).as_deref(), Some("GB"));
        // And new values name key 1, which the old ring cannot read
        assert_eq!(after.writer_kid(), 1);
        let new_sealed = after.seal(Purpose::WebhookSecret, b"whsec", "AC1");
        assert_eq!(new_sealed[1], 1);
        assert!(before.open(Purpose::WebhookSecret, &new_sealed, "AC1").is_err());
        assert_eq!(after.hash_code("OTP1", "1234")[0], 1);
        // And the operator can seal a token's digest again under key 1 without the token
        let resealed = after.reseal_token("AC1", &token).unwrap();
        assert!(after.token_matches("AC1", "tok", &resealed));
        // When key 0 is retired
        let retired = ring(&[(1, 1, 2)]);
        // Then nothing under it is accepted any more
        assert!(retired.open(Purpose::WebhookSecret, &sealed, "AC1").is_err());
        assert!(!retired.token_matches("AC1", "tok", &token));
        assert!(!retired.code_matches("OTP1", "1234", &code));
        assert!(!retired.code_hashes("OTP1", "1234").contains(&code));
        assert!(retired.token_matches("AC1", "tok", &resealed));
        assert!(retired.under_retired_key(&sealed) && !after.under_retired_key(&sealed));
        assert!(!retired.under_retired_key(&retired.seal(Purpose::Code, b"x", "OTP1")));
    }

    #[test]
    fn a_key_not_yet_active_is_read_but_not_written_with() {
        // Given key 2 made current but active only in an hour
        let later = wall_now() + 3_600_000;
        let keys = ring(&[(1, 0, 1), (2, later, 2)]);
        // Then values are still written under key 1, and key 2's values would open
        assert_eq!(keys.writer_kid(), 1);
        assert_eq!(keys.hash_code("OTP1", "1")[0], 1);
        let other = ring(&[(2, 0, 2)]);
        assert!(keys.open(Purpose::Code, &other.seal(Purpose::Code, b"x", "OTP1"), "OTP1").is_ok());
    }

    #[test]
    fn a_replaced_ring_is_seen_by_every_holder() {
        let keys = std::sync::Arc::new(ring(&[(1, 0, 1)]));
        let holder = keys.clone();
        keys.replace(ring(&[(1, 0, 1), (2, 1, 2)]), 0);
        assert_eq!(holder.writer_kid(), 2);
    }

    #[test]
    fn a_key_a_reload_drops_is_read_for_a_grace_period_and_never_written_with() {
        // Given values under key 1, and a reload after key 1 was retired (key 2 alone)
        let keys = ring(&[(1, 0, 1), (2, 1, 2)]);
        let sealed = ring(&[(1, 0, 1)]).seal(Purpose::Code, b"x", "OTP1");
        keys.replace(ring(&[(2, 1, 2)]), 60_000);
        // Then within the grace key 1 still opens what it sealed, but writes are key 2's
        assert!(keys.open(Purpose::Code, &sealed, "OTP1").is_ok());
        assert_eq!(keys.writer_kid(), 2);
        assert_eq!(keys.masters().len(), 1);
        // And another reload keeps the same deadline, not a new one
        keys.replace(ring(&[(2, 1, 2)]), 60_000);
        assert!(keys.open(Purpose::Code, &sealed, "OTP1").is_ok());
        // When the grace is over (none here), key 1 opens nothing
        let gone = ring(&[(1, 0, 1), (2, 1, 2)]);
        gone.replace(ring(&[(2, 1, 2)]), 0);
        assert!(gone.open(Purpose::Code, &sealed, "OTP1").is_err());
    }

    #[test]
    fn a_secret_version_reads_back_with_its_previous_key_inside_or_without_one() {
        // Given a rotated key with the previous one (key 0, the template's string) inside
        let k = MasterKey::new(3, 1_700_000_000_000, vec![5u8; 32]).unwrap();
        let zero = MasterKey::new(0, 0, b"a-plain-secret-of-at-least-32-bytes!".to_vec()).unwrap();
        let text = StoredKeys { current: k.clone(), previous: StoredPrevious::Kept(zero) }.to_text();
        // Then both read back, key 0's bytes unchanged
        let back = StoredKeys::parse(&text).unwrap();
        assert_eq!(
            (back.current.kid, back.current.active_from_ms, &back.current.secret),
            (3, 1_700_000_000_000, &k.secret)
        );
        let StoredPrevious::Kept(p) = &back.previous else { panic!("the previous key inside: {text}") };
        assert_eq!(
            (p.kid, p.active_from_ms, p.secret.as_slice()),
            (0, 0, &b"a-plain-secret-of-at-least-32-bytes!"[..])
        );
        // And a retired keyring says it has no previous key (`null`), unlike the form from
        // before the previous key moved inside (no field: it is in `AWSPREVIOUS`)
        let retired = StoredKeys { current: k.clone(), previous: StoredPrevious::None }.to_text();
        assert!(retired.contains(r#""previous":null"#), "{retired}");
        assert!(matches!(StoredKeys::parse(&retired).unwrap().previous, StoredPrevious::None));
        let older = format!(r#"{{"kid":3,"key":"{}","activeFromMs":1700000000000}}"#, "05".repeat(32));
        let older = StoredKeys::parse(&older).unwrap();
        assert!(matches!(older.previous, StoredPrevious::Staged));
        assert_eq!((older.current.kid, older.current.secret), (3, vec![5u8; 32]));
        // And the bare string is key 0 alone, written back bare
        let legacy = StoredKeys::parse("a-plain-secret-of-at-least-32-bytes!").unwrap();
        assert_eq!((legacy.current.kid, legacy.current.active_from_ms), (0, 0));
        assert!(matches!(legacy.previous, StoredPrevious::None));
        assert_eq!(legacy.to_text(), "a-plain-secret-of-at-least-32-bytes!");
        // And what cannot be a keyring is refused: key 0 in JSON, a previous key with the
        // current one's id, a short previous key
        assert!(StoredKeys::parse(r#"{"kid":0,"key":"00","activeFromMs":0}"#).is_err());
        let same = format!(
            r#"{{"kid":3,"key":"{k5}","activeFromMs":1,"previous":{{"kid":3,"key":"{k5}","activeFromMs":0}}}}"#,
            k5 = "05".repeat(32)
        );
        assert!(StoredKeys::parse(&same).is_err());
        let short = format!(
            r#"{{"kid":3,"key":"{}","activeFromMs":1,"previous":{{"kid":2,"key":"0505","activeFromMs":0}}}}"#,
            "05".repeat(32)
        );
        assert!(StoredKeys::parse(&short).is_err());
        assert!(!format!("{k:?} {back:?}").contains("0505"), "Debug shows no key");
    }

    #[test]
    fn a_keyring_read_from_one_version_opens_values_of_both_keys_and_its_retired_form_only_the_current() {
        // Given values under key 0, then a rotation that keeps key 0 inside key 1's version
        let zero = MasterKey::new(0, 0, vec![1u8; 32]).unwrap();
        let old = Keys::from_ring(vec![zero.clone()]).unwrap();
        let sealed0 = old.seal(Purpose::Code, b"1234", "OTP1");
        let hash0 = old.hash_code("OTP1", "1234");
        let one = MasterKey::new(1, 1, vec![2u8; 32]).unwrap();
        let text = StoredKeys { current: one.clone(), previous: StoredPrevious::Kept(zero) }.to_text();
        // When a function builds its keyring from that one text
        let keys = Keys::from_ring(StoredKeys::parse(&text).unwrap().masters()).unwrap();
        // Then it opens what either key sealed, and writes with key 1
        let sealed1 = keys.seal(Purpose::Code, b"5678", "OTP2");
        assert_eq!(sealed1[1], 1);
        assert_eq!(keys.open(Purpose::Code, &sealed0, "OTP1").unwrap(), b"1234");
        assert_eq!(keys.open(Purpose::Code, &sealed1, "OTP2").unwrap(), b"5678");
        assert!(keys.code_matches("OTP1", "1234", &hash0));
        // When the previous key is retired (the version written without it)
        let retired = StoredKeys { current: one, previous: StoredPrevious::None }.to_text();
        let keys = Keys::from_ring(StoredKeys::parse(&retired).unwrap().masters()).unwrap();
        // Then only key 1's values open
        assert!(keys.open(Purpose::Code, &sealed0, "OTP1").is_err());
        assert!(!keys.code_matches("OTP1", "1234", &hash0));
        assert_eq!(keys.open(Purpose::Code, &sealed1, "OTP2").unwrap(), b"5678");
    }

    /// The (purpose, period) of the sealing keys key `kid` keeps derived.
    fn kept_sealing_keys(keys: &Keys, kid: u8) -> Vec<(Purpose, u32)> {
        let ring = keys.ring();
        let version = ring.versions.iter().find(|v| v.kid == kid).expect("the key");
        let mut kept: Vec<_> = version.sealing.read().unwrap().iter().map(|&(p, n, _)| (p, n)).collect();
        kept.sort_by_key(|&(p, n)| (p.label(), n));
        kept
    }

    /// `plaintext` sealed under `keys`' writer as if in `period` (what `seal` does in that hour).
    fn sealed_in(keys: &Keys, purpose: Purpose, period: u32, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let ring = keys.ring();
        let key = ring.writer(wall_now());
        let nonce = [period as u8; NONCE];
        let ct = key
            .sealing_key(purpose, period)
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .unwrap();
        [&[SEALED_V2, key.kid][..], &period.to_be_bytes(), &nonce, &ct].concat()
    }

    #[test]
    fn a_sealing_key_is_derived_once_per_purpose_and_hour_and_kept_only_when_it_opened_something() {
        // Given a keyring that has sealed nothing
        let keys = ring(&[(1, 0, 1)]);
        assert!(kept_sealing_keys(&keys, 1).is_empty());
        // When it seals codes three times and a webhook secret once
        let sealed: Vec<_> = (0..3).map(|i| keys.seal(Purpose::Code, format!("{i}").as_bytes(), "OTP1")).collect();
        keys.seal(Purpose::WebhookSecret, b"whsec", "AC1");
        // Then one key per purpose is kept, this hour's, and each value still opens (and
        // under a ring that derives its key afresh)
        // (an hour could turn during the test, in the microseconds between the seals)
        let hour = (wall_now() / SEAL_PERIOD_MS) as u32;
        assert_eq!(kept_sealing_keys(&keys, 1), [(Purpose::Code, hour), (Purpose::WebhookSecret, hour)]);
        for (i, s) in sealed.iter().enumerate() {
            assert_eq!(keys.open(Purpose::Code, s, "OTP1").unwrap(), format!("{i}").as_bytes());
            assert_eq!(ring(&[(1, 0, 1)]).open(Purpose::Code, s, "OTP1").unwrap(), format!("{i}").as_bytes());
        }
        // When values with a period nobody sealed in, or a wrong tag, fail to open
        let mut forged = sealed_in(&keys, Purpose::Code, 7, b"x", "OTP1");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(keys.open(Purpose::Code, &forged, "OTP1").is_err());
        // Then no key is kept for them
        assert!(!kept_sealing_keys(&keys, 1).contains(&(Purpose::Code, 7)));
        // When values of many hours open, the newest few are kept, this hour's among them
        for period in 1..=20 {
            let s = sealed_in(&keys, Purpose::Code, hour - period, b"y", "OTP2");
            assert_eq!(keys.open(Purpose::Code, &s, "OTP2").unwrap(), b"y");
        }
        let code_keys: Vec<u32> =
            kept_sealing_keys(&keys, 1).into_iter().filter(|&(p, _)| p == Purpose::Code).map(|(_, n)| n).collect();
        assert_eq!(code_keys.len(), SEAL_PERIODS_KEPT, "{code_keys:?}");
        assert!(code_keys.contains(&hour) && code_keys.iter().all(|&n| n > hour - 20), "{code_keys:?}");
    }

    #[test]
    fn short_master_secrets_are_refused() {
        assert!(Keys::from_master(b"short").is_err());
    }

    #[test]
    fn otp_sids_carry_their_country_readable_only_with_the_key() {
        let keys = Keys::random();
        let sid = keys.otp_sid(Some("GB"), 1_700_000_000_000, 256);
        assert!(crate::domain::ids::is_sid("OTP", &sid), "{sid}");
        assert_eq!(keys.otp_sid_country(&sid).as_deref(), Some("GB"));
        let non_geographic = keys.otp_sid(Some("001"), 5, 256);
        assert_eq!(keys.otp_sid_country(&non_geographic).as_deref(), Some("001"));
        assert_eq!(Keys::random().otp_sid_country(&sid), None, "another key reads nothing (or noise)");
        assert_eq!(&sid[..15], crate::domain::ids::otp_sid_floor(1_700_000_000_000), "the time stays readable");
        let plain = keys.otp_sid(None, 5, 256);
        assert!(crate::domain::ids::is_sid("OTP", &plain));
        let misread = (0..2000).filter(|_| keys.otp_sid_country(&keys.otp_sid(None, 5, 256)).is_some()).count();
        assert!(misread <= 2, "{misread} of 2000 plain sids read as carrying a country");
        assert_ne!(keys.otp_sid(Some("GB"), 5, 256), keys.otp_sid(Some("GB"), 5, 256));
    }
}
