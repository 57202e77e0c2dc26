//! The overview: what the account's verifications did over a range (`domain::insights`), as
//! figures, a time series, per-channel and per-country tables, and the refusals by code.

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};

use super::{charts, SignedIn};
use crate::{
    domain::{
        error::{Error, Result},
        insights::{self, Counts, Granularity, InsightsParams, InsightsQuery, InsightsReport},
        time::{self, Millis},
    },
    ports::Deps,
};

/// The overview's query string.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct RangeParams {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The preset ranges, as the links name them.
const PRESETS: [(&str, &str); 3] = [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")];

/// The range `p` asks for at `now`, read as the insights API reads it (`insights::query_of`):
/// `24h` the 24 whole hours ending with the current one, `7d` / `30d` whole UTC days ending
/// today, `custom` from `from`'s midnight to `to`'s (UTC), hourly up to 72 h.
/// A form field as given, None when empty.
fn field(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

pub(super) fn range_query(p: &RangeParams, now: Millis) -> Result<(String, InsightsQuery)> {
    let range = p.range.as_deref().unwrap_or("24h");
    let params = match range {
        "custom" => {
            let from = field(p.from.as_deref()).ok_or_else(|| Error::missing("from"))?;
            let to = field(p.to.as_deref()).ok_or_else(|| Error::missing("to"))?;
            InsightsParams { from: Some(from), to: Some(to), ..InsightsParams::default() }
        }
        _ => InsightsParams { range: Some(range), ..InsightsParams::default() },
    };
    Ok((range.to_owned(), insights::query_of(&params, now)?))
}

pub(super) async fn page(State(deps): State<Deps>, signed: SignedIn, Query(p): Query<RangeParams>) -> Response {
    let now = deps.clock.now_ms();
    let (range, query) = match range_query(&p, now) {
        Ok(r) => r,
        Err(e) => {
            let alert = e.to_string();
            return signed.page_with(StatusCode::BAD_REQUEST, "Overview", Some(&alert), ranges(None, &p));
        }
    };
    let report = match insights::insights(&deps, &signed.account.sid, &query).await {
        Ok(r) => r,
        Err(e) => return signed.error(e),
    };
    signed.page("Overview", body(&range, &p, &report))
}

fn ranges(current: Option<&str>, p: &RangeParams) -> Markup {
    html! {
        div.ranges {
            @for (value, text) in PRESETS {
                @if current == Some(value) {
                    a href=(format!("/console/overview?range={value}")) aria-current="page" { (text) }
                } @else {
                    a href=(format!("/console/overview?range={value}")) { (text) }
                }
            }
            form.filters method="get" action="/console/overview" {
                input type="hidden" name="range" value="custom";
                label for="from" { "From" }
                input #from type="date" name="from" value=(p.from.as_deref().unwrap_or(""));
                label for="to" { "To" }
                input #to type="date" name="to" value=(p.to.as_deref().unwrap_or(""));
                button type="submit" { "Show" }
            }
        }
    }
}

fn period_label(granularity: Granularity) -> impl Fn(Millis) -> String {
    move |ms| match granularity {
        Granularity::Hour => time::sdr(ms)[5..16].to_owned(),
        Granularity::Day => time::day(ms),
    }
}

const REFUSALS: [(u16, &str); 5] = [
    (453, "One number, too often"),
    (454, "Limits"),
    (476, "Geo permissions"),
    (477, "Pumping guard"),
    (478, "Failure budget"),
];

fn body(range: &str, p: &RangeParams, r: &InsightsReport) -> Markup {
    let q = &r.query;
    let t = &r.totals;
    let per = q.granularity.as_str();
    let chart_label = format!(
        "Sends and verified per {per}, {} to {} (UTC): {} sends, {} verified",
        time::sdr(q.from_ms),
        time::sdr(q.to_ms),
        t.sends,
        t.verified
    );
    let starts: Vec<Millis> = r.series.iter().map(|(s, _)| *s).collect();
    let max_country = r.countries.iter().map(|(_, c)| c.sends).max().unwrap_or(0);
    html! {
        (ranges(Some(range), p))
        p { "From " time datetime=(time::iso(q.from_ms)) { (time::sdr(q.from_ms)) } " to "
            time datetime=(time::iso(q.to_ms)) { (time::sdr(q.to_ms)) } " UTC, by " (per) "." }
        div.figures {
            (figure("Sends", "sends", html! { (t.sends) }))
            (figure("Verified", "verified", html! { (t.verified) }))
            (figure("Conversion rate", "conversionRate", charts::rate(t.conversion_rate())))
            (figure("Delivery rate", "deliveryRate", charts::rate(t.delivery_rate())))
            // Verified by an authenticator app's factor: nothing sent, nothing paid.
            (figure("Verified sending nothing", "sentNothingShare", charts::rate(r.sent_nothing_share())))
        }
        h2 { "Sends and verified" }
        p.legend { span.sends { "■ sends" } " " span.verified { "■ verified" } }
        (charts::time_series(&chart_label, &starts, period_label(q.granularity), &[
            charts::Line { class: "sends", values: r.series.iter().map(|(_, c)| c.sends).collect() },
            charts::Line { class: "verified", values: r.series.iter().map(|(_, c)| c.verified).collect() },
        ]))
        h2 { "Refused sends" }
        div.figures {
            @for (code, text) in REFUSALS {
                (figure(&format!("{text} ({code})"), &format!("refused-{code}"), html! { (t.refused_with(code)) }))
            }
        }
        h2 { "By channel" }
        table #channels {
            thead { tr { th { "Channel" } (count_heads()) } }
            tbody {
                @for (channel, c) in &r.channels {
                    tr data-channel=(channel.as_str()) data-sends=(c.sends) {
                        td { (channel.as_str()) } (count_cells(c))
                    }
                }
            }
        }
        @if r.channels.is_empty() { p { "No sends in this range." } }
        h2 { "By country" }
        table #countries {
            thead { tr { th { "Country" } th { span.sr { "Share of sends" } } (count_heads()) } }
            tbody {
                @for (country, c) in &r.countries {
                    tr data-country=(country) data-sends=(c.sends) {
                        td { (country) } td { (charts::bar(c.sends, max_country)) } (count_cells(c))
                    }
                }
            }
        }
        @if r.countries.is_empty() { p { "No sends in this range." } }
    }
}

