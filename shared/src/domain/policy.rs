//! What an account allows beyond its credentials: the countries it sends to per channel (geo
//! permissions), its pumping guard settings, and its test destinations with their fixed codes.
//!
//! Kept on the account (read at authentication, so a send reads nothing more for it). Set on
//! the dev server with `POST /dev/accounts` and by the admin command, both through
//! `update_policy`.

use serde::Deserialize;

use super::{
    account::Account,
    callbacks::{self, CallbackMethod, CallbackTarget, UrlRules},
    crypto::{Code, Keys, Purpose, MAX_CODE_LEN, MIN_CODE_LEN},
    error::{Error, Result},
    otp::Channel,
    phone,
    providers::{self, AccountProvider, ProviderInput, ProviderSecret},
    routing::{self, RouteRule, RoutesInput},
    send::is_email,
};
use crate::ports::AccountStore;

/// Most test destinations an account may declare (they live in the account item).
pub const MAX_TEST_DESTINATIONS: usize = 20;
/// Most countries in one allow list (there are 249 ISO codes).
pub const MAX_COUNTRIES: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPolicy {
    /// Countries SMS may go to; None: every country.
    pub sms_countries: Option<Vec<String>>,
    /// Countries calls may go to; None: every country.
    pub call_countries: Option<Vec<String>>,
    /// Countries WhatsApp messages may go to (by the number's country); None: every country.
    pub whatsapp_countries: Option<Vec<String>>,
    pub guard: GuardSettings,
    pub test_destinations: Vec<TestDestination>,
    /// Where the account's OTP events are told (a send may name its own).
    pub callback: Option<CallbackTarget>,
    /// The `whsec_` secret callbacks are signed with, sealed to the account; None until one is
    /// made (the dev server makes one with each account).
    pub webhook_secret: Option<SealedSecret>,
    /// The senders a send's `from` may name (see `Senders`); None: any sender the deployment
    /// has (the single-tenant setup, and accounts stored before sender lists existed).
    pub senders: Option<Vec<String>>,
    /// Consecutive failed verifies at one destination (across OTPs) after which sends to it
    /// answer 478 until a verify succeeds, the operator clears them, or a day passes.
    pub max_failed_verifies: u32,
    /// The routing table (`routing`): empty, each channel's deployment route.
    pub routes: Vec<RouteRule>,
    /// Providers of the account's own (`providers`), routes its table may name.
    pub providers: Vec<AccountProvider>,
    /// The relying party its passkey factors are registered with; None: no passkeys.
    pub passkeys: Option<PasskeySettings>,
}

/// The default and highest budget of failed verifies per destination (NIST SP 800-63B's
/// limit on consecutive failed attempts at one authenticator).
pub const MAX_FAILED_VERIFIES: u32 = 100;

impl Default for AccountPolicy {
    fn default() -> Self {
        AccountPolicy {
            sms_countries: None,
            call_countries: None,
            whatsapp_countries: None,
            guard: GuardSettings::default(),
            test_destinations: vec![],
            callback: None,
            webhook_secret: None,
            senders: None,
            max_failed_verifies: MAX_FAILED_VERIFIES,
            routes: Vec::new(),
            providers: Vec::new(),
            passkeys: None,
        }
    }
}

/// Most senders in one account's list.
pub const MAX_SENDERS: usize = 100;

/// The sender rules of an account's list, each one string: `*` (any sender the deployment
/// has), an email address (`security@tenant-a.com`), an email domain (`@tenant-a.com`: any
/// address there), an origination number (E.164), or an SMS sender ID (1 to 11 letters and
/// digits, at least one letter). Addresses, domains and sender IDs compare case-insensitively.
pub mod senders {
    use super::{is_email, phone, Channel, Error, Result, MAX_SENDERS};

