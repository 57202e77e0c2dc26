//! The records endpoint group: session detail records and usage records.
//!
//! `GET|POST /2fa/search`, `GET /2fa/search/{OTPSid}`, `GET|POST /2fa/usage/records` and
//! `GET /2fa/usage/records/{subresource}`, each with `.json`/`.xml` twins, in the seed shapes;
//! and ours, `GET /2fa/insights` (`.json`), in the shape docs/console.md gives.

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::{
    domain::{
        account::Account,
        crypto::Keys,
        error::{Error, Result},
        insights::{self, Counts, InsightsParams, InsightsReport, REFUSAL_CODES},
        otp::{Channel, Otp, OtpStatus},
        records::{
            self, PageToken, Sdr, SearchFilter, SearchRequest, UsagePeriod, UsageRecord, UsageRequest,
            DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
        },
        time::{self, Millis},
        usage::UsageCategory,
    },
    http::{acting_for, auth::Caller, params::Params, strip_format_suffix, ApiError, Routes},
    ports::Deps,
};

const SEARCH_PATH: &str = "/2fa/search";
const USAGE_PATH: &str = "/2fa/usage/records";
const INSIGHTS_PATH: &str = "/2fa/insights";

pub fn router(deps: Deps) -> Router {
    routes().finish(deps)
}

/// Every route of the group (and its paths, for the OpenAPI check).
pub fn routes() -> Routes {
    Routes::new()
        .with_suffixes(SEARCH_PATH, get(search).post(search))
        .route("/2fa/search/{sid}", get(one_record))
        .with_suffixes(USAGE_PATH, get(usage_range).post(usage_range))
        .route("/2fa/usage/records/{subresource}", get(usage_period))
        .route(INSIGHTS_PATH, get(insights_report))
        .route("/2fa/insights.json", get(insights_report))
}

type Answer = std::result::Result<Json<Value>, ApiError>;

// --- session detail records ----------------------------------------------------------------

async fn search(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let page_size = p.int("pageSize", 1, MAX_PAGE_SIZE as i64)?.map_or(DEFAULT_PAGE_SIZE, |n| n as u64);
    let page = page_param(&p)?;
    let status_text = p.opt("status")?;
    let status = status_text
        .as_deref()
        .map(|s| {
            OtpStatus::parse(&s.to_ascii_lowercase())
                .ok_or_else(|| Error::invalid("status", "must be pending, success, expired, canceled or failed"))
        })
        .transpose()?;
    let service = p.bounded("service", 64, false)?;
    let to = p.bounded("to", 254, false)?;
    let channel_text = p.opt("channel")?;
    let channel = channel_text
        .as_deref()
        .map(|c| {
            Channel::parse_any(c)
                .ok_or_else(|| Error::invalid("channel", "must be sms, call, email, whatsapp, totp or passkey"))
        })
        .transpose()?;
    let start_text = p.opt("startTime")?;
    let start_ms = start_text.as_deref().map(|s| date_param("startTime", s, records::parse_start)).transpose()?;
    let end_text = p.opt("endTime")?;
    let end_ms = end_text.as_deref().map(|s| date_param("endTime", s, records::parse_end)).transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if e < s {
            return Err(Error::invalid("endTime", "must not be before startTime").into());
        }
    }
    let sub_accounts = p.boolean("subAccounts")?.unwrap_or(false);
    let token_text = p.opt("pageToken")?;
    let acting = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let accounts = accounts(&deps, &acting, sub_accounts).await?;

    // Every page URI carries the acting account and the filters given, as the seed shows.
    let mut filters: Vec<(&str, String)> = vec![("accountSid", acting.sid.clone())];
    filters.extend(status_text.map(|v| ("status", v)));
    filters.extend(service.clone().map(|v| ("service", v)));
    filters.extend(to.clone().map(|v| ("to", v)));
    filters.extend(channel_text.map(|v| ("channel", v)));
    filters.extend(start_text.map(|v| ("startTime", v)));
    filters.extend(end_text.map(|v| ("endTime", v)));
    if sub_accounts {
        filters.push(("subAccounts", "true".to_owned()));
    }
    // A token opens only for the account and the very search (page size, filters) it came from.
    let context = query(&[&[("pageSize", page_size.to_string())], &filters[..]].concat());
    let token = token_text.map(|t| PageToken::open(&t, &deps.keys, &context)).transpose()?;
    if let (Some(t), Some(page)) = (&token, page) {
        if t.page != page {
            return Err(Error::invalid("pageToken", format!("belongs to page {}, not page {page}", t.page)).into());
        }
    }

    let filter = SearchFilter { status, service, to, channel, start_ms, end_ms };
    let req = SearchRequest { filter, page: page.unwrap_or(0), page_size, token };
    let found = records::search(&deps, &accounts, &req).await?;

    let keys = deps.keys.as_ref();
    let page_uri = |page: u64, token: Option<&PageToken>| {
        let mut pairs = vec![("pageSize", page_size.to_string()), ("page", page.to_string())];
        pairs.extend(filters.iter().cloned());
        pairs.extend(token.map(|t| ("pageToken", t.seal(keys, &context))));
        format!("{SEARCH_PATH}?{}", query(&pairs))
    };
    let now = deps.clock.now_ms();
    let first = found.page.saturating_mul(page_size);
    let returned = found.otps.len() as u64;
    let previous = (found.page > 0).then(|| page_uri(found.page - 1, found.previous.as_ref()));
    let next = found.next.as_ref().map(|t| page_uri(found.page + 1, Some(t)));
    let sdrs: Vec<Value> = found.otps.iter().map(|o| sdr_value(o, &caller, now, keys)).collect();
    Ok(Json(json!({
        "page": found.page,
        "num_pages": found.total.div_ceil(page_size),
        "page_size": page_size,
        "total": found.total,
        "start": first,
        "end": first.saturating_add(returned.max(1) - 1),
        "uri": SEARCH_PATH,
        "first_page_uri": page_uri(0, None),
        "previous_page_uri": previous,
        "next_page_uri": next,
        "twoFaOtpSdrs": sdrs,
    })))
}