fn figure(label: &str, metric: &str, value: Markup) -> Markup {
    html! { div.figure { span.label { (label) } span.value data-metric=(metric) { (value) } } }
}

fn count_heads() -> Markup {
    html! {
        th.num { "Sends" } th.num { "Verified" } th.num { "Conversion" } th.num { "Delivered" }
        th.num { "Delivery rate" } th.num { "Refused" }
    }
}

fn count_cells(c: &Counts) -> Markup {
    html! {
        td.num { (c.sends) } td.num { (c.verified) } td.num { (charts::rate(c.conversion_rate())) }
        td.num { (c.delivered) } td.num { (charts::rate(c.delivery_rate())) } td.num { (c.refusals()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::insights::{DAY_MS, HOUR_MS};

    fn params(range: &str, from: Option<&str>, to: Option<&str>) -> RangeParams {
        RangeParams { range: Some(range.into()), from: from.map(Into::into), to: to.map(Into::into) }
    }

    #[test]
    fn presets_end_with_the_current_hour_or_day() {
        let now = 10 * DAY_MS + 5 * HOUR_MS + 123;
        let (_, q) = range_query(&params("24h", None, None), now).unwrap();
        assert_eq!(
            (q.from_ms, q.to_ms, q.granularity),
            (10 * DAY_MS - 18 * HOUR_MS, 10 * DAY_MS + 6 * HOUR_MS, Granularity::Hour)
        );
        let (_, q) = range_query(&params("7d", None, None), now).unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.granularity), (4 * DAY_MS, 11 * DAY_MS, Granularity::Day));
    }

    #[test]
    fn a_custom_range_runs_midnight_to_midnight_and_names_a_bad_date() {
        let (_, q) = range_query(&params("custom", Some("2026-12-01"), Some("2026-12-03")), 0).unwrap();
        assert_eq!(q.to_ms - q.from_ms, 2 * DAY_MS);
        assert_eq!(q.granularity, Granularity::Hour);
        let e = range_query(&params("custom", Some("2026-12-01"), Some("soon")), 0).unwrap_err();
        assert!(e.to_string().contains("to"));
        assert!(range_query(&params("custom", Some("2026-01-01"), Some("2026-12-01")), 0).is_err(), "over 93 days");
        assert!(range_query(&params("1y", None, None), 0).is_err());
    }
}
