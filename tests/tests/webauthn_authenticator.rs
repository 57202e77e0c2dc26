//! The software authenticator (common/authenticator.rs) proved against webauthn_rp 0.3, the RP
//! library the server uses: its registrations and assertions parse with the crate's strict
//! (WebAuthn Level 3 JSON) deserializers and verify; what a server must refuse is refused. The
//! server side is played here as the server will play it: ceremony states and credentials go
//! to storage as bytes (the crate's `bin` Encode/Decode) and come back between the steps.
//! The server makes the same calls in `shared/src/domain/passkey.rs`.

mod common;

use common::authenticator::Authenticator;
use serde_json::Value;
use webauthn_rp::{
    bin::{Decode, Encode},
    request::{
        auth::{AllowedCredentials, AuthenticationVerificationOptions},
        register::{PublicKeyCredentialUserEntity, RegistrationVerificationOptions, UserHandle64, USER_HANDLE_MAX_LEN},
        AsciiDomain, Credentials as _, PublicKeyCredentialDescriptor, RpId, UserVerificationRequirement,
    },
    response::{
        auth::error::AuthCeremonyErr,
        register::{error::RegCeremonyErr, CompressedPubKey, CredentialProtectionPolicy, DynamicState, StaticState},
        AuthTransports, Backup, CredentialId,
    },
    AuthenticatedCredential, NonDiscoverableAuthentication64, NonDiscoverableAuthenticationServerState,
    NonDiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration, RegistrationServerState,
};

const ORIGIN: &str = "http://localhost:3000";

/// The stored form of a P-256/Ed25519/P-384/RSA public key (`StaticState::decode`'s type).
type StoredKey = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;

fn rp_id() -> RpId {
    RpId::Domain(AsciiDomain::try_from("localhost".to_owned()).expect("a domain"))
}

fn origins() -> Vec<String> {
    vec![ORIGIN.to_owned()]
}

/// A credential as the server stores it: bytes only.
#[derive(Clone, Debug)]
struct Stored {
    id: Vec<u8>,
    transports: u8,
    user: [u8; USER_HANDLE_MAX_LEN],
    static_state: Vec<u8>,
    dynamic_state: [u8; 7],
}

impl Stored {
    fn sign_count(&self) -> u32 {
        DynamicState::decode(self.dynamic_state).expect("dynamic state").sign_count
    }
}

/// A registration started: the options JSON for the client and the server state as stored.
fn start_registration(user_id: &UserHandle64) -> (Value, Vec<u8>) {
    let rp_id = rp_id();
    let user = PublicKeyCredentialUserEntity {
        name: "user-42".try_into().expect("a user name"),
        id: user_id,
        display_name: None,
    };
    let (server, client) = PublicKeyCredentialCreationOptions::passkey(&rp_id, user, Vec::new())
        .start_ceremony()
        .expect("the options are consistent");
    let options = serde_json::to_value(&client).expect("client state as JSON");
    let state = server.encode().expect("server state encodes");
    (options, state)
}

/// The server finishes a registration from the stored state and the client's JSON text.
fn finish_registration(state: &[u8], credential: &str) -> Result<Stored, RegCeremonyErr> {
    let server = RegistrationServerState::<USER_HANDLE_MAX_LEN>::decode(state).expect("state decodes");
    // The strict Level 3 deserializer: what Chrome's toJSON() gives parses as it is.
    let registration: Registration = serde_json::from_str(credential).expect("a RegistrationResponseJSON");
    let cred = server.verify(
        &rp_id(),
        &registration,
        &RegistrationVerificationOptions::<String, String> { allowed_origins: &origins(), ..Default::default() },
    )?;
    let (id, transports, user, static_state, dynamic_state, _metadata) = cred.into_parts();
    Ok(Stored {
        id: id.encode().expect("infallible").to_vec(),
        transports: transports.encode().expect("infallible"),
        user: user.encode().expect("infallible"),
        static_state: static_state.encode().expect("infallible"),
        dynamic_state: dynamic_state.encode().expect("infallible"),
    })
}

/// A passkey registered: the authenticator and the credential as stored.
fn registered(mut authenticator: Authenticator) -> (Authenticator, Stored) {
    let user_id = UserHandle64::new();
    let (options, state) = start_registration(&user_id);
    let credential = authenticator.register(&options, ORIGIN);
    let stored = finish_registration(&state, &credential).expect("the registration verifies");
    (authenticator, stored)
}

