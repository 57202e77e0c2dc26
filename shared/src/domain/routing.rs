//! An account's routing table: per channel and per destination country (an ISO code, or `*`
//! for any other), the ordered routes its messages take. A route is a way out of the
//! deployment by name: `sns`, `end-user-messaging` (SMS and calls through AWS End User
//! Messaging), `end-user-messaging-social` (WhatsApp), `ses` (email), a provider of the
//! customer's own by its name, `outbox` on the dev server.
//!
//! Only data and its rules here: the dispatcher (`adapters::router`) walks the list.
//! Kept in the account's policy, so a send reads nothing more for it.

use serde::Deserialize;

use super::{
    error::{Error, Result},
    otp::Channel,
    phone,
};

/// Most rules (channel × country) in one table: it lives in the account item.
pub const MAX_RULES: usize = 64;
/// Most routes one rule lists.
pub const MAX_ROUTES: usize = 5;
/// The longest route name (a provider's name has the same bound).
pub const MAX_ROUTE_NAME: usize = 64;

/// The rule for one channel and one country (`*`: any country no other rule of the channel
/// names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub channel: Channel,
    pub country: String,
    pub routes: Vec<String>,
}

/// The routes for a message on `channel` to `country` (None: an email, or a number of no
/// known country): the rule of that country, else the channel's `*` rule; empty when the table
/// has neither (the deployment's own route then).
pub fn routes_for<'a>(rules: &'a [RouteRule], channel: Channel, country: Option<&str>) -> &'a [String] {
    let of = |c: &str| rules.iter().find(|r| r.channel == channel && r.country == c);
    country.and_then(of).or_else(|| of("*")).map_or(&[], |r| r.routes.as_slice())
}

/// The names of the deployment's own routes (`adapters::router`, `adapters::outbox`): a
/// provider, the deployment's or an account's, takes none of them.
pub const BUILT_IN: [&str; 6] =
    ["sns", "end-user-messaging", "end-user-messaging-social", "ses", "outbox", "outbox-backup"];

/// Whether `name` can name a route: 1 to 64 letters, digits, `-` or `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROUTE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The table as a policy update gives it: `{"sms": {"US": ["end-user-messaging", "sns"],
/// "*": ["sns"]}}`. Rules come out ordered by channel, then country (`*` last).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RoutesInput(pub std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>);

impl RoutesInput {
    /// The rules, or 400 naming `routes` with what is wrong.
    pub fn rules(self) -> Result<Vec<RouteRule>> {
        let bad = |why: String| Error::invalid("routes", why);
        let mut rules = Vec::new();
        for (channel, countries) in self.0 {
            let ch = Channel::parse(&channel).ok_or_else(|| bad(format!("{channel} is not a channel")))?;
            let mut of_channel: Vec<RouteRule> = Vec::new();
            for (country, routes) in countries {
                let country = if country == "*" {
                    country
                } else {
                    phone::country_code(&country, "routes")
                        .map_err(|_| bad(format!("{country} is not an ISO country code or *")))?
                };
                if routes.is_empty() || routes.len() > MAX_ROUTES {
                    return Err(bad(format!("{channel}.{country} must list 1 to {MAX_ROUTES} routes")));
                }
                if let Some(r) = routes.iter().find(|r| !valid_name(r)) {
                    return Err(bad(format!("{r:?} is not a route name (letters, digits, - and _)")));
                }
                if routes.iter().enumerate().any(|(i, r)| routes[..i].contains(r)) {
                    return Err(bad(format!("{channel}.{country} lists a route twice")));
                }
                if of_channel.iter().any(|r| r.country == country) {
                    return Err(bad(format!("{channel}.{country} is given twice")));
                }
                of_channel.push(RouteRule { channel: ch, country, routes });
            }
            // `*` after the countries, as a reader expects the fallback.
            of_channel.sort_by_key(|r| (r.country == "*", r.country.clone()));
            rules.extend(of_channel);
        }
        if rules.len() > MAX_RULES {
            return Err(bad(format!("at most {MAX_RULES} channel and country rules")));
        }
        Ok(rules)
    }
}

/// The table in the shape `RoutesInput` takes.
pub fn view(rules: &[RouteRule]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in rules {
        let of_channel = out.entry(r.channel.as_str()).or_insert_with(|| serde_json::json!({}));
        if let Some(map) = of_channel.as_object_mut() {
            map.insert(r.country.clone(), serde_json::json!(r.routes));
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> Result<Vec<RouteRule>> {
        serde_json::from_str::<RoutesInput>(json).unwrap().rules()
    }

    #[test]
    fn a_country_rule_wins_over_the_channels_star_and_other_channels_keep_the_default() {
        // Given SMS to the US through End User Messaging then SNS, and anywhere else through SNS
        let rules = table(r#"{"sms":{"*":["sns"],"us":["end-user-messaging","sns"]}}"#).unwrap();
        // Then a US number takes the US list, a French one the star, an email nothing
        assert_eq!(routes_for(&rules, Channel::Sms, Some("US")), ["end-user-messaging", "sns"]);
        assert_eq!(routes_for(&rules, Channel::Sms, Some("FR")), ["sns"]);
        assert_eq!(routes_for(&rules, Channel::Sms, None), ["sns"]);
        assert!(routes_for(&rules, Channel::Call, Some("US")).is_empty());
        // And the table reads back with the country first and the star last
        assert_eq!(view(&rules), serde_json::json!({"sms": {"US": ["end-user-messaging", "sns"], "*": ["sns"]}}));
        assert_eq!(rules.last().map(|r| r.country.as_str()), Some("*"));
    }

    #[test]
    fn a_bad_table_answers_400_naming_routes() {
        for json in [
            r#"{"fax":{"*":["sns"]}}"#,
            r#"{"sms":{"USA":["sns"]}}"#,
            r#"{"sms":{"US":[]}}"#,
            r#"{"sms":{"US":["a","b","c","d","e","f"]}}"#,
            r#"{"sms":{"US":["sns","sns"]}}"#,
            r#"{"sms":{"US":["no spaces"]}}"#,
            r#"{"sms":{"US":["sns"],"us":["sns"]}}"#,
        ] {
            let err = table(json).unwrap_err();
            assert!(matches!(&err, Error::InvalidParameter { param, .. } if param == "routes"), "{json}: {err:?}");
        }
        assert!(table("{}").unwrap().is_empty());
    }
}