    /// One rule in its stored form (numbers in E.164, addresses and domains in lower case), or
    /// 400 naming `param`.
    pub fn rule(raw: &str, param: &'static str) -> Result<String> {
        let r = raw.trim();
        if r == "*" {
            return Ok(r.to_owned());
        }
        if let Some(domain) = r.strip_prefix('@') {
            if is_email(&format!("x@{domain}")) {
                return Ok(r.to_ascii_lowercase());
            }
        } else if r.contains('@') {
            if is_email(r) {
                return Ok(r.to_ascii_lowercase());
            }
        } else if r.starts_with('+') || (!r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())) {
            if let Ok(p) = phone::parse(r, param) {
                return Ok(p.e164);
            }
        } else if is_sender_id(r) {
            return Ok(r.to_owned());
        }
        Err(Error::invalid(
            param,
            "each sender must be *, an email address, @domain, an E.164 number or a sender ID of 1 to 11 letters and digits",
        ))
    }

    /// A list of rules, each checked, without repeats.
    pub fn list(raw: &[String], param: &'static str) -> Result<Vec<String>> {
        if raw.len() > MAX_SENDERS {
            return Err(Error::invalid(param, format!("at most {MAX_SENDERS} senders")));
        }
        let mut out: Vec<String> = Vec::with_capacity(raw.len());
        for r in raw {
            let r = rule(r, param)?;
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&r)) {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn is_sender_id(s: &str) -> bool {
        (1..=11).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric())
            && s.bytes().any(|b| b.is_ascii_alphabetic())
    }

    /// Whether `rules` let a send on `channel` name `from`.
    pub fn allow(rules: &[String], channel: Channel, from: &str) -> bool {
        let from = from.trim();
        rules.iter().any(|r| {
            r == "*"
                || match channel {
                    Channel::Email => match r.strip_prefix('@') {
                        Some(domain) => from.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
                        None => r.contains('@') && r.eq_ignore_ascii_case(from),
                    },
                    // A factor names no sender.
                    Channel::Totp | Channel::Passkey => false,
                    Channel::Sms | Channel::Call | Channel::Whatsapp => {
                        if r.starts_with('+') {
                            phone::parse(from, "from").is_ok_and(|p| p.e164 == *r)
                        } else {
                            !r.contains('@') && r.eq_ignore_ascii_case(from)
                        }
                    }
                }
        })
    }

    /// Whether a parent whose list is `parent` (None: any) may grant `rule` to a sub-account.
    pub fn covers(parent: Option<&[String]>, rule: &str) -> bool {
        let Some(parent) = parent else { return true };
        if parent.iter().any(|p| p == "*") {
            return true;
        }
        if rule == "*" {
            return false;
        }
        if rule.starts_with('@') {
            return parent.iter().any(|p| p.eq_ignore_ascii_case(rule));
        }
        if rule.contains('@') {
            return allow(parent, Channel::Email, rule);
        }
        allow(parent, Channel::Sms, rule)
    }
}

/// A sealed webhook secret (`callbacks::seal_secret`). `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub Vec<u8>);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// The pumping guard: when, over the last hour, an account's sends to one country reach
/// `min_sends` and fewer than `min_verify_percent` % of them were verified, further sends
/// there are refused (477) until the rate recovers (see `domain::guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    pub enabled: bool,
    pub min_sends: u32,
    pub min_verify_percent: u8,
    /// The same rule over the account's sends to every country together, from this many in
    /// the hour (so spreading over countries cannot stay under every threshold).
    pub account_min_sends: u32,
}

impl GuardSettings {
    pub const DEFAULT_MIN_SENDS: u32 = 100;
    pub const DEFAULT_MIN_VERIFY_PERCENT: u8 = 20;
    pub const DEFAULT_ACCOUNT_MIN_SENDS: u32 = 1000;
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            enabled: true,
            min_sends: Self::DEFAULT_MIN_SENDS,
            min_verify_percent: Self::DEFAULT_MIN_VERIFY_PERCENT,
            account_min_sends: Self::DEFAULT_ACCOUNT_MIN_SENDS,
        }
    }
}

