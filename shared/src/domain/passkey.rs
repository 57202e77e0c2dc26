//! WebAuthn ceremonies of passkey factors, by the `webauthn_rp` crate: options out (the JSON
//! `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON` take), the
//! browser's credential in (the JSON of `credential.toJSON()`). Pure: where ceremonies wait and
//! how a verified assertion closes a challenge is `domain::factors`'.
//!
//! Both ceremonies ask for user verification, and the crate checks what WebAuthn Level 3 asks
//! of a relying party: the challenge, the origin (one of the account's), the RP id's hash, the
//! signature, user presence and verification, and a signature counter that must grow (a
//! counter that does not is a cloned credential). The crate times a ceremony by the system
//! clock, not by the dev server's.

use std::num::NonZeroU32;

use webauthn_rp::{
    bin::{Decode, Encode},
    request::{
        auth::{AllowedCredential, AllowedCredentials, AuthenticationVerificationOptions},
        register::{
            CredProtect, PublicKeyCredentialUserEntity, RegistrationVerificationOptions, UserHandle16, Username,
        },
        AsciiDomain, Credentials, ExtensionInfo, PublicKeyCredentialDescriptor, RpId, UserVerificationRequirement,
    },
    response::{
        register::{CompressedPubKey, DynamicState, StaticState},
        AuthTransports, CredentialId,
    },
    AuthenticatedCredential, NonDiscoverableAuthentication16, NonDiscoverableAuthenticationServerState,
    NonDiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration, RegistrationServerState,
};

use super::{
    error::{Error, Result},
    factor::PasskeyCredential,
    policy::PasskeySettings,
};

/// A public key as the crate decodes a stored one (Ed25519, P-256, P-384, RSA).
type StoredKey = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;

/// Bytes of a user handle (random per factor).
pub const USER_HANDLE_LEN: usize = 16;

/// A ceremony begun: what waits for the browser's answer, and what the browser is given.
pub struct Started {
    /// The crate's server state, encoded.
    pub state: Vec<u8>,
    /// The options, as WebAuthn's JSON forms of them.
    pub options: serde_json::Value,
}

/// Why a ceremony failed, for the logs (nothing secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// A random user handle.
pub fn new_user_handle() -> Vec<u8> {
    UserHandle16::new().encode().map(|h| h.to_vec()).unwrap_or_default()
}

fn rp_id(settings: &PasskeySettings) -> Result<RpId> {
    AsciiDomain::try_from(settings.rp_id.clone()).map(RpId::Domain).map_err(|_| {
        tracing::error!("an account's passkey rpId is not a domain");
        Error::Internal
    })
}

fn user_handle(bytes: &[u8]) -> Result<UserHandle16> {
    let raw: [u8; USER_HANDLE_LEN] = bytes.try_into().map_err(|_| corrupt("user handle"))?;
    UserHandle16::decode(raw).map_err(|_| corrupt("user handle"))
}

fn corrupt(what: &'static str) -> Error {
    tracing::error!(part = what, "a passkey factor's stored state does not decode");
    Error::Internal
}

fn descriptor(c: &PasskeyCredential) -> Result<PublicKeyCredentialDescriptor<Vec<u8>>> {
    Ok(PublicKeyCredentialDescriptor {
        id: CredentialId::<Vec<u8>>::decode(c.id.clone()).map_err(|_| corrupt("credential id"))?,
        transports: AuthTransports::decode(c.transports).map_err(|_| corrupt("transports"))?,
    })
}

/// Begin registering a passkey for `user_name` under `handle`; `existing` are the entity's
/// credentials, which an authenticator holding one of them declines to register again.
pub fn start_registration(
    settings: &PasskeySettings,
    handle: &[u8],
    user_name: &str,
    existing: &[&PasskeyCredential],
) -> Result<Started> {
    let rp = rp_id(settings)?;
    let handle = user_handle(handle)?;
    let name = Username::try_from(user_name).map_err(|_| Error::invalid("userName", "is not a name WebAuthn takes"))?;
    let exclude = existing.iter().map(|c| descriptor(c)).collect::<Result<Vec<_>>>()?;
    let user = PublicKeyCredentialUserEntity { name, id: &handle, display_name: None };
    let mut creation = PublicKeyCredentialCreationOptions::passkey(&rp, user, exclude);
    // Ask authenticators to use the credential only with user verification, without refusing
    // those that cannot say so (CTAP 2.0 keys have no credProtect): every ceremony here
    // requires user verification anyway.
    creation.extensions.cred_protect = CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) = creation.start_ceremony().map_err(|e| {
        tracing::error!(error = %e, "passkey registration options refused by the WebAuthn library");
        Error::Internal
    })?;
    let options = serde_json::to_value(&client).map_err(|_| Error::Internal)?;
    let state = server.encode().map_err(|_| Error::Internal)?;
    Ok(Started { state, options })
}