/// An authentication started for the stored credential (allowCredentials = it, UV required):
/// the options JSON and the server state as stored.
fn start_authentication(stored: &Stored) -> (Value, Vec<u8>) {
    let rp_id = rp_id();
    let mut allowed = AllowedCredentials::with_capacity(1);
    allowed.push(
        PublicKeyCredentialDescriptor {
            id: CredentialId::<Vec<u8>>::decode(stored.id.clone()).expect("a credential id"),
            transports: AuthTransports::decode(stored.transports).expect("transports"),
        }
        .into(),
    );
    let mut request = NonDiscoverableCredentialRequestOptions::second_factor(&rp_id, allowed).expect("one credential");
    request.options().user_verification = UserVerificationRequirement::Required;
    let (server, client) = request.start_ceremony().expect("the options are consistent");
    let options = serde_json::to_value(&client).expect("client state as JSON");
    let state = server.encode().expect("server state encodes");
    (options, state)
}

/// The server finishes an authentication: the stored state and credential, the client's JSON;
/// on success the new dynamic state (sign count) is stored.
fn finish_authentication(state: &[u8], stored: &mut Stored, credential: &str) -> Result<(), AuthCeremonyErr> {
    let server = NonDiscoverableAuthenticationServerState::decode(state).expect("state decodes");
    let authentication: NonDiscoverableAuthentication64 =
        serde_json::from_str(credential).expect("an AuthenticationResponseJSON");
    // The server looks the credential up by authentication.raw_id(); here there is one.
    assert_eq!(authentication.raw_id().into_inner(), stored.id.as_slice());
    let user = UserHandle64::decode(stored.user).expect("infallible");
    let mut cred = AuthenticatedCredential::new(
        CredentialId::<&[u8]>::decode(stored.id.as_slice()).expect("a credential id"),
        &user,
        StaticState::<StoredKey>::decode(stored.static_state.as_slice()).expect("static state"),
        DynamicState::decode(stored.dynamic_state).expect("dynamic state"),
    )
    .expect("a consistent credential");
    let updated = server.verify(
        &rp_id(),
        &authentication,
        &mut cred,
        &AuthenticationVerificationOptions::<String, String> { allowed_origins: &origins(), ..Default::default() },
    )?;
    if updated {
        stored.dynamic_state = cred.dynamic_state().encode().expect("infallible");
    }
    Ok(())
}

/// One authentication from start to finish, the client at `origin`.
fn authenticate(authenticator: &mut Authenticator, stored: &mut Stored, origin: &str) -> Result<(), AuthCeremonyErr> {
    let (options, state) = start_authentication(stored);
    let credential = authenticator.assert(&options, origin);
    finish_authentication(&state, stored, &credential)
}

#[test]
fn given_passkey_creation_options_when_the_authenticator_registers_then_the_chrome_json_verifies() {
    let user_id = UserHandle64::new();
    let (options, state) = start_registration(&user_id);
    let mut authenticator = Authenticator::new();

    let credential = authenticator.register(&options, ORIGIN);

    // The JSON as Chrome's toJSON() gives it.
    let json: Value = serde_json::from_str(&credential).expect("JSON");
    assert_eq!(json["type"], "public-key");
    assert_eq!(json["id"], json["rawId"]);
    assert_eq!(json["id"], authenticator.credential_id_b64());
    assert_eq!(json["authenticatorAttachment"], "platform");
    assert_eq!(json["clientExtensionResults"], serde_json::json!({}));
    assert_eq!(json["response"]["publicKeyAlgorithm"], -7);
    assert_eq!(json["response"]["transports"], serde_json::json!(["internal"]));
    // The relaxed deserializer takes it too.
    assert!(Registration::from_json_relaxed(credential.as_bytes()).is_ok());
    // clientDataJSON is written as browsers write it: the crate's strict parser takes it.
    let registration: Registration = serde_json::from_str(&credential).expect("a registration");
    RegistrationServerState::<USER_HANDLE_MAX_LEN>::decode(state.as_slice())
        .expect("state decodes")
        .verify(
            &rp_id(),
            &registration,
            &RegistrationVerificationOptions::<String, String> {
                allowed_origins: &origins(),
                client_data_json_relaxed: false,
                ..Default::default()
            },
        )
        .expect("the strict clientDataJSON parser takes it");

    let stored = finish_registration(&state, &credential).expect("the registration verifies");
    assert_eq!(stored.id, authenticator.credential_id());
    assert_eq!(stored.user.as_slice(), user_id.as_ref());
    let dynamic = DynamicState::decode(stored.dynamic_state).expect("dynamic state");
    assert!(dynamic.user_verified);
    assert!(matches!(dynamic.backup, Backup::NotEligible));
    assert_eq!(dynamic.sign_count, 0);
    // passkey() asks for credProtect userVerificationRequired; the authenticator answered it.
    let static_state = StaticState::<StoredKey>::decode(stored.static_state.as_slice()).expect("static");
    assert!(matches!(static_state.extensions.cred_protect, CredentialProtectionPolicy::UserVerificationRequired));
}

