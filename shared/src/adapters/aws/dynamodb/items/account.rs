//! Accounts: an account's item (and its copies under its ancestors), its policy in attributes.

use serde::{Deserialize, Serialize};

use super::{bytes, corrupt, gsi1sk, opt_bytes, Key, ACCOUNTS_GSI1PK};
use crate::domain::{
    account::Account,
    callbacks::{CallbackMethod, CallbackTarget},
    error::{Error, Result},
    otp::Channel,
    policy::{AccountPolicy, GuardSettings, PasskeySettings, SealedSecret, TestDestination, MAX_FAILED_VERIFIES},
    providers::AccountProvider,
    routing::RouteRule,
    time::Millis,
};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccountItem {
    pub pk: String,
    pub sk: String,
    pub sid: String,
    #[serde(with = "bytes")]
    pub token_hash: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub ancestors: Vec<String>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    pub created_ms: Millis,
    #[serde(flatten)]
    pub policy: PolicyItem,
    /// `Account::policy_version`; absent: 0 (never replaced, or stored before versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_version: u64,
    /// `ACCOUNTS_GSI1PK` / `gsi1sk(created_ms, sid)` on the account's own item; absent on copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
}

/// An account's policy, as attributes of its item (all absent for the default policy, so
/// accounts written before it read back with it). `set_policy` rewrites exactly these.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PolicyItem {
    /// Absent: every country; a list (possibly empty): only those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp_countries: Option<Vec<String>>,
    /// Absent: the default settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardSettingsItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_destinations: Vec<TestDestinationItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_method: Option<CallbackMethod>,
    /// Sealed (`callbacks::seal_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub webhook_secret: Option<Vec<u8>>,
    /// Absent: any sender the deployment has; a list (possibly empty): only those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    /// Absent: the default (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_verifies: Option<u32>,
    /// Absent: no routing table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRuleItem>,
    /// Absent: no provider of the account's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderItem>,
    /// Absent: no passkeys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkeys: Option<PasskeysItem>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PasskeysItem {
    pub rp_id: String,
    pub origins: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProviderItem {
    pub name: String,
    pub url: String,
    /// Sealed (`domain::providers`).
    #[serde(with = "bytes")]
    pub secret: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RouteRuleItem {
    pub channel: String,
    pub country: String,
    pub routes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PolicyItem {
    /// Every attribute a policy may have (what `set_policy` sets or removes).
    pub const ATTRIBUTES: [&'static str; 13] = [
        "sms_countries",
        "call_countries",
        "whatsapp_countries",
        "guard",
        "test_destinations",
        "callback_url",
        "callback_method",
        "webhook_secret",
        "senders",
        "max_failed_verifies",
        "routes",
        "providers",
        "passkeys",
    ];
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GuardSettingsItem {
    pub enabled: bool,
    pub min_sends: u32,
    pub min_verify_percent: u8,
    /// Absent on items written before the account-wide window: its default.
    #[serde(default = "default_account_min_sends")]
    pub account_min_sends: u32,
}

fn default_account_min_sends() -> u32 {
    GuardSettings::DEFAULT_ACCOUNT_MIN_SENDS
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TestDestinationItem {
    pub to: String,
    #[serde(with = "bytes")]
    pub sealed_code: Vec<u8>,
}

impl From<&AccountPolicy> for PolicyItem {
    fn from(p: &AccountPolicy) -> Self {
        let g = p.guard;
        PolicyItem {
            sms_countries: p.sms_countries.clone(),
            call_countries: p.call_countries.clone(),
            whatsapp_countries: p.whatsapp_countries.clone(),
            guard: (g != GuardSettings::default()).then_some(GuardSettingsItem {
                enabled: g.enabled,
                min_sends: g.min_sends,
                min_verify_percent: g.min_verify_percent,
                account_min_sends: g.account_min_sends,
            }),
            test_destinations: p
                .test_destinations
                .iter()
                .map(|t| TestDestinationItem { to: t.to.clone(), sealed_code: t.sealed_code.clone() })
                .collect(),
            callback_url: p.callback.as_ref().map(|c| c.url.clone()),
            callback_method: p.callback.as_ref().map(|c| c.method),
            webhook_secret: p.webhook_secret.as_ref().map(|s| s.0.clone()),
            senders: p.senders.clone(),
            max_failed_verifies: (p.max_failed_verifies != MAX_FAILED_VERIFIES).then_some(p.max_failed_verifies),
            routes: p
                .routes
                .iter()
                .map(|r| RouteRuleItem {
                    channel: r.channel.as_str().to_owned(),
                    country: r.country.clone(),
                    routes: r.routes.clone(),
                })
                .collect(),
            providers: p
                .providers
                .iter()
                .map(|p| ProviderItem { name: p.name.clone(), url: p.url.clone(), secret: p.secret.0.clone() })
                .collect(),
            passkeys: p.passkeys.as_ref().map(|p| PasskeysItem { rp_id: p.rp_id.clone(), origins: p.origins.clone() }),
        }
    }
}

impl From<PolicyItem> for AccountPolicy {
    fn from(i: PolicyItem) -> Self {
        AccountPolicy {
            sms_countries: i.sms_countries,
            call_countries: i.call_countries,
            whatsapp_countries: i.whatsapp_countries,
            guard: i.guard.map_or_else(GuardSettings::default, |g| GuardSettings {
                enabled: g.enabled,
                min_sends: g.min_sends,
                min_verify_percent: g.min_verify_percent,
                account_min_sends: g.account_min_sends,
            }),
            test_destinations: i
                .test_destinations
                .into_iter()
                .map(|t| TestDestination { to: t.to, sealed_code: t.sealed_code })
                .collect(),
            callback: i
                .callback_url
                .map(|url| CallbackTarget { url, method: i.callback_method.unwrap_or(CallbackMethod::Post) }),
            webhook_secret: i.webhook_secret.map(SealedSecret),
            senders: i.senders,
            max_failed_verifies: i.max_failed_verifies.unwrap_or(MAX_FAILED_VERIFIES),
            // A rule of a channel this build does not know is left out rather than fail the
            // account's every request.
            routes: i
                .routes
                .into_iter()
                .filter_map(|r| {
                    Some(RouteRule { channel: Channel::parse(&r.channel)?, country: r.country, routes: r.routes })
                })
                .collect(),
            providers: i
                .providers
                .into_iter()
                .map(|p| AccountProvider { name: p.name, url: p.url, secret: SealedSecret(p.secret) })
                .collect(),
            passkeys: i.passkeys.map(|p| PasskeySettings { rp_id: p.rp_id, origins: p.origins }),
        }
    }
}

impl AccountItem {
    /// The account under `key`: its own (`Key::account`) or an ancestor's copy.
    pub fn new(key: Key, a: &Account) -> Self {
        let own = key == Key::account(&a.sid);
        AccountItem {
            gsi1pk: own.then(|| ACCOUNTS_GSI1PK.to_owned()),
            gsi1sk: own.then(|| gsi1sk(a.created_ms, &a.sid)),
            pk: key.pk,
            sk: key.sk,
            sid: a.sid.clone(),
            token_hash: a.token_hash.clone(),
            email: a.email.clone(),
            ancestors: a.ancestors.clone(),
            suspended: a.suspended,
            allowed_ips: a.allowed_ips.iter().map(ToString::to_string).collect(),
            created_ms: a.created_ms,
            policy: PolicyItem::from(&a.policy),
            policy_version: a.policy_version,
        }
    }
}

impl TryFrom<AccountItem> for Account {
    type Error = Error;
    fn try_from(i: AccountItem) -> Result<Self> {
        let allowed_ips =
            i.allowed_ips.iter().map(|ip| ip.parse().or_else(|_| corrupt("allowed_ips")())).collect::<Result<_>>()?;
        Ok(Account {
            sid: i.sid,
            token_hash: i.token_hash,
            email: i.email,
            ancestors: i.ancestors,
            suspended: i.suspended,
            allowed_ips,
            created_ms: i.created_ms,
            policy: i.policy.into(),
            policy_version: i.policy_version,
        })
    }
}
