//! A software WebAuthn authenticator and client: what a browser and a platform authenticator
//! (Touch ID, Windows Hello, Android) give a page, so that passkey registration and
//! authentication are tested without a browser.
//!
//! - `register` takes the PublicKeyCredentialCreationOptionsJSON the server sends (webauthn_rp's
//!   `RegistrationClientState` as JSON) and answers the RegistrationResponseJSON text Chrome's
//!   `credential.toJSON()` gives (members in WebIDL order, i.e. sorted).
//! - `assert` takes PublicKeyCredentialRequestOptionsJSON and answers AuthenticationResponseJSON.
//!
//! The credential: ES256 (P-256), a 16-byte random credential id, AAGUID all zeros, attestation
//! "none", transports `["internal"]`, attachment "platform". The authenticator data:
//! SHA-256(rpId) | flags | signCount (u32 big-endian) [| AAGUID | credIdLen | credId | COSE key]
//! [| extensions], all CBOR in CTAP2 canonical form (webauthn_rp parses nothing else).
//! Flags: UP always; UV unless `set_user_verified(false)`; AT on registration; ED when the
//! registration carries extensions (credProtect); BE and BS (backup eligible, backed up) only for
//! `Authenticator::synced()`: the default is a device-bound credential with a counter, the
//! synced one a passkey whose counter stays 0 (as iCloud Keychain and Google Password Manager do).
//! The counter: 0 at registration, +1 per assertion.
//!
//! What a real client would refuse (the RP id not the one registered, an allowCredentials list
//! without this credential, ES256 not offered, this credential in excludeCredentials) panics
//! here with a message, as a test cannot go on from there.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// COSE algorithm ES256 (ECDSA P-256 with SHA-256).
pub const ES256: i64 = -7;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// SubjectPublicKeyInfo DER up to the key: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
/// BIT STRING (65 bytes: 04 | x | y) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Clone)]
pub struct Authenticator {
    key: SigningKey,
    credential_id: Vec<u8>,
    /// Set by `register`: the RP the credential belongs to and its user handle (user.id).
    rp_id: Option<String>,
    user_handle: Option<Vec<u8>>,
    sign_count: u32,
    /// A synced passkey: BE|BS set and a counter that stays 0.
    synced: bool,
    user_verified: bool,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    /// A device-bound credential (BE and BS off) with a signature counter.
    pub fn new() -> Self {
        let key = loop {
            // A random 32-byte string is a valid scalar but with probability ~2^-32.
            if let Ok(key) = SigningKey::from_slice(&random::<32>()) {
                break key;
            }
        };
        Self {
            key,
            credential_id: random::<16>().to_vec(),
            rp_id: None,
            user_handle: None,
            sign_count: 0,
            synced: false,
            user_verified: true,
        }
    }

    /// A synced passkey: backup eligible and backed up (BE|BS), its counter always 0.
    pub fn synced() -> Self {
        Self { synced: true, ..Self::new() }
    }

    /// The same key and credential id with the counter as it is now: once the original has
    /// signed again, the copy's next assertion carries a counter not above the stored one.
    pub fn clone_stale(&self) -> Authenticator {
        self.clone()
    }

    /// Whether the user is verified (the UV flag) in what this authenticator signs next.
    pub fn set_user_verified(&mut self, verified: bool) {
        self.user_verified = verified;
    }

    pub fn credential_id(&self) -> Vec<u8> {
        self.credential_id.clone()
    }

    /// The credential id as the JSON carries it (base64url, no padding).
    pub fn credential_id_b64(&self) -> String {
        B64.encode(&self.credential_id)
    }

    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// The user handle (user.id) the credential was registered with.
    pub fn user_handle(&self) -> Option<Vec<u8>> {
        self.user_handle.clone()
    }

    pub fn rp_id(&self) -> Option<String> {
        self.rp_id.clone()
    }