#[test]
fn given_second_factor_creation_options_when_the_authenticator_registers_then_cred_props_is_answered() {
    // second_factor(): no credProtect, credProps asked for (the client answers rk).
    let rp_id = rp_id();
    let user_id = UserHandle64::new();
    let user = PublicKeyCredentialUserEntity {
        name: "user-42".try_into().expect("a user name"),
        id: &user_id,
        display_name: None,
    };
    let (server, client) = PublicKeyCredentialCreationOptions::second_factor(&rp_id, user, Vec::new())
        .start_ceremony()
        .expect("consistent options");
    let options = serde_json::to_value(&client).expect("JSON");
    let mut authenticator = Authenticator::new();

    let credential = authenticator.register(&options, ORIGIN);

    let json: Value = serde_json::from_str(&credential).expect("JSON");
    assert_eq!(json["clientExtensionResults"], serde_json::json!({"credProps": {"rk": true}}));
    let registration: Registration = serde_json::from_str(&credential).expect("a registration");
    let cred = server
        .verify(
            &rp_id,
            &registration,
            &RegistrationVerificationOptions::<String, String> { allowed_origins: &origins(), ..Default::default() },
        )
        .expect("the registration verifies");
    assert!(matches!(cred.static_state().extensions.cred_protect, CredentialProtectionPolicy::None));
}

#[test]
fn given_a_registered_passkey_when_it_answers_challenges_then_they_verify_and_the_counter_is_stored() {
    let (mut authenticator, mut stored) = registered(Authenticator::new());

    authenticate(&mut authenticator, &mut stored, ORIGIN).expect("the first assertion verifies");
    assert_eq!(authenticator.sign_count(), 1);
    assert_eq!(stored.sign_count(), 1);

    authenticate(&mut authenticator, &mut stored, ORIGIN).expect("the second assertion verifies");
    assert_eq!(stored.sign_count(), 2);
}

#[test]
fn given_the_assertion_json_then_it_is_what_chrome_gives() {
    let (mut authenticator, stored) = registered(Authenticator::new());
    let (options, state) = start_authentication(&stored);
    assert_eq!(options["rpId"], "localhost");
    assert_eq!(options["userVerification"], "required");
    assert_eq!(options["allowCredentials"][0]["id"], authenticator.credential_id_b64());

    let json: Value = serde_json::from_str(&authenticator.assert(&options, ORIGIN)).expect("JSON");

    assert_eq!(json["type"], "public-key");
    assert_eq!(json["id"], json["rawId"]);
    assert_eq!(json["authenticatorAttachment"], "platform");
    assert_eq!(json["clientExtensionResults"], serde_json::json!({}));
    for field in ["authenticatorData", "clientDataJSON", "signature", "userHandle"] {
        assert!(json["response"][field].is_string(), "response.{field}: {json}");
    }
    // The relaxed deserializer takes it too.
    let text = json.to_string();
    assert!(NonDiscoverableAuthentication64::from_json_relaxed(text.as_bytes()).is_ok());
    // clientDataJSON is written as browsers write it: the crate's strict parser takes it.
    let authentication: NonDiscoverableAuthentication64 = serde_json::from_str(&text).expect("an authentication");
    let user = UserHandle64::decode(stored.user).expect("infallible");
    let mut cred = AuthenticatedCredential::new(
        CredentialId::<&[u8]>::decode(stored.id.as_slice()).expect("a credential id"),
        &user,
        StaticState::<StoredKey>::decode(stored.static_state.as_slice()).expect("static state"),
        DynamicState::decode(stored.dynamic_state).expect("dynamic state"),
    )
    .expect("a consistent credential");
    NonDiscoverableAuthenticationServerState::decode(state.as_slice())
        .expect("state decodes")
        .verify(
            &rp_id(),
            &authentication,
            &mut cred,
            &AuthenticationVerificationOptions::<String, String> {
                allowed_origins: &origins(),
                client_data_json_relaxed: false,
                ..Default::default()
            },
        )
        .expect("the strict clientDataJSON parser takes it");
}