/// The WebAuthn relying party of an account's passkeys: the domain they are bound to and the
/// web origins a ceremony may come from (its host is the domain or under it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeySettings {
    /// What authenticators show as its name too (the WebAuthn library names the party by it).
    pub rp_id: String,
    pub origins: Vec<String>,
}

/// Most origins one relying party may list.
pub const MAX_PASSKEY_ORIGINS: usize = 10;

impl PasskeySettings {
    /// Checked settings, or a 400 naming `passkeys`.
    pub fn new(rp_id: &str, origins: &[String]) -> Result<Self> {
        let bad = |reason: String| Error::invalid("passkeys", reason);
        let rp_id = rp_id.trim().to_ascii_lowercase();
        if !is_rp_domain(&rp_id) {
            return Err(bad("rpId must be a domain name (localhost, example.com), not an address".into()));
        }
        if origins.is_empty() || origins.len() > MAX_PASSKEY_ORIGINS {
            return Err(bad(format!("origins must list 1 to {MAX_PASSKEY_ORIGINS} origins")));
        }
        let mut out: Vec<String> = Vec::with_capacity(origins.len());
        for raw in origins {
            let origin = web_origin(raw, &rp_id).ok_or_else(|| {
                bad(format!(
                    "each origin must be https://host[:port] (http only for localhost) whose host is {rp_id} or under it"
                ))
            })?;
            if !out.contains(&origin) {
                out.push(origin);
            }
        }
        Ok(PasskeySettings { rp_id, origins: out })
    }

    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({ "rpId": self.rp_id, "origins": self.origins })
    }
}

/// A domain name a relying party can be: letters, digits and hyphens in dot-separated labels,
/// not an IP address (WebAuthn takes none).
fn is_rp_domain(d: &str) -> bool {
    d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && !d.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// `raw` as a browser serializes an origin (`scheme://host[:port]`, no default port), when it
/// is one a passkey of `rp_id` may be used from.
fn web_origin(raw: &str, rp_id: &str) -> Option<String> {
    let raw = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = raw.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
        None => (rest, None),
    };
    let local = host == "localhost" || host.ends_with(".localhost");
    let secure = scheme == "https" || (scheme == "http" && local);
    let under = host == rp_id || host.ends_with(&format!(".{rp_id}"));
    if !secure || !under || !is_rp_domain(host) {
        return None;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// A destination that receives nothing: a send to it costs nothing and its OTP verifies with a
/// fixed code (for app-store reviewers and CI). The code is kept sealed, bound to the account
/// and destination; the OTP stores its HMAC like any other code.
#[derive(Clone, PartialEq, Eq)]
pub struct TestDestination {
    /// E.164 for a number, lower case for an address.
    pub to: String,
    pub sealed_code: Vec<u8>,
}

impl std::fmt::Debug for TestDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDestination").field("to", &self.to).finish_non_exhaustive()
    }
}

impl TestDestination {
    pub fn new(keys: &Keys, account_sid: &str, to: &str, code: &str) -> Result<Self> {
        let to = canonical_destination(to).ok_or_else(|| {
            Error::invalid("testNumbers", "each `to` must be a valid phone number or an email address")
        })?;
        let len = code.len();
        if !(usize::from(MIN_CODE_LEN)..=usize::from(MAX_CODE_LEN)).contains(&len)
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::invalid("testNumbers", "each `code` must be 4 to 10 digits"));
        }
        let sealed_code = keys.seal(Purpose::TestCode, code.as_bytes(), &Self::aad(account_sid, &to));
        Ok(TestDestination { to, sealed_code })
    }

    /// The fixed code (None if the sealed copy does not open: another key, or a bug).
    pub fn code(&self, keys: &Keys, account_sid: &str) -> Option<Code> {
        let bytes = keys.open(Purpose::TestCode, &self.sealed_code, &Self::aad(account_sid, &self.to)).ok()?;
        String::from_utf8(bytes).ok().map(Code::new)
    }

    /// This destination with its code sealed again under the current key, when the key it is
    /// under is `retiring` (None: it is under another key).
    pub fn resealed(&self, keys: &Keys, account_sid: &str, retiring: u8) -> Result<Option<Self>> {
        let aad = Self::aad(account_sid, &self.to);
        let opened = keys.open_any(Purpose::TestCode, &self.sealed_code, &aad)?;
        Ok((opened.kid == retiring).then(|| TestDestination {
            to: self.to.clone(),
            sealed_code: keys.seal(Purpose::TestCode, &opened.plaintext, &aad),
        }))
    }

    fn aad(account_sid: &str, to: &str) -> String {
        format!("test-destination|{account_sid}|{to}")
    }
}

