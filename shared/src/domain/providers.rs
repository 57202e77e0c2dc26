//! Providers of an account's own (issue 27): HTTPS endpoints the account names in its policy,
//! each a route its routing table may list by name. A message to one is the same signed JSON
//! `POST` as to the deployment's provider (`adapters::provider`), signed with the provider's
//! own `whsec_` secret; its delivery reports come back, signed with that secret, to
//! `POST /2fa/receipts/{accountSid}/{provider}` and only ever move that account's events.
//!
//! The secret is made here (never given), answered once by the policy update that made it, and
//! stored sealed to the account and the provider's name. A provider kept by name across
//! updates keeps its secret; `rotateProviderSecret` makes a new one.

use serde::{Deserialize, Serialize};

use super::{
    callbacks::{self, UrlRules},
    crypto::{Keys, Purpose},
    error::{Error, Result},
    policy::SealedSecret,
    routing,
};

/// Most providers one account names (they live in the account item).
pub const MAX_PROVIDERS: usize = 5;

/// A provider as the account's policy keeps it. `Debug` shows its name and URL only.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountProvider {
    /// The route name its routing table lists, and the `{provider}` of its receipt path.
    pub name: String,
    pub url: String,
    /// Its `whsec_` secret, sealed to the account and the name.
    pub secret: SealedSecret,
}

impl std::fmt::Debug for AccountProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountProvider").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

/// A provider with its HMAC key opened, for one message or one receipt. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedProvider {
    pub name: String,
    pub url: String,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for OpenedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedProvider").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

/// One provider as a policy update gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub name: String,
    pub url: String,
}

/// A secret an update made, in clear, to show once. `Debug` shows the name only.
#[derive(Clone, Serialize)]
pub struct ProviderSecret {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for ProviderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSecret").field("name", &self.name).finish_non_exhaustive()
    }
}

fn aad(account_sid: &str, name: &str) -> String {
    format!("provider-secret|{account_sid}|{name}")
}

impl AccountProvider {
    /// A provider with a new secret, answered in clear beside it.
    fn with_new_secret(keys: &Keys, account_sid: &str, name: String, url: String) -> (Self, ProviderSecret) {
        let secret = callbacks::new_secret();
        let sealed = SealedSecret(keys.seal(Purpose::ProviderSecret, secret.as_bytes(), &aad(account_sid, &name)));
        (AccountProvider { name: name.clone(), url, secret: sealed }, ProviderSecret { name, secret })
    }

    /// The provider with its HMAC key opened (Err: sealed under a key this deployment no
    /// longer has, or to another account).
    pub fn open(&self, keys: &Keys, account_sid: &str) -> Result<OpenedProvider> {
        let secret = keys.open(Purpose::ProviderSecret, &self.secret.0, &aad(account_sid, &self.name))?;
        let key = callbacks::secret_key(std::str::from_utf8(&secret).map_err(|_| Error::Internal)?)
            .map_err(|_| Error::Internal)?;
        Ok(OpenedProvider { name: self.name.clone(), url: self.url.clone(), key })
    }

    /// This provider with its secret sealed again under the current key, when the key it is
    /// under is `retiring` (None: it is under another key).
    pub fn resealed(&self, keys: &Keys, account_sid: &str, retiring: u8) -> Result<Option<Self>> {
        let aad = aad(account_sid, &self.name);
        let opened = keys.open_any(Purpose::ProviderSecret, &self.secret.0, &aad)?;
        Ok((opened.kid == retiring).then(|| AccountProvider {
            secret: SealedSecret(keys.seal(Purpose::ProviderSecret, &opened.plaintext, &aad)),
            ..self.clone()
        }))
    }
}