/// `GET /2fa/search/{OTPSid}`: the SDR object itself (the seed wraps it in a second pair of
/// braces, which is not JSON). Unknown and other accounts' sids answer the same 404.
async fn one_record(State(deps): State<Deps>, Caller(caller): Caller, Path(sid): Path<String>, p: Params) -> Answer {
    let sub_accounts = p.boolean("subAccounts")?.unwrap_or(false);
    let acting = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let accounts = accounts(&deps, &acting, sub_accounts).await?;
    let otp = records::find(&deps, &accounts, strip_format_suffix(&sid)).await?;
    Ok(Json(sdr_value(&otp, &caller, deps.clock.now_ms(), &deps.keys)))
}

/// The acting account, then (with `subAccounts=true`) every account below it.
async fn accounts(deps: &Deps, acting: &Account, sub_accounts: bool) -> Result<Vec<String>> {
    let mut sids = vec![acting.sid.clone()];
    if sub_accounts {
        let mut subs: Vec<String> =
            deps.store.list_sub_accounts(&acting.sid).await?.into_iter().map(|a| a.sid).collect();
        subs.sort();
        sids.extend(subs);
    }
    Ok(sids)
}

/// `page`, from 0.
fn page_param(p: &Params) -> Result<Option<u64>> {
    let Some(s) = p.opt("page")? else { return Ok(None) };
    s.trim().parse::<u64>().map(Some).map_err(|_| Error::invalid("page", "must be a whole number from 0"))
}

fn date_param(name: &'static str, s: &str, parse: fn(&str) -> Option<Millis>) -> Result<Millis> {
    parse(s).ok_or_else(|| Error::invalid(name, "must be a UTC date YYYY-MM-DD or date-time YYYY-MM-DDTHH:MM:SS"))
}