/// A destination in the form sends store it: numbers in E.164, addresses in lower case.
fn canonical_destination(to: &str) -> Option<String> {
    if to.contains('@') {
        is_email(to).then(|| to.to_ascii_lowercase())
    } else {
        phone::parse(to, "to").ok().map(|p| p.e164)
    }
}

impl AccountPolicy {
    /// Whether `channel` may deliver to `country` (email has no country and no geo list).
    pub fn allows(&self, channel: Channel, country: &str) -> bool {
        let list = match channel {
            Channel::Sms => &self.sms_countries,
            Channel::Call => &self.call_countries,
            Channel::Whatsapp => &self.whatsapp_countries,
            Channel::Email | Channel::Totp | Channel::Passkey => return true,
        };
        list.as_ref().is_none_or(|l| l.iter().any(|c| c == country))
    }

    /// Whether a send on `channel` may name `from` as its sender.
    pub fn allows_sender(&self, channel: Channel, from: &str) -> bool {
        self.senders.as_deref().is_none_or(|rules| senders::allow(rules, channel, from))
    }

    /// The policy in the JSON shape `PolicyUpdate` takes, test destinations without their codes
    /// (what the dev server and the admin command show).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "allowedCountries": {
                "sms": self.sms_countries,
                "call": self.call_countries,
                "whatsapp": self.whatsapp_countries,
            },
            "pumpingGuard": {
                "enabled": self.guard.enabled,
                "minSends": self.guard.min_sends,
                "minVerifyPercent": self.guard.min_verify_percent,
                "accountMinSends": self.guard.account_min_sends,
            },
            "testNumbers": self.test_destinations.iter().map(|t| t.to.clone()).collect::<Vec<_>>(),
            "callbackUrl": self.callback.as_ref().map(|c| c.url.clone()),
            "callbackMethod": self.callback.as_ref().map(|c| c.method.as_str()),
            "webhookSecret": if self.webhook_secret.is_some() { "set" } else { "none" },
            "senders": self.senders.as_ref().map_or_else(|| serde_json::json!(["*"]), |l| serde_json::json!(l)),
            "maxFailedVerifies": self.max_failed_verifies,
            "routes": routing::view(&self.routes),
            "providers": providers::view(&self.providers),
            "passkeys": self.passkeys.as_ref().map(PasskeySettings::view),
        })
    }

    /// The test destination `to` (already canonical for phone numbers), if it is one.
    pub fn test_destination(&self, to: &str) -> Option<&TestDestination> {
        self.test_destinations.iter().find(|t| t.to == to || (to.contains('@') && t.to.eq_ignore_ascii_case(to)))
    }
}