/// Whether `name` may name a provider: a route name (`routing::valid_name`) that is not one of
/// the deployment's own routes.
pub fn check_name(name: &str, param: &'static str) -> Result<()> {
    if !routing::valid_name(name) {
        return Err(Error::invalid(
            param,
            format!("{name:?} is not a provider name (1 to 64 letters, digits, - and _)"),
        ));
    }
    if routing::BUILT_IN.contains(&name) {
        return Err(Error::invalid(param, format!("{name} is the name of a built-in route: choose another")));
    }
    Ok(())
}

/// The account's providers after an update: `list` (absent: unchanged; `null` or `[]`: none)
/// replaces them, URLs taken by `rules`, a provider kept by name keeping its secret; `rotate`
/// names one whose secret is made again. Answers the secrets made (shown once), or 400 naming
/// `providers` or `rotateProviderSecret`.
pub fn apply(
    keys: &Keys,
    account_sid: &str,
    current: Vec<AccountProvider>,
    list: Option<Option<Vec<ProviderInput>>>,
    rotate: Option<&str>,
    rules: UrlRules,
) -> Result<(Vec<AccountProvider>, Vec<ProviderSecret>)> {
    let mut made = Vec::new();
    let mut providers = match list {
        None => current,
        Some(list) => {
            let list = list.unwrap_or_default();
            if list.len() > MAX_PROVIDERS {
                return Err(Error::invalid("providers", format!("at most {MAX_PROVIDERS} providers")));
            }
            let mut out: Vec<AccountProvider> = Vec::with_capacity(list.len());
            for p in list {
                check_name(&p.name, "providers")?;
                if out.iter().any(|o| o.name == p.name) {
                    return Err(Error::invalid("providers", format!("{} is named twice", p.name)));
                }
                // Taken as a callback URL is (https to a public host on AWS), and checked again
                // on the addresses it resolves to when called (`adapters::router`).
                let url = callbacks::target(&p.url, None, rules, "providers", "providers")?.url;
                match current.iter().find(|c| c.name == p.name) {
                    Some(kept) => out.push(AccountProvider { url, ..kept.clone() }),
                    None => {
                        let (provider, secret) = AccountProvider::with_new_secret(keys, account_sid, p.name, url);
                        out.push(provider);
                        made.push(secret);
                    }
                }
            }
            out
        }
    };
    if let Some(name) = rotate {
        let Some(p) = providers.iter_mut().find(|p| p.name == name) else {
            return Err(Error::invalid("rotateProviderSecret", format!("{name} is not a provider of the account")));
        };
        let (again, secret) = AccountProvider::with_new_secret(keys, account_sid, p.name.clone(), p.url.clone());
        *p = again;
        made.retain(|m| m.name != name);
        made.push(secret);
    }
    Ok((providers, made))
}

/// The account's providers that `routes` names, opened for one message. One whose secret does
/// not open is left out (its route is then skipped like an unknown one), said in the log.
pub fn opened_for(
    keys: &Keys,
    account_sid: &str,
    providers: &[AccountProvider],
    routes: &[String],
) -> Vec<OpenedProvider> {
    providers
        .iter()
        .filter(|p| routes.contains(&p.name))
        .filter_map(|p| match p.open(keys, account_sid) {
            Ok(opened) => Some(opened),
            Err(_) => {
                tracing::warn!(account = %account_sid, provider = %p.name, "provider secret does not open: route skipped");
                None
            }
        })
        .collect()
}