fn query(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// An OTP's session detail record, fields in the seed's order. Its `uri` names the account
/// when the record is not the caller's own, so the caller can follow it.
fn sdr_value(otp: &Otp, caller: &Account, now: Millis, keys: &Keys) -> Value {
    let sdr = Sdr::of(otp, now, keys);
    let mut uri = format!("{SEARCH_PATH}/{}", sdr.sid);
    if sdr.account_sid != caller.sid {
        uri = format!("{uri}?{}", query(&[("accountSid", sdr.account_sid.clone())]));
    }
    let checks: Vec<Value> = sdr
        .checks
        .iter()
        .map(|c| {
            json!({
                "sid": c.sid,
                "dateReceived": c.date_received,
                "status": if c.valid { "valid" } else { "invalid" },
                "code": c.code,
            })
        })
        .collect();
    let events: Vec<Value> = sdr
        .events
        .iter()
        .map(|e| {
            let mut event = json!({
                "sid": e.sid,
                "dateCreated": time::sdr(e.at_ms),
                "channel": e.channel.as_str(),
                "sender": e.sender,
                "recipient": e.recipient,
                "targetSid": e.target_sid,
                "channelStatus": e.status.as_str(),
                "channelErrorCode": e.error_code,
                "channelErrorMessage": e.error_message,
            });
            // Ours, after the seed's nine: what an SMS took on the air.
            if let (Some(encoding), Some(segments), Some(map)) = (e.encoding, e.segments, event.as_object_mut()) {
                map.insert("encoding".into(), encoding.as_str().into());
                map.insert("segments".into(), segments.into());
            }
            // Ours too: the route that sent or refused it.
            if let (Some(route), Some(map)) = (&e.route, event.as_object_mut()) {
                map.insert("route".into(), route.as_str().into());
            }
            event
        })
        .collect();
    json!({
        "sid": sdr.sid,
        "service": sdr.service,
        "accountSid": sdr.account_sid,
        "dateCreated": sdr.date_created,
        "dateUpdated": sdr.date_updated,
        "status": sdr.status.as_str(),
        "uri": uri,
        "checks": checks,
        "events": events,
        "country": sdr.country,
    })
}

// --- usage records -------------------------------------------------------------------------------

async fn usage_range(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    usage(deps, caller, p, UsagePeriod::Range).await
}

async fn usage_period(
    State(deps): State<Deps>,
    Caller(caller): Caller,
    Path(subresource): Path<String>,
    p: Params,
) -> Answer {
    let period = UsagePeriod::parse(strip_format_suffix(&subresource)).ok_or(Error::NotFound)?;
    usage(deps, caller, p, period).await
}

async fn usage(deps: Deps, caller: Account, p: Params, period: UsagePeriod) -> Answer {
    let channel_text = p.opt("channel")?;
    let category = match channel_text.as_deref() {
        None => UsageCategory::All,
        Some(c) => UsageCategory::parse(c)
            .ok_or_else(|| Error::invalid("channel", "must be sms, call, email, whatsapp, test or All"))?,
    };
    // The seed's record URIs say startTime/endTime: following one must work too.
    let (start, start_name) = day_param(&p, "startDate", "startTime")?;
    let (end, end_name) = day_param(&p, "endDate", "endTime")?;
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(Error::invalid(end_name, format!("must not be before {start_name}")).into());
        }
    }
    let acting = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let req = UsageRequest { period, category, start, end };
    let found = records::usage(&deps, &acting.sid, acting.created_ms, &req).await?;
    let path = match period.as_str() {
        Some(sub) => format!("{USAGE_PATH}/{sub}"),
        None => USAGE_PATH.to_owned(),
    };
    let named_channel = channel_text.is_some();
    let records: Vec<Value> = found.iter().map(|r| usage_value(r, &acting.sid, &path, named_channel)).collect();
    Ok(Json(json!({ "usageRecords": records })))
}

/// A `YYYY-MM-DD` parameter under its name or its alias, with the name the client used.
fn day_param(p: &Params, name: &'static str, alias: &'static str) -> Result<(Option<NaiveDate>, &'static str)> {
    let (text, used) = match p.opt(name)? {
        Some(t) => (Some(t), name),
        None => (p.opt(alias)?, alias),
    };
    match text {
        None => Ok((None, name)),
        Some(t) => time::parse_day(t.trim())
            .map(|d| (Some(d), used))
            .ok_or_else(|| Error::invalid(used, "must be a date YYYY-MM-DD")),
    }
}