/// A change of policy as the dev server and the admin command take it (JSON): every field is
/// optional and replaces only its part; `null` in `allowedCountries.sms`/`.call` means "all".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyUpdate {
    #[serde(default)]
    pub allowed_countries: Option<CountriesUpdate>,
    #[serde(default)]
    pub pumping_guard: Option<GuardUpdate>,
    /// Replaces the whole list.
    #[serde(default)]
    pub test_numbers: Option<Vec<TestNumberInput>>,
    /// Absent: unchanged; `null`: no account callback; a URL: events go there.
    #[serde(default, with = "double_option")]
    pub callback_url: Option<Option<String>>,
    /// `GET` or `POST` (the default), with `callbackUrl`.
    #[serde(default)]
    pub callback_method: Option<String>,
    /// `true`: a new webhook secret replaces the old one (answered once).
    #[serde(default)]
    pub rotate_webhook_secret: bool,
    /// Replaces the whole list of senders (`["*"]`: any sender the deployment has).
    #[serde(default)]
    pub senders: Option<Vec<String>>,
    /// 1 to 100: consecutive failed verifies per destination before its sends answer 478.
    #[serde(default)]
    pub max_failed_verifies: Option<u32>,
    /// Replaces the whole routing table (`null` or `{}`: each channel's deployment route).
    #[serde(default, with = "double_option")]
    pub routes: Option<Option<RoutesInput>>,
    /// Replaces the account's providers (`null` or `[]`: none); one kept by name keeps its
    /// secret, a new one gets one (answered once).
    #[serde(default, with = "double_option")]
    pub providers: Option<Option<Vec<ProviderInput>>>,
    /// The name of one of the account's providers: a new secret replaces its old one.
    #[serde(default)]
    pub rotate_provider_secret: Option<String>,
    /// The relying party of the account's passkeys (`null`: none, so no passkey factor can be
    /// created; those made before stay but verify nothing).
    #[serde(default, with = "double_option")]
    pub passkeys: Option<Option<PasskeysInput>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasskeysInput {
    pub rp_id: String,
    pub origins: Vec<String>,
}

/// A policy after an update, and the webhook secret the update made, if it made one: shown
/// this once, stored only sealed.
#[derive(Debug)]
pub struct PolicyChange {
    pub policy: AccountPolicy,
    pub webhook_secret: Option<WebhookSecret>,
    /// The secrets of the providers the update added or rotated.
    pub provider_secrets: Vec<ProviderSecret>,
}

/// A webhook secret in clear, to show once. `Debug` shows nothing of it.
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountriesUpdate {
    /// Absent: unchanged; `null`: every country; a list: only those.
    #[serde(default, with = "double_option")]
    pub sms: Option<Option<Vec<String>>>,
    #[serde(default, with = "double_option")]
    pub call: Option<Option<Vec<String>>>,
    #[serde(default, with = "double_option")]
    pub whatsapp: Option<Option<Vec<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardUpdate {
    pub enabled: Option<bool>,
    pub min_sends: Option<u32>,
    pub min_verify_percent: Option<u8>,
    pub account_min_sends: Option<u32>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestNumberInput {
    pub to: String,
    pub code: String,
}

impl std::fmt::Debug for TestNumberInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNumberInput").field("to", &self.to).finish_non_exhaustive()
    }
}

/// `Option<Option<T>>` that tells an absent field (None) from `null` (Some(None)).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

impl PolicyUpdate {
    /// `policy` with this update applied (callback URLs as a deployment takes them); 400 naming
    /// the part that is wrong. A webhook secret it makes is lost: use `apply_with` for those.
    pub fn apply(self, keys: &Keys, account_sid: &str, policy: AccountPolicy) -> Result<AccountPolicy> {
        self.apply_with(keys, account_sid, policy, UrlRules::Public).map(|c| c.policy)
    }