    /// The public key as SubjectPublicKeyInfo DER (what `response.publicKey` carries).
    pub fn public_key_spki(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point.as_bytes());
        spki
    }

    /// navigator.credentials.create({publicKey}) then `JSON.stringify(credential.toJSON())`.
    pub fn register(&mut self, options: &Value, origin: &str) -> String {
        let challenge = str_at(options, "/challenge");
        let rp_id =
            options.pointer("/rp/id").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| host_of(origin));
        let user_id = B64.decode(str_at(options, "/user/id")).expect("user.id is base64url");
        let offered = options
            .get("pubKeyCredParams")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["alg"].as_i64() == Some(ES256)));
        assert!(offered, "the options do not offer ES256 (-7): {options}");
        let excluded = options
            .get("excludeCredentials")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["id"].as_str() == Some(&self.credential_id_b64())));
        assert!(!excluded, "this credential is in excludeCredentials: a client answers InvalidStateError");

        // credProtect (the client extension input is credentialProtectionPolicy): the
        // authenticator answers the policy in its extension outputs.
        let cred_protect = match options.pointer("/extensions/credentialProtectionPolicy") {
            None | Some(Value::Null) => None,
            Some(v) => Some(match v.as_str() {
                Some("userVerificationOptional") => 1u8,
                Some("userVerificationOptionalWithCredentialIDList") => 2,
                Some("userVerificationRequired") => 3,
                _ => panic!("unknown credentialProtectionPolicy {v}"),
            }),
        };
        let cred_props = options.pointer("/extensions/credProps") == Some(&Value::Bool(true));

        self.rp_id = Some(rp_id.clone());
        self.user_handle = Some(user_id);

        let client_data = client_data_json("webauthn.create", challenge, origin);

        let mut flags = self.flags() | FLAG_AT;
        let extensions = cred_protect.map(|policy| {
            // {"credProtect": policy}
            let mut ext = vec![0xa1];
            cbor_text(&mut ext, "credProtect");
            ext.push(policy);
            ext
        });
        if extensions.is_some() {
            flags |= FLAG_ED;
        }
        let mut auth_data = self.auth_data_head(&rp_id, flags);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key());
        if let Some(ext) = &extensions {
            auth_data.extend_from_slice(ext);
        }

        // {"fmt": "none", "attStmt": {}, "authData": bytes}: canonical order (shorter key first).
        let mut attestation_object = vec![0xa3];
        cbor_text(&mut attestation_object, "fmt");
        cbor_text(&mut attestation_object, "none");
        cbor_text(&mut attestation_object, "attStmt");
        attestation_object.push(0xa0);
        cbor_text(&mut attestation_object, "authData");
        cbor_bytes(&mut attestation_object, &auth_data);

        let client_extension_results = if cred_props { json!({"credProps": {"rk": true}}) } else { json!({}) };
        let id = self.credential_id_b64();
        json!({
            "authenticatorAttachment": "platform",
            "clientExtensionResults": client_extension_results,
            "id": id,
            "rawId": id,
            "response": {
                "attestationObject": B64.encode(&attestation_object),
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(client_data.as_bytes()),
                "publicKey": B64.encode(self.public_key_spki()),
                "publicKeyAlgorithm": ES256,
                "transports": ["internal"],
            },
            "type": "public-key",
        })
        .to_string()
    }

    /// navigator.credentials.get({publicKey}) then `JSON.stringify(assertion.toJSON())`.
    pub fn assert(&mut self, options: &Value, origin: &str) -> String {
        let challenge = str_at(options, "/challenge");
        let rp_id = options.get("rpId").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| host_of(origin));
        let registered = self.rp_id.as_deref().expect("assert before register: this authenticator holds no credential");
        assert_eq!(
            rp_id, registered,
            "the request's rpId is not the RP this credential belongs to: a client finds no credential"
        );
        if let Some(allowed) = options.get("allowCredentials").and_then(Value::as_array) {
            let id = self.credential_id_b64();
            assert!(
                allowed.is_empty() || allowed.iter().any(|c| c["id"].as_str() == Some(&id)),
                "allowCredentials does not list this credential: a client finds no credential"
            );
        }
        if !self.synced {
            self.sign_count += 1;
        }
        let client_data = client_data_json("webauthn.get", challenge, origin);
        let auth_data = self.auth_data_head(&rp_id, self.flags());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
        let signature: Signature = self.key.sign(&signed);
        let id = self.credential_id_b64();
        let user_handle = self.user_handle.as_ref().map(|u| B64.encode(u));
        json!({
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "id": id,
            "rawId": id,
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(client_data.as_bytes()),
                "signature": B64.encode(der_signature(&signature)),
                "userHandle": user_handle,
            },
            "type": "public-key",
        })
        .to_string()
    }

    fn flags(&self) -> u8 {
        let mut flags = FLAG_UP;
        if self.user_verified {
            flags |= FLAG_UV;
        }
        if self.synced {
            flags |= FLAG_BE | FLAG_BS;
        }
        flags
    }

    /// rpIdHash | flags | signCount.
    fn auth_data_head(&self, rp_id: &str, flags: u8) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&self.sign_count.to_be_bytes());
        data
    }

    /// {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}: CTAP2 canonical order puts
    /// the unsigned keys first, then the negative ones by their encoded bytes (0x20, 0x21, 0x22).
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_encoded_point(false);
        let (x, y) = (point.x().expect("uncompressed"), point.y().expect("uncompressed"));
        let mut key = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut key, x);
        key.push(0x22);
        cbor_bytes(&mut key, y);
        key
    }
}

fn client_data_json(kind: &str, challenge: &str, origin: &str) -> String {
    // The members in the order browsers write them (webauthn_rp's strict parser wants it).
    format!(
        r#"{{"type":"{kind}","challenge":"{challenge}","origin":{},"crossOrigin":false}}"#,
        Value::String(origin.to_owned())
    )
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("the options have no string at {pointer}: {v}"))
}

/// The host of an origin ("https://a.example.com:8443" -> "a.example.com"): the RP id a client
/// uses when the options name none.
fn host_of(origin: &str) -> String {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    rest.split([':', '/']).next().unwrap_or(rest).to_owned()
}

/// A CBOR head of major type `major` and argument `n`, in the shortest form.
fn cbor_head(out: &mut Vec<u8>, major: u8, n: usize) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    cbor_head(out, 2, b.len());
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// ECDSA-Sig-Value DER: SEQUENCE { INTEGER r, INTEGER s }.
fn der_signature(sig: &Signature) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, be: &[u8]) {
        let start = be.iter().position(|&b| b != 0).unwrap_or(be.len() - 1);
        let digits = &be[start..];
        let pad = digits[0] & 0x80 != 0;
        out.push(0x02);
        out.push((digits.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(digits);
    }
    let (r, s) = sig.split_bytes();
    let mut body = Vec::with_capacity(72);
    integer(&mut body, &r);
    integer(&mut body, &s);
    let mut der = vec![0x30, body.len() as u8];
    der.extend_from_slice(&body);
    der
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the OS random source");
    b
}