#[test]
fn given_a_cloned_authenticator_when_the_stale_copy_signs_after_the_original_then_the_counter_refuses_it() {
    let (mut original, mut stored) = registered(Authenticator::new());
    authenticate(&mut original, &mut stored, ORIGIN).expect("the original signs");
    let mut clone = original.clone_stale();
    authenticate(&mut original, &mut stored, ORIGIN).expect("the original signs again");
    assert_eq!(stored.sign_count(), 2);

    let err = authenticate(&mut clone, &mut stored, ORIGIN).expect_err("a stale counter");

    assert!(matches!(err, AuthCeremonyErr::SignatureCounter), "{err:?}");
    assert_eq!(stored.sign_count(), 2, "nothing stored on a refusal");
}

#[test]
fn given_a_page_at_another_origin_when_registering_or_asserting_then_the_origin_is_refused() {
    let user_id = UserHandle64::new();
    let (options, state) = start_registration(&user_id);
    let mut authenticator = Authenticator::new();
    let credential = authenticator.register(&options, "http://localhost:4000");
    let err = finish_registration(&state, &credential).expect_err("another origin");
    assert!(matches!(err, RegCeremonyErr::OriginMismatch), "{err:?}");

    let (mut authenticator, mut stored) = registered(Authenticator::new());
    let err = authenticate(&mut authenticator, &mut stored, "https://evil.localhost").expect_err("another origin");
    assert!(matches!(err, AuthCeremonyErr::OriginMismatch), "{err:?}");
}

#[test]
fn given_no_user_verification_when_registering_or_asserting_then_the_rp_refuses() {
    let user_id = UserHandle64::new();
    let (options, state) = start_registration(&user_id);
    let mut authenticator = Authenticator::new();
    authenticator.set_user_verified(false);
    let credential = authenticator.register(&options, ORIGIN);
    let err = finish_registration(&state, &credential).expect_err("UV required");
    assert!(matches!(err, RegCeremonyErr::UserNotVerified), "{err:?}");

    let (mut authenticator, mut stored) = registered(Authenticator::new());
    authenticator.set_user_verified(false);
    let err = authenticate(&mut authenticator, &mut stored, ORIGIN).expect_err("UV required");
    assert!(matches!(err, AuthCeremonyErr::UserNotVerified), "{err:?}");
    assert_eq!(stored.sign_count(), 0, "nothing stored on a refusal");
}

#[test]
fn given_an_assertion_for_another_challenge_then_the_rp_refuses_it() {
    let (mut authenticator, mut stored) = registered(Authenticator::new());
    let (first_options, _) = start_authentication(&stored);
    let (_, second_state) = start_authentication(&stored);

    let credential = authenticator.assert(&first_options, ORIGIN);
    let err = finish_authentication(&second_state, &mut stored, &credential).expect_err("another challenge");

    assert!(matches!(err, AuthCeremonyErr::ChallengeMismatch), "{err:?}");
}

#[test]
fn given_a_synced_passkey_whose_counter_stays_zero_then_every_assertion_verifies() {
    let (mut authenticator, mut stored) = registered(Authenticator::synced());
    let dynamic = DynamicState::decode(stored.dynamic_state).expect("dynamic state");
    assert!(matches!(dynamic.backup, Backup::Exists));

    for _ in 0..3 {
        authenticate(&mut authenticator, &mut stored, ORIGIN).expect("a zero counter is no clone");
    }
    assert_eq!(authenticator.sign_count(), 0);
    assert_eq!(stored.sign_count(), 0);
}