    /// `apply`, taking callback URLs by `rules`, and answering the webhook secret it made: on
    /// `rotateWebhookSecret`, or with the first callback URL of an account that has none.
    pub fn apply_with(
        self,
        keys: &Keys,
        account_sid: &str,
        mut policy: AccountPolicy,
        rules: UrlRules,
    ) -> Result<PolicyChange> {
        match (self.callback_url, self.callback_method.as_deref()) {
            (Some(Some(url)), method) => {
                policy.callback = Some(callbacks::target(&url, method, rules, "callbackUrl", "callbackMethod")?);
            }
            (Some(None), _) => policy.callback = None,
            (None, Some(method)) => match &mut policy.callback {
                Some(c) => c.method = CallbackMethod::parse(method, "callbackMethod")?,
                None => return Err(Error::invalid("callbackMethod", "needs callbackUrl")),
            },
            (None, None) => {}
        }
        let mut webhook_secret = None;
        if self.rotate_webhook_secret || (policy.callback.is_some() && policy.webhook_secret.is_none()) {
            let secret = callbacks::new_secret();
            policy.webhook_secret = Some(SealedSecret(callbacks::seal_secret(keys, account_sid, &secret)));
            webhook_secret = Some(WebhookSecret(secret));
        }
        if let Some(c) = self.allowed_countries {
            if let Some(sms) = c.sms {
                policy.sms_countries = sms.map(|l| countries(&l)).transpose()?;
            }
            if let Some(call) = c.call {
                policy.call_countries = call.map(|l| countries(&l)).transpose()?;
            }
            if let Some(whatsapp) = c.whatsapp {
                policy.whatsapp_countries = whatsapp.map(|l| countries(&l)).transpose()?;
            }
        }
        if let Some(g) = self.pumping_guard {
            policy.guard.enabled = g.enabled.unwrap_or(policy.guard.enabled);
            policy.guard.min_sends = g.min_sends.unwrap_or(policy.guard.min_sends);
            policy.guard.account_min_sends = g.account_min_sends.unwrap_or(policy.guard.account_min_sends);
            if policy.guard.account_min_sends == 0 {
                return Err(Error::invalid("pumpingGuard", "accountMinSends must be at least 1"));
            }
            if let Some(p) = g.min_verify_percent {
                if p > 100 {
                    return Err(Error::invalid("pumpingGuard", "minVerifyPercent must be 0 to 100"));
                }
                policy.guard.min_verify_percent = p;
            }
            if policy.guard.min_sends == 0 {
                return Err(Error::invalid("pumpingGuard", "minSends must be at least 1"));
            }
        }
        if let Some(max) = self.max_failed_verifies {
            if !(1..=MAX_FAILED_VERIFIES).contains(&max) {
                return Err(Error::invalid("maxFailedVerifies", format!("must be 1 to {MAX_FAILED_VERIFIES}")));
            }
            policy.max_failed_verifies = max;
        }
        let (list, provider_secrets) = providers::apply(
            keys,
            account_sid,
            std::mem::take(&mut policy.providers),
            self.providers,
            self.rotate_provider_secret.as_deref(),
            rules,
        )?;
        policy.providers = list;
        if let Some(passkeys) = self.passkeys {
            policy.passkeys = passkeys.map(|p| PasskeySettings::new(&p.rp_id, &p.origins)).transpose()?;
        }
        if let Some(table) = self.routes {
            policy.routes = table.map(RoutesInput::rules).transpose()?.unwrap_or_default();
        }
        if let Some(list) = self.senders {
            let list = senders::list(&list, "senders")?;
            policy.senders = if list.iter().any(|r| r == "*") { None } else { Some(list) };
        }
        if let Some(list) = self.test_numbers {
            if list.len() > MAX_TEST_DESTINATIONS {
                return Err(Error::invalid("testNumbers", format!("at most {MAX_TEST_DESTINATIONS}")));
            }
            let mut out: Vec<TestDestination> = Vec::with_capacity(list.len());
            for t in list {
                let t = TestDestination::new(keys, account_sid, &t.to, &t.code)?;
                if out.iter().any(|o| o.to == t.to) {
                    return Err(Error::invalid("testNumbers", "each destination once"));
                }
                out.push(t);
            }
            policy.test_destinations = out;
        }
        Ok(PolicyChange { policy, webhook_secret, provider_secrets })
    }
}