/// The providers as the policy shows them: name and URL, never the secret.
pub fn view(providers: &[AccountProvider]) -> serde_json::Value {
    serde_json::Value::Array(providers.iter().map(|p| serde_json::json!({ "name": p.name, "url": p.url })).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(list: &[(&str, &str)]) -> Option<Option<Vec<ProviderInput>>> {
        Some(Some(list.iter().map(|(n, u)| ProviderInput { name: (*n).into(), url: (*u).into() }).collect()))
    }

    #[test]
    fn a_new_provider_gets_a_secret_once_and_keeps_it_across_updates_until_rotated() {
        let keys = Keys::random();
        // Given an account that names acme
        let (list, made) =
            apply(&keys, "AC1", vec![], input(&[("acme", "https://sms.acme.example/send")]), None, UrlRules::Public)
                .unwrap();
        assert_eq!(made.len(), 1);
        assert!(made[0].secret.starts_with("whsec_"));
        let key = list[0].open(&keys, "AC1").unwrap().key;
        assert_eq!(key, callbacks::secret_key(&made[0].secret).unwrap());
        // When it names acme again, at another URL, beside beta
        let (again, made) = apply(
            &keys,
            "AC1",
            list.clone(),
            input(&[("acme", "https://sms2.acme.example/send"), ("beta", "https://beta.example/")]),
            None,
            UrlRules::Public,
        )
        .unwrap();
        // Then acme keeps its secret and only beta's is new
        assert_eq!(made.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["beta"]);
        assert_eq!(again[0].secret, list[0].secret);
        assert_eq!(again[0].url, "https://sms2.acme.example/send");
        // And a rotation makes acme a new one
        let (rotated, made) = apply(&keys, "AC1", again.clone(), None, Some("acme"), UrlRules::Public).unwrap();
        assert_eq!(made.len(), 1);
        assert_ne!(rotated[0].secret, again[0].secret);
        assert_eq!(rotated[0].open(&keys, "AC1").unwrap().key, callbacks::secret_key(&made[0].secret).unwrap());
        // And the sealed secret is bound to its account and name
        assert!(rotated[0].open(&keys, "AC2").is_err());
        // And null clears the list
        assert!(apply(&keys, "AC1", rotated, Some(None), None, UrlRules::Public).unwrap().0.is_empty());
    }

    #[test]
    fn a_bad_provider_answers_400_naming_providers() {
        let keys = Keys::random();
        for list in [
            vec![("acme", "http://sms.acme.example/send")],
            vec![("acme", "https://127.0.0.1/send")],
            vec![("acme", "not a url")],
            vec![("sns", "https://sms.acme.example/send")],
            vec![("a b", "https://sms.acme.example/send")],
            vec![("acme", "https://a.example/"), ("acme", "https://b.example/")],
            vec![("a", "https://a.example/"); 6],
        ] {
            let err = apply(&keys, "AC1", vec![], input(&list), None, UrlRules::Public).unwrap_err();
            assert!(matches!(&err, Error::InvalidParameter { param, .. } if param == "providers"), "{list:?}: {err:?}");
        }
        let err = apply(&keys, "AC1", vec![], None, Some("nope"), UrlRules::Public).unwrap_err();
        assert!(matches!(&err, Error::InvalidParameter { param, .. } if param == "rotateProviderSecret"));
        // The dev server takes a local receiver
        assert!(apply(&keys, "AC1", vec![], input(&[("acme", "http://127.0.0.1:9/")]), None, UrlRules::AnyHost).is_ok());
    }

    #[test]
    fn the_secret_is_never_in_the_view_or_debug() {
        let keys = Keys::random();
        let (list, made) =
            apply(&keys, "AC1", vec![], input(&[("acme", "https://sms.acme.example/send")]), None, UrlRules::Public)
                .unwrap();
        let secret = &made[0].secret;
        let opened = list[0].open(&keys, "AC1").unwrap();
        let policy = super::super::policy::AccountPolicy { providers: list.clone(), ..Default::default() };
        let shown = [
            policy.view().to_string(),
            format!("{policy:?}"),
            format!("{:?}", list[0]),
            format!("{opened:?}"),
            format!("{:?}", made[0]),
        ];
        assert_eq!(
            policy.view()["providers"],
            serde_json::json!([{"name": "acme", "url": "https://sms.acme.example/send"}])
        );
        let b64_key = secret.trim_start_matches("whsec_");
        for s in shown {
            assert!(!s.contains(b64_key) && !s.contains("whsec_"), "{s}");
            assert!(!s.contains(&format!("{:?}", opened.key)), "{s}");
        }
    }
}