/// Finish a registration begun with `state`: the credential to store, or why it is refused.
/// A `credential` that is not a registration's JSON at all is a 400 naming it.
pub fn finish_registration(
    settings: &PasskeySettings,
    state: &[u8],
    credential: &str,
) -> Result<std::result::Result<PasskeyCredential, Refused>> {
    let registration = Registration::from_json_relaxed(credential.as_bytes()).map_err(|_| {
        Error::invalid("credential", "must be the JSON of a WebAuthn registration (credential.toJSON())")
    })?;
    let rp = rp_id(settings)?;
    let server = RegistrationServerState::<USER_HANDLE_LEN>::decode(state).map_err(|_| corrupt("registration"))?;
    let options = RegistrationVerificationOptions::<String, String> {
        allowed_origins: &settings.origins,
        ..RegistrationVerificationOptions::default()
    };
    let registered = match server.verify(&rp, &registration, &options) {
        Ok(r) => r,
        Err(e) => return Ok(Err(Refused(e.to_string()))),
    };
    let (id, transports, _user, static_state, dynamic_state, _metadata) = registered.into_parts();
    Ok(Ok(PasskeyCredential {
        id: id.encode().map_err(|_| Error::Internal)?.to_vec(),
        transports: transports.encode().map_err(|_| Error::Internal)?,
        static_state: static_state.encode().map_err(|_| Error::Internal)?,
        dynamic_state: dynamic_state.encode().map_err(|_| Error::Internal)?.to_vec(),
    }))
}

/// Begin an authentication with `credential` alone, answered within `timeout_secs`.
pub fn start_authentication(
    settings: &PasskeySettings,
    credential: &PasskeyCredential,
    timeout_secs: u32,
) -> Result<Started> {
    let rp = rp_id(settings)?;
    let mut allowed = AllowedCredentials::with_capacity(1);
    allowed.push(AllowedCredential::from(descriptor(credential)?));
    let mut request =
        NonDiscoverableCredentialRequestOptions::second_factor(&rp, allowed).map_err(|_| Error::Internal)?;
    let options = request.options();
    options.user_verification = UserVerificationRequirement::Required;
    options.timeout = NonZeroU32::new(timeout_secs.saturating_mul(1000)).unwrap_or(NonZeroU32::MIN);
    let (server, client) = request.start_ceremony().map_err(|e| {
        tracing::error!(error = %e, "passkey authentication options refused by the WebAuthn library");
        Error::Internal
    })?;
    let options = serde_json::to_value(&client).map_err(|_| Error::Internal)?;
    let state = server.encode().map_err(|_| Error::Internal)?;
    Ok(Started { state, options })
}

/// An assertion's JSON, parsed: a 400 naming `credential` when it is not one.
pub struct Assertion(NonDiscoverableAuthentication16);

impl Assertion {
    pub fn parse(credential: &str) -> Result<Self> {
        NonDiscoverableAuthentication16::from_json_relaxed(credential.as_bytes())
            .map(Assertion)
            .map_err(|_| Error::invalid("credential", "must be the JSON of a WebAuthn assertion (credential.toJSON())"))
    }
}

/// Finish an authentication begun with `state`: the credential's new dynamic state (its
/// counter moved on) to store over the one read, or why it is refused.
pub fn finish_authentication(
    settings: &PasskeySettings,
    state: &[u8],
    handle: &[u8],
    credential: &PasskeyCredential,
    assertion: &Assertion,
) -> Result<std::result::Result<Vec<u8>, Refused>> {
    let rp = rp_id(settings)?;
    let server = NonDiscoverableAuthenticationServerState::decode(state).map_err(|_| corrupt("authentication"))?;
    let handle = user_handle(handle)?;
    let id = CredentialId::<&[u8]>::decode(credential.id.as_slice()).map_err(|_| corrupt("credential id"))?;
    let static_state =
        StaticState::<StoredKey>::decode(credential.static_state.as_slice()).map_err(|_| corrupt("static state"))?;
    let dynamic: [u8; 7] = credential.dynamic_state.as_slice().try_into().map_err(|_| corrupt("dynamic state"))?;
    let dynamic_state = DynamicState::decode(dynamic).map_err(|_| corrupt("dynamic state"))?;
    let mut stored =
        AuthenticatedCredential::new(id, &handle, static_state, dynamic_state).map_err(|_| corrupt("credential"))?;
    let options = AuthenticationVerificationOptions::<String, String> {
        allowed_origins: &settings.origins,
        update_uv: true,
        ..AuthenticationVerificationOptions::default()
    };
    match server.verify(&rp, &assertion.0, &mut stored, &options) {
        Ok(_) => Ok(Ok(stored.dynamic_state().encode().map_err(|_| Error::Internal)?.to_vec())),
        Err(e) => Ok(Err(Refused(e.to_string()))),
    }
}