fn countries(list: &[String]) -> Result<Vec<String>> {
    if list.len() > MAX_COUNTRIES {
        return Err(Error::invalid("allowedCountries", format!("at most {MAX_COUNTRIES} countries")));
    }
    let mut out: Vec<String> =
        list.iter().map(|c| phone::country_code(c, "allowedCountries")).collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// How many times `update_policy_with` applies an update to the policy as read before it
/// gives up (`Error::Contended`, 503) when other changes keep winning.
pub const POLICY_TRIES: u32 = 8;

/// Apply `update` to the policy of account `sid` (callback URLs taken by `rules`) and store
/// it; answers the new policy and the webhook secret it made, if any. `Error::NotFound` when
/// there is no such account. The whole policy is written at once (what the update left alone
/// is written back as read), only over the version read: when another change was stored
/// meanwhile (or the read came from a stale cache), the account is read again as stored and
/// the update applied to that, up to `POLICY_TRIES` times, so concurrent changes of different
/// parts all stay. Each try makes its own secrets: those answered are the ones stored.
pub async fn update_policy_with(
    store: &dyn AccountStore,
    keys: &Keys,
    sid: &str,
    update: PolicyUpdate,
    rules: UrlRules,
) -> Result<PolicyChange> {
    let mut account: Account = store.get_account(sid).await?.ok_or(Error::NotFound)?;
    let mut attempt = 0;
    loop {
        let change = applied(store, keys, &account, update.clone(), rules).await?;
        match store.set_policy(&account, &change.policy).await {
            Ok(()) => return Ok(change),
            Err(Error::Contended) if attempt + 1 < POLICY_TRIES => {
                backoff(attempt).await;
                attempt += 1;
                account = store.get_account_fresh(sid).await?.ok_or(Error::NotFound)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `update` applied to `account`'s policy, checked (nothing stored).
async fn applied(
    store: &dyn AccountStore,
    keys: &Keys,
    account: &Account,
    update: PolicyUpdate,
    rules: UrlRules,
) -> Result<PolicyChange> {
    let granted = update.senders.is_some();
    let change = update.apply_with(keys, &account.sid, account.policy.clone(), rules)?;
    // A sub-account is granted at most its parent's senders.
    if let (true, Some(parent)) = (granted, account.ancestors.last()) {
        let parent = store.get_account(parent).await?.ok_or(Error::NotFound)?;
        let wanted = change.policy.senders.clone().unwrap_or_else(|| vec!["*".to_owned()]);
        if let Some(r) = wanted.iter().find(|r| !senders::covers(parent.policy.senders.as_deref(), r)) {
            return Err(Error::invalid("senders", format!("{r} is not a sender of the parent account")));
        }
    }
    Ok(change)
}

/// A short random pause before try `attempt + 1`, so racing changes spread out.
pub(crate) async fn backoff(attempt: u32) {
    let cap_ms = (5u64 << attempt.min(5)).min(100);
    let ms = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=cap_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// `update_policy_with` as a deployment takes callback URLs, answering the policy.
pub async fn update_policy(
    store: &dyn AccountStore,
    keys: &Keys,
    sid: &str,
    update: PolicyUpdate,
) -> Result<AccountPolicy> {
    Ok(update_policy_with(store, keys, sid, update, UrlRules::Public).await?.policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(json: &str) -> PolicyUpdate {
        serde_json::from_str(json).unwrap()
    }

    fn passkeys(rp_id: &str, origins: &[&str]) -> Result<PasskeySettings> {
        PasskeySettings::new(rp_id, &origins.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn a_relying_party_is_a_domain_used_from_secure_origins_under_it() {
        // Origins are kept as browsers write them: lower case, no default port, no slash
        let p = passkeys("Example.COM", &["https://App.example.com:443/", "https://example.com:8443"]).unwrap();
        assert_eq!(p.rp_id, "example.com");
        assert_eq!(p.origins, ["https://app.example.com", "https://example.com:8443"]);
        // http only for localhost
        assert_eq!(passkeys("localhost", &["http://localhost:3000"]).unwrap().origins, ["http://localhost:3000"]);
        for (rp, origins) in [
            ("127.0.0.1", &["https://127.0.0.1"][..]),
            ("example.com", &["http://app.example.com"][..]),
            ("example.com", &["https://example.org"][..]),
            ("example.com", &["https://badexample.com"][..]),
            ("example.com", &["example.com"][..]),
            ("example.com", &[][..]),
            ("exa mple.com", &["https://example.com"][..]),
        ] {
            let refused = passkeys(rp, origins);
            assert!(
                matches!(&refused, Err(Error::InvalidParameter { param, .. }) if param == "passkeys"),
                "{rp} {origins:?}: {refused:?}"
            );
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("https://a{i}.example.com")).collect();
        assert!(PasskeySettings::new("example.com", &eleven).is_err());
    }

    #[test]
    fn by_default_every_country_is_allowed_on_every_channel() {
        let p = AccountPolicy::default();
        assert!(p.allows(Channel::Sms, "US") && p.allows(Channel::Call, "JP"));
        assert_eq!(
            p.guard,
            GuardSettings { enabled: true, min_sends: 100, min_verify_percent: 20, account_min_sends: 1000 }
        );
    }

    #[test]
    fn allow_lists_are_per_channel_and_null_means_all_again() {
        let keys = Keys::random();
        let p = update(r#"{"allowedCountries":{"sms":["us","GB","gb"]}}"#)
            .apply(&keys, "AC1", AccountPolicy::default())
            .unwrap();
        assert_eq!(p.sms_countries, Some(vec!["GB".to_owned(), "US".to_owned()]));
        assert!(p.allows(Channel::Sms, "GB") && !p.allows(Channel::Sms, "IN"));
        assert!(p.allows(Channel::Call, "IN"), "call keeps its own list (all)");
        assert!(p.allows(Channel::Email, "IN"));
        let p = update(r#"{"allowedCountries":{"sms":null}}"#).apply(&keys, "AC1", p).unwrap();
        assert!(p.allows(Channel::Sms, "IN"));
        let none = update(r#"{"allowedCountries":{"call":[]}}"#).apply(&keys, "AC1", p).unwrap();
        assert!(!none.allows(Channel::Call, "US"), "an empty list allows nothing");
    }

    #[test]
    fn bad_policy_input_names_the_part() {
        let keys = Keys::random();
        let err = |json: &str| update(json).apply(&keys, "AC1", AccountPolicy::default()).unwrap_err();
        assert!(matches!(err(r#"{"allowedCountries":{"sms":["USA"]}}"#),
            Error::InvalidParameter { param, .. } if param == "allowedCountries"));
        assert!(matches!(err(r#"{"pumpingGuard":{"minVerifyPercent":101}}"#),
            Error::InvalidParameter { param, .. } if param == "pumpingGuard"));
        assert!(matches!(err(r#"{"testNumbers":[{"to":"+15551234567","code":"123456"}]}"#),
            Error::InvalidParameter { param, .. } if param == "testNumbers"));
        assert!(matches!(err(r#"{"testNumbers":[{"to":"+14155550100","code":"12"}]}"#),
            Error::InvalidParameter { param, .. } if param == "testNumbers"));
        assert!(serde_json::from_str::<PolicyUpdate>(r#"{"allowedCountry":{}}"#).is_err());
    }

    #[test]
    fn test_codes_are_sealed_to_their_account_and_destination() {
        let keys = Keys::random();
        let t = TestDestination::new(&keys, "AC1", "14155550100", "246810").unwrap();
        assert_eq!(t.to, "+14155550100", "stored as sends store numbers");
        assert!(!t.sealed_code.windows(6).any(|w| w == b"246810"), "never in clear");
        assert_eq!(t.code(&keys, "AC1").unwrap().reveal(), "246810");
        assert!(t.code(&keys, "AC2").is_none());
        let p = AccountPolicy { test_destinations: vec![t], ..Default::default() };
        assert!(p.test_destination("+14155550100").is_some());
        assert!(p.test_destination("+14155550101").is_none());
        assert!(!format!("{p:?}").contains("sealed"), "Debug leaves the sealed code out");
    }
}