/// A usage record in the seed's shape: `All` with `channel`, `startTime`, `endTime`; a channel
/// with `category`, `startDate`, `endDate`. `count` is a string, as the seeds show.
fn usage_value(r: &UsageRecord, account_sid: &str, path: &str, named_channel: bool) -> Value {
    let start = r.start.format("%Y-%m-%d").to_string();
    let end = r.end.format("%Y-%m-%d").to_string();
    match r.category {
        UsageCategory::All => {
            let mut pairs = vec![];
            if named_channel {
                pairs.push(("channel", "All".to_owned()));
            }
            pairs.extend([
                ("startTime", start.clone()),
                ("endTime", end.clone()),
                ("accountSid", account_sid.to_owned()),
            ]);
            json!({
                "channel": "All",
                "description": "Total OTP sent, irrespective of channel or retry",
                "accountSid": account_sid,
                "startTime": start,
                "endTime": end,
                "count": r.count.to_string(),
                "unit": "OTP",
                "uri": format!("{path}?{}", query(&pairs)),
            })
        }
        UsageCategory::Channel(_) | UsageCategory::Test => {
            let (description, unit) = match r.category {
                UsageCategory::Channel(Channel::Sms) => ("Total SMS sent for OTP", "SMS"),
                UsageCategory::Channel(Channel::Call) => ("Total calls made for OTP", "Calls"),
                UsageCategory::Channel(Channel::Email) => ("Total emails sent for OTP", "Emails"),
                UsageCategory::Channel(Channel::Whatsapp) => ("Total WhatsApp messages sent for OTP", "Messages"),
                UsageCategory::Channel(Channel::Totp) => {
                    ("Total authenticator app challenges: nothing sent", "Challenges")
                }
                UsageCategory::Channel(Channel::Passkey) => ("Total passkey challenges: nothing sent", "Challenges"),
                _ => ("Total OTPs sent to test destinations: nothing delivered, not billed", "OTP"),
            };
            let c = r.category;
            let pairs = [
                ("channel", c.as_str().to_owned()),
                ("startDate", start.clone()),
                ("endDate", end.clone()),
                ("accountSid", account_sid.to_owned()),
            ];
            json!({
                "category": c.as_str(),
                "description": description,
                "accountSid": account_sid,
                "startDate": start,
                "endDate": end,
                "count": r.count.to_string(),
                "unit": unit,
                "uri": format!("{path}?{}", query(&pairs)),
            })
        }
    }
}

// --- insights ------------------------------------------------------------------------------------

/// `GET /2fa/insights`: the acting account's counts over a range (`insights::query_of`).
async fn insights_report(State(deps): State<Deps>, Caller(caller): Caller, p: Params) -> Answer {
    let (range, from, to) = (p.opt("range")?, p.opt("from")?, p.opt("to")?);
    let (granularity, channel, country) = (p.opt("granularity")?, p.opt("channel")?, p.opt("country")?);
    let params = InsightsParams {
        range: range.as_deref(),
        from: from.as_deref(),
        to: to.as_deref(),
        granularity: granularity.as_deref(),
        channel: channel.as_deref(),
        country: country.as_deref(),
    };
    let query = insights::query_of(&params, deps.clock.now_ms())?;
    let acting = acting_for(&deps, &caller, p.opt("accountSid")?.as_deref()).await?;
    let found = insights::insights(&deps, &acting.sid, &query).await?;
    Ok(Json(json!({ "data": insights_value(&found, &acting.sid), "code": 200, "message": "OK" })))
}

/// The report in the API's shape (docs/console.md).
pub fn insights_value(r: &InsightsReport, account_sid: &str) -> Value {
    let with = |key: &str, value: Value, counts: &Counts| {
        let mut v = counts_value(counts);
        if let Some(map) = v.as_object_mut() {
            map.insert(key.to_owned(), value);
        }
        v
    };
    json!({
        "accountSid": account_sid,
        "from": time::iso(r.query.from_ms),
        "to": time::iso(r.query.to_ms),
        "granularity": r.query.granularity.as_str(),
        "channel": r.query.channel.map(Channel::as_str),
        "country": r.query.country,
        "totals": counts_value(&r.totals),
        // Ours since factors: how many verifications sent nothing, and their share.
        "verifiedSendingNothing": r.verified_sending_nothing,
        "sentNothingShare": r.sent_nothing_share().map(|r| (r * 10_000.0).round() / 10_000.0),
        "series": r.series.iter().map(|(at, c)| with("start", time::iso(*at).into(), c)).collect::<Vec<_>>(),
        "channels": r.channels.iter().map(|(ch, c)| with("channel", ch.as_str().into(), c)).collect::<Vec<_>>(),
        "countries": r.countries.iter().map(|(cc, c)| with("country", cc.as_str().into(), c)).collect::<Vec<_>>(),
    })
}

fn counts_value(c: &Counts) -> Value {
    let rate = |r: Option<f64>| r.map(|r| (r * 10_000.0).round() / 10_000.0);
    let refused: serde_json::Map<String, Value> =
        REFUSAL_CODES.iter().map(|code| (code.to_string(), c.refused_with(*code).into())).collect();
    json!({
        "sends": c.sends,
        "verified": c.verified,
        "conversionRate": rate(c.conversion_rate()),
        "delivered": c.delivered,
        "undelivered": c.undelivered,
        "failed": c.failed,
        "deliveryRate": rate(c.delivery_rate()),
        "refused": refused,
    })
}
