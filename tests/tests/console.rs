//! Black-box tests of the operator console (`/console`, docs/console.md) over HTTP against the
//! dev server: sign-in and the session cookie, sign-out, CSRF, the security headers, the
//! account's suspension and allow-list, the overview's figures, sessions and timelines.

mod common;

use std::sync::Arc;

use common::{Api, Resp};
use reqwest::{header, redirect::Policy, StatusCode};
use twofa::{
    domain::{
        cidr::Cidr,
        console::SIGN_INS_PER_ACCOUNT,
        insights::{self, Granularity, InsightsQuery, HOUR_MS},
    },
    ports::{AccountAdminStore, AccountStore, Clock, InsightsStore},
};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A browser of the console: no redirects followed, the session cookie carried by hand.
struct Console {
    api: Api,
    http: reqwest::Client,
}

impl Console {
    async fn start() -> Self {
        let api = Api::start().await;
        let http = reqwest::Client::builder().redirect(Policy::none()).build().expect("client");
        Console { api, http }
    }

    async fn finish(req: reqwest::RequestBuilder) -> Resp {
        Api::finish(req, None, "").await
    }

    async fn sign_in_as(&self, sid: &str, token: &str) -> Resp {
        let req = self
            .http
            .post(format!("{}/console/sign-in", self.api.base))
            .form(&[("accountSid", sid), ("authToken", token)]);
        Self::finish(req).await
    }

    /// Signed in as the harness's account: the session cookie (`name=value`).
    async fn signed_in(&self) -> String {
        self.signed_in_as(&self.api.sid, &self.api.token).await
    }

    async fn signed_in_as(&self, sid: &str, token: &str) -> String {
        let r = self.sign_in_as(sid, token).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-in: {}", r.text);
        session_cookie(&r).expect("a session cookie")
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut req = self.http.get(format!("{}{path}", self.api.base));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        Self::finish(req).await
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Resp {
        let req = self.http.post(format!("{}{path}", self.api.base)).header(header::COOKIE, cookie).form(form);
        Self::finish(req).await
    }
}

/// The `twofa_console=…` pair a response sets, if any (not a clearing one).
fn session_cookie(r: &Resp) -> Option<String> {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with("twofa_console=") && !c.starts_with("twofa_console=;"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn location(r: &Resp) -> &str {
    r.headers.get(header::LOCATION).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// The value of the page's hidden `csrf` input.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf input") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// The text of the element carrying `attr` (`data-metric="sends"`), tags inside removed.
fn text_of(page: &str, attr: &str) -> String {
    let at = page.find(attr).unwrap_or_else(|| panic!("no {attr} in the page"));
    let start = at + page[at..].find('>').unwrap() + 1;
    let end = start + page[start..].find("</").unwrap();
    page[start..end].to_owned()
}

/// The values of attribute `attr` in the page, in order (`data-kind`).
fn attr_values(page: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    page.match_indices(&needle).map(|(i, _)| page[i + needle.len()..].split('"').next().unwrap().to_owned()).collect()
}

fn assert_redirects_to_sign_in(r: &Resp) {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(r), "/console/sign-in");
}

// ---- sign-in, the cookie, sign-out -----------------------------------------------------------

#[tokio::test]
async fn signing_in_sets_a_sealed_http_only_secure_strict_cookie_for_the_console_only() {
    // Given the console and an account
    let c = Console::start().await;
    // When it signs in with its SID and token
    let r = c.sign_in_as(&c.api.sid, &c.api.token).await;
    // Then it is sent to the overview with a session cookie that scripts, other sites and
    // plain HTTP never see, and which does not carry the token
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console/overview");
    let set = set_cookies(&r).into_iter().find(|s| s.starts_with("twofa_console=")).expect("Set-Cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(set.split("; ").any(|a| a == attribute), "{attribute} missing in {set}");
    }
    assert!(!set.contains(&c.api.token) && !set.contains(&c.api.sid), "the cookie is sealed: {set}");
    // And the cookie opens the overview
    let page = c.get("/console/overview", Some(&session_cookie(&r).unwrap())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<h1>Overview</h1>"));
    assert!(page.text.contains(&c.api.sid));
}

#[tokio::test]
async fn the_root_sends_a_stranger_to_sign_in_and_a_signed_in_operator_to_the_overview() {
    let c = Console::start().await;
    assert_redirects_to_sign_in(&c.get("/console", None).await);
    let cookie = c.signed_in().await;
    let r = c.get("/console", Some(&cookie)).await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/console/overview"));
}

#[tokio::test]
async fn the_sign_in_page_has_the_labelled_fields_and_no_navigation() {
    let c = Console::start().await;
    let r = c.get("/console/sign-in", None).await;
    assert_eq!(r.status, StatusCode::OK);
    for needle in [
        "<h1>Sign in</h1>",
        "<label for=\"accountSid\">Account SID</label>",
        "name=\"accountSid\"",
        "<label for=\"authToken\">Auth token</label>",
        "type=\"password\" name=\"authToken\"",
        ">Sign in</button>",
    ] {
        assert!(r.text.contains(needle), "{needle} missing in {}", r.text);
    }
    assert!(!r.text.contains("<nav"));
}

#[tokio::test]
async fn a_wrong_token_or_unknown_account_answers_401_with_the_form_and_the_alert() {
    // Given the console
    let c = Console::start().await;
    let (other, _) = c.api.other_account().await;
    // When one signs in with a wrong token, and with an account that does not exist
    for (sid, token) in
        [(c.api.sid.as_str(), "0".repeat(32)), (other.as_str(), "wrong".into()), ("ACnope", c.api.token.clone())]
    {
        let r = c.sign_in_as(sid, &token).await;
        // Then both answer 401, the form again with the alert, and no cookie
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("role=\"alert\""));
        assert!(r.text.contains("The account SID or auth token is wrong."));
        assert!(r.text.contains("name=\"authToken\""));
        assert_eq!(session_cookie(&r), None);
    }
}

#[tokio::test]
async fn sign_in_attempts_beyond_the_accounts_limit_answer_429_with_retry_after() {
    // Given the console and an account someone guesses tokens for
    let c = Console::start().await;
    for _ in 0..SIGN_INS_PER_ACCOUNT {
        assert_eq!(c.sign_in_as(&c.api.sid, "guess").await.status, StatusCode::UNAUTHORIZED);
    }
    // When one more attempt comes, even with the right token
    let r = c.sign_in_as(&c.api.sid, &c.api.token).await;
    // Then it is refused 429, saying when to try again, and no session starts
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert!(r.text.contains("role=\"alert\"") && r.text.contains("Try again in"));
    assert_eq!(session_cookie(&r), None);
    // And another account is not held back by it
    let (other, token) = c.api.other_account().await;
    assert_eq!(c.sign_in_as(&other, &token).await.status, StatusCode::SEE_OTHER);
    // And once the window has passed, the account signs in again
    c.api.advance(15 * 60).await;
    assert_eq!(c.sign_in_as(&c.api.sid, &c.api.token).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let c = Console::start().await;
    let req = c
        .http
        .post(format!("{}/console/sign-in", c.api.base))
        .header("Origin", "https://evil.example")
        .form(&[("accountSid", c.api.sid.as_str()), ("authToken", c.api.token.as_str())]);
    let r = Console::finish(req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(session_cookie(&r), None);
}

#[tokio::test]
async fn signing_out_ends_the_session_and_the_old_cookie_is_sent_to_sign_in() {
    // Given a signed-in operator
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    let page = c.get("/console/overview", Some(&cookie)).await;
    // When they sign out with the page's form
    let r = c.post("/console/sign-out", &cookie, &[("csrf", &csrf_of(&page.text))]).await;
    // Then they are at the sign-in page, the cookie cleared
    assert_redirects_to_sign_in(&r);
    assert!(set_cookies(&r).iter().any(|s| s.starts_with("twofa_console=;") && s.contains("Max-Age=0")));
    // And the same cookie, kept by someone, opens nothing any more
    assert_redirects_to_sign_in(&c.get("/console/overview", Some(&cookie)).await);
    assert_redirects_to_sign_in(&c.get("/console/sessions", Some(&cookie)).await);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_answers_403_and_changes_nothing() {
    // Given a signed-in operator
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    // When a form is posted without the token, or with another session's
    let other_session = c.signed_in().await;
    let others_token = csrf_of(&c.get("/console/overview", Some(&other_session)).await.text);
    for form in [vec![], vec![("csrf", "")], vec![("csrf", others_token.as_str())]] {
        let r = c.post("/console/sign-out", &cookie, &form).await;
        // Then it is refused 403
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    // And the session is still on
    assert_eq!(c.get("/console/overview", Some(&cookie)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_ends_after_30_idle_minutes() {
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    c.api.advance(20 * 60).await;
    assert_eq!(c.get("/console/overview", Some(&cookie)).await.status, StatusCode::OK, "used within 30 minutes");
    c.api.advance(31 * 60).await;
    assert_redirects_to_sign_in(&c.get("/console/overview", Some(&cookie)).await);
}

#[tokio::test]
async fn a_forged_or_foreign_cookie_opens_nothing() {
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    let mut forged = cookie.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    assert_redirects_to_sign_in(&c.get("/console/overview", Some(&String::from_utf8(forged).unwrap())).await);
    // A cookie of another deployment (another master key)
    let elsewhere = Console::start().await;
    assert_redirects_to_sign_in(&elsewhere.get("/console/overview", Some(&cookie)).await);
}

#[tokio::test]
async fn rotating_the_accounts_token_ends_its_sessions() {
    // Given a signed-in operator
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    // When the account's token is rotated (the admin command)
    let store = &c.api.dev.store;
    let account = store.get_account(&c.api.sid).await.unwrap().unwrap();
    let new_hash = c.api.dev.deps.keys.hash_token(&c.api.sid, "a-new-token-0123456789");
    store.replace_token_hash(&account, &new_hash).await.unwrap();
    // Then the old session is over
    assert_redirects_to_sign_in(&c.get("/console/overview", Some(&cookie)).await);
}

// ---- the account's suspension and allow-list ---------------------------------------------------

#[tokio::test]
async fn a_suspended_account_cannot_sign_in_and_its_open_session_is_refused() {
    // Given a signed-in operator
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    // When the account is suspended
    let store = &c.api.dev.store;
    let account = store.get_account(&c.api.sid).await.unwrap().unwrap();
    store.set_suspended(&account, true).await.unwrap();
    // Then its session is refused 403 and a new sign-in too
    let r = c.get("/console/overview", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("role=\"alert\""));
    let r = c.sign_in_as(&c.api.sid, &c.api.token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(session_cookie(&r), None);
}

#[tokio::test]
async fn a_sub_account_under_a_suspended_parent_is_refused() {
    let c = Console::start().await;
    let (sub, token) = c.api.sub_account(&c.api.sid).await;
    let store = &c.api.dev.store;
    let parent = store.get_account(&c.api.sid).await.unwrap().unwrap();
    store.set_suspended(&parent, true).await.unwrap();
    assert_eq!(c.sign_in_as(&sub, &token).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_address_outside_the_accounts_allowed_ips_is_refused() {
    // Given a signed-in operator (on 127.0.0.1)
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    // When the account allows only 10.0.0.0/8
    let store = &c.api.dev.store;
    let account = store.get_account(&c.api.sid).await.unwrap().unwrap();
    store.set_allowed_ips(&account, &["10.0.0.0/8".parse::<Cidr>().unwrap()]).await.unwrap();
    // Then the session and a new sign-in are refused 403
    assert_eq!(c.get("/console/sessions", Some(&cookie)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.sign_in_as(&c.api.sid, &c.api.token).await.status, StatusCode::FORBIDDEN);
    // And allowing loopback lets it in again
    let account = store.get_account(&c.api.sid).await.unwrap().unwrap();
    store.set_allowed_ips(&account, &["127.0.0.0/8".parse::<Cidr>().unwrap()]).await.unwrap();
    assert_eq!(c.get("/console/sessions", Some(&cookie)).await.status, StatusCode::OK);
}

// ---- headers, weight, assets -------------------------------------------------------------------

#[tokio::test]
async fn every_page_has_the_csp_and_the_security_headers_and_references_only_its_own_assets() {
    // Given a signed-in operator with one session to look at
    let c = Console::start().await;
    let sid = c.api.sent("+14155550100").await;
    let cookie = c.signed_in().await;
    let pages = [
        ("/console/sign-in", None),
        ("/console/overview", Some(&cookie)),
        ("/console/overview?range=7d", Some(&cookie)),
        ("/console/overview?range=30d", Some(&cookie)),
        ("/console/overview?range=custom&from=2026-01-01&to=2026-01-03", Some(&cookie)),
        ("/console/sessions", Some(&cookie)),
        (&format!("/console/sessions/{sid}"), Some(&cookie)),
        ("/console", None),
        ("/console/overview", None),
    ];
    for (path, cookie) in pages {
        // When each is asked for
        let r = c.get(path, cookie.map(String::as_str)).await;
        // Then each carries the strict CSP and the other headers
        let h = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("content-security-policy").as_deref(), Some(CSP), "{path}");
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(h("referrer-policy").as_deref(), Some("same-origin"), "{path}");
        assert_eq!(h("cache-control").as_deref(), Some("no-store"), "{path}");
        if r.status == StatusCode::OK {
            // And a page weighs at most 150 KB, has no script or inline style, and names no
            // asset but the console's stylesheet
            assert!(r.text.len() <= 150 * 1024, "{path}: {} bytes", r.text.len());
            assert!(h("content-type").unwrap().starts_with("text/html"), "{path}");
            for banned in ["<script", " style=", "<style", "http://", "https://", " src="] {
                assert!(!r.text.contains(banned), "{path} has {banned}");
            }
            assert!(r.text.contains("<link rel=\"stylesheet\" href=\"/console/assets/console.css\">"), "{path}");
        }
    }
    // And the stylesheet itself is served, as CSS
    let css = c.get("/console/assets/console.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    assert!(!css.text.contains("url("), "the stylesheet loads nothing");
}

#[tokio::test]
async fn a_signed_in_page_has_the_console_navigation_and_a_sign_out_form() {
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    let r = c.get("/console/sessions", Some(&cookie)).await;
    assert!(r.text.contains("<nav aria-label=\"Console\">"));
    for (href, text) in [
        ("/console/overview", "Overview"),
        ("/console/sessions", "Sessions"),
        ("/console/limits", "Limits"),
        ("/console/workflows", "Workflows"),
        ("/console/account", "Account"),
    ] {
        assert!(r.text.contains(&format!("<a href=\"{href}\">{text}</a>")), "{text}");
    }
    assert!(r.text.contains("action=\"/console/sign-out\""));
    assert!(r.text.contains(">Sign out</button>"));
    assert!(r.text.contains("<h1>Sessions</h1>"));
}

// ---- overview ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_overviews_figures_and_rows_equal_the_insights_report_of_its_range() {
    // Given an account with sends on two channels and countries, one verified
    let c = Console::start().await;
    let first = c.api.sent("+14155550100").await;
    c.api.sent("+447400123456").await;
    let code = c.api.code_of(&first).await;
    assert_eq!(c.api.verify(&first, &code).await.status, 200);
    let cookie = c.signed_in().await;
    // When the overview of the last 24 hours is shown
    let r = c.get("/console/overview?range=24h", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Then its figures are those of the insights report over the same 24 whole hours
    let now = c.api.dev.clock.now_ms();
    let to = now.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    let query = InsightsQuery {
        from_ms: to - 24 * HOUR_MS,
        to_ms: to,
        granularity: Granularity::Hour,
        channel: None,
        country: None,
    };
    let cells = c.api.dev.store.insight_cells(&c.api.sid, query.from_ms, query.to_ms, query.granularity).await.unwrap();
    let report = insights::report(&query, &cells);
    let t = &report.totals;
    let rate = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{:.1}%", r * 100.0));
    assert_eq!(text_of(&r.text, "data-metric=\"sends\""), t.sends.to_string());
    assert_eq!(text_of(&r.text, "data-metric=\"verified\""), t.verified.to_string());
    assert_eq!(text_of(&r.text, "data-metric=\"conversionRate\""), rate(t.conversion_rate()));
    assert_eq!(text_of(&r.text, "data-metric=\"deliveryRate\""), rate(t.delivery_rate()));
    for code in insights::REFUSAL_CODES {
        assert_eq!(text_of(&r.text, &format!("data-metric=\"refused-{code}\"")), t.refused_with(code).to_string());
    }
    // And a row per channel and per country, with its sends
    let rows = |attr: &str| attr_values(&r.text, attr);
    assert_eq!(rows("data-channel"), report.channels.iter().map(|(ch, _)| ch.as_str().to_owned()).collect::<Vec<_>>());
    assert_eq!(rows("data-country"), report.countries.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    let sends: Vec<String> = report
        .channels
        .iter()
        .map(|(_, n)| n.sends)
        .chain(report.countries.iter().map(|(_, n)| n.sends))
        .map(|n| n.to_string())
        .collect();
    assert_eq!(rows("data-sends"), sends);
    // And the chart and the tables are there
    assert!(r.text.contains("<svg class=\"chart\" role=\"img\" aria-label=\"Sends and verified per hour"));
    assert!(r.text.contains("<table id=\"channels\">") && r.text.contains("<table id=\"countries\">"));
}

#[tokio::test]
async fn a_verification_by_an_authenticator_app_shows_beside_sms_in_the_overview_and_sessions() {
    // Given an SMS verified and a challenge of a confirmed authenticator-app factor verified
    let c = Console::start().await;
    let sms = c.api.sent("+14155550100").await;
    let code = c.api.code_of(&sms).await;
    assert_eq!(c.api.verify(&sms, &code).await.status, 200);
    let created = c.api.post("/2fa/entities/alice/factors", &serde_json::json!({})).await.json()["data"].clone();
    let (factor, seed) =
        (created["sid"].as_str().unwrap().to_owned(), common::base32_decode(created["secret"].as_str().unwrap()));
    let app_code = || {
        let p = twofa::domain::factor::TotpParams::default();
        twofa::domain::totp::code(&seed, &p, twofa::domain::totp::step_at(&p, c.api.dev.clock.now_ms()))
    };
    let path = format!("/2fa/entities/alice/factors/{factor}");
    assert_eq!(c.api.post(&format!("{path}/confirm"), &serde_json::json!({ "code": app_code() })).await.status, 200);
    c.api.advance(30).await;
    let challenge = c.api.post(&format!("{path}/challenges"), &serde_json::json!({})).await.request_id();
    assert_eq!(c.api.verify(&challenge, &app_code()).await.status, 200);
    let cookie = c.signed_in().await;
    // When the overview is shown
    let r = c.get("/console/overview?range=24h", Some(&cookie)).await;
    // Then half the verifications sent nothing, and totp has its row beside sms
    assert_eq!(text_of(&r.text, "data-metric=\"sentNothingShare\""), "50.0%");
    assert_eq!(attr_values(&r.text, "data-channel"), ["sms", "totp"]);
    // And the sessions filtered by channel totp list the challenge alone
    let r = c.get("/console/sessions?channel=totp", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(&challenge) && !r.text.contains(&sms), "{}", r.text);
}

#[tokio::test]
async fn the_overview_has_range_links_and_names_a_bad_custom_range() {
    let c = Console::start().await;
    let cookie = c.signed_in().await;
    let r = c.get("/console/overview?range=7d", Some(&cookie)).await;
    for range in ["24h", "7d", "30d"] {
        assert!(r.text.contains(&format!("href=\"/console/overview?range={range}\"")), "{range}");
    }
    assert!(r.text.contains("aria-current=\"page\">Last 7 days"));
    assert!(r.text.contains("name=\"from\"") && r.text.contains("name=\"to\""));
    let bad = c.get("/console/overview?range=custom&from=2026-12-05&to=2026-12-01", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(text_of(&bad.text, "role=\"alert\"").contains("to"));
}

// ---- sessions and timelines ----------------------------------------------------------------

#[tokio::test]
async fn the_sessions_page_pages_through_every_otp_once_by_its_next_and_prev_links() {
    // Given five sends
    let c = Console::start().await;
    let mut sent = vec![];
    for i in 0..5 {
        sent.push(c.api.sent(&format!("+1415555010{i}")).await);
        // A second apart: two sends in one millisecond have no order by time.
        c.api.advance(1).await;
    }
    let cookie = c.signed_in().await;
    // When the sessions are listed two by two, following rel="next"
    let mut seen = vec![];
    let mut path = "/console/sessions?pageSize=2".to_owned();
    let mut pages = vec![];
    loop {
        let r = c.get(&path, Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("<table id=\"sessions\">"));
        let rows = attr_values(&r.text, "data-sid");
        assert!(rows.len() <= 2);
        seen.extend(rows);
        pages.push(path.clone());
        let next = r.text.find("rel=\"next\"").map(|_| link(&r.text, "next"));
        match next {
            Some(n) => path = n,
            None => break,
        }
    }
    // Then every OTP shows exactly once, newest first, over three pages
    sent.reverse();
    assert_eq!(seen, sent);
    assert_eq!(pages.len(), 3);
    // And the last page's rel="prev" leads back to the second page's rows
    let last = c.get(&pages[2], Some(&cookie)).await;
    let back = c.get(&link(&last.text, "prev"), Some(&cookie)).await;
    assert_eq!(attr_values(&back.text, "data-sid"), sent[2..4]);
    // And each row links to its timeline, its text the sid
    let first = c.get("/console/sessions", Some(&cookie)).await;
    assert!(first.text.contains(&format!("href=\"/console/sessions/{0}\">{0}</a>", sent[0])));
}

/// The `href` of the page's link with `rel`.
fn link(page: &str, rel: &str) -> String {
    let at = page.find(&format!("rel=\"{rel}\"")).unwrap();
    let start = page[..at].rfind("href=\"").unwrap() + 6;
    page[start..].split('"').next().unwrap().replace("&amp;", "&")
}

#[tokio::test]
async fn the_sessions_filters_are_those_of_search_and_a_bad_one_is_named() {
    let c = Console::start().await;
    let verified = c.api.sent("+14155550100").await;
    let code = c.api.code_of(&verified).await;
    c.api.verify(&verified, &code).await;
    let pending = c.api.sent("+14155550101").await;
    let cookie = c.signed_in().await;
    let r = c.get("/console/sessions?status=success", Some(&cookie)).await;
    assert_eq!(attr_values(&r.text, "data-sid"), [verified]);
    let r = c.get("/console/sessions?to=%2B14155550101", Some(&cookie)).await;
    assert_eq!(attr_values(&r.text, "data-sid"), [pending]);
    for name in ["to", "channel", "status", "startDate", "endDate", "pageSize"] {
        assert!(r.text.contains(&format!("name=\"{name}\"")), "{name}");
    }
    let bad = c.get("/console/sessions?channel=fax", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(text_of(&bad.text, "role=\"alert\"").contains("channel"));
}

#[tokio::test]
async fn a_timeline_masks_the_destination_and_lists_its_events_in_time_order() {
    // Given an OTP sent, a wrong code, then the right one
    let c = Console::start().await;
    let sid = c.api.sent("+14155550123").await;
    let code = c.api.code_of(&sid).await;
    c.api.advance(5).await;
    c.api.verify(&sid, &common::wrong(&code)).await;
    c.api.advance(5).await;
    assert_eq!(c.api.verify(&sid, &code).await.status, 200);
    let cookie = c.signed_in().await;
    // When its timeline is shown
    let r = c.get(&format!("/console/sessions/{sid}"), Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Then the destination shows only its last 4 digits, nowhere in full
    assert_eq!(text_of(&r.text, "data-field=\"to\""), "••••••••0123");
    assert!(!r.text.contains("4155550123"));
    // And the events are in time order: the send, the message, the checks, the verify
    assert!(r.text.contains("<ol id=\"timeline\">"));
    assert_eq!(attr_values(&r.text, "data-kind"), ["send", "event", "check", "check", "verified"]);
    assert!(r.text.contains("data-status=\"sent\"") || r.text.contains("data-status=\"delivered\""));
}

#[tokio::test]
async fn another_accounts_otp_answers_404_in_the_timeline_as_an_unknown_one() {
    // Given two accounts, the other with an OTP
    let c = Console::start().await;
    let (other, other_token) = c.api.other_account().await;
    let r = c
        .api
        .post_as(
            &other,
            &other_token,
            "/2fa/send",
            &serde_json::json!({
                "service": "2FA", "from": "Twofa", "to": "+14155550100", "body": "Your code: {code}"
            }),
        )
        .await;
    let theirs = r.request_id();
    let cookie = c.signed_in().await;
    // When the first account asks for it, and for a sid that does not exist
    let foreign = c.get(&format!("/console/sessions/{theirs}"), Some(&cookie)).await;
    let unknown = c.get("/console/sessions/OTP00000000000000000000000000000000", Some(&cookie)).await;
    // Then both answer the same 404, showing nothing of it
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(!foreign.text.contains("0100"));
    assert_eq!(foreign.text.replace(&theirs, "X"), unknown.text.replace("OTP00000000000000000000000000000000", "X"));
}

#[tokio::test]
async fn a_parent_sees_its_sub_accounts_sessions_and_a_sub_account_not_its_parents() {
    let c = Console::start().await;
    let (sub, sub_token) = c.api.sub_account(&c.api.sid).await;
    let send = |sid: String, token: String, to: &'static str| {
        let api = &c.api;
        async move {
            let body = serde_json::json!({"service": "2FA", "from": "Twofa", "to": to, "body": "Code {code}"});
            api.post_as(&sid, &token, "/2fa/send", &body).await.request_id()
        }
    };
    let subs = send(sub.clone(), sub_token.clone(), "+14155550100").await;
    let parents = send(c.api.sid.clone(), c.api.token.clone(), "+14155550101").await;
    let parent_cookie = c.signed_in().await;
    assert_eq!(c.get(&format!("/console/sessions/{subs}"), Some(&parent_cookie)).await.status, StatusCode::OK);
    let tree = c.get("/console/sessions?subAccounts=true", Some(&parent_cookie)).await;
    assert_eq!(attr_values(&tree.text, "data-sid"), [parents.clone(), subs.clone()]);
    let sub_cookie = c.signed_in_as(&sub, &sub_token).await;
    assert_eq!(c.get(&format!("/console/sessions/{parents}"), Some(&sub_cookie)).await.status, StatusCode::NOT_FOUND);
    let own = c.get("/console/sessions", Some(&sub_cookie)).await;
    assert_eq!(attr_values(&own.text, "data-sid"), [subs]);
}

// ---- the Lambda path --------------------------------------------------------------------------

/// An API Gateway HTTP API (v2) event for the console's function.
fn v2_event(method: &str, path: &str, body: Option<&str>, cookies: &[&str], ip: &str) -> String {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "ANY /console/{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": { "content-type": "application/x-www-form-urlencoded", "host": "api.example.com" },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": "browser" },
            "requestId": "id", "routeKey": "ANY /console/{proxy+}", "stage": "$default",
            "time": "23/Nov/2026:14:00:00 +0000", "timeEpoch": 1795442400000u64
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        event["body"] = b.into();
    }
    if !cookies.is_empty() {
        event["cookies"] = cookies.iter().map(|c| serde_json::Value::from(*c)).collect();
    }
    event.to_string()
}

#[tokio::test]
async fn the_console_function_signs_in_from_a_v2_event_and_its_cookie_opens_a_page_as_lambda_passes_cookies() {
    use tower::ServiceExt;
    use twofa::{
        adapters::{clock::AdjustableClock, memory::MemoryStore, outbox::Outbox},
        domain::{account::Account, crypto::Keys},
        ports::{Deps, NoScheduler},
    };
    // Given the console's router as its Lambda serves it, and an account allowing one address
    let keys = Keys::random();
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(AdjustableClock::default());
    let sid = "AC0123456789abcdef0123456789abcdef";
    let mut account = Account::new(sid.into(), "secret-token", &keys, None, 0);
    account.allowed_ips = vec!["203.0.113.9".parse().unwrap()];
    store.put_account(&account).await.unwrap();
    let outbox = Arc::new(Outbox::new(clock.clone()));
    let deps = Deps { store, dispatcher: outbox, clock, keys: Arc::new(keys), scheduler: Arc::new(NoScheduler) };
    let router = twofa::http::console::router(deps);
    let call = |event: String| {
        let router = router.clone();
        async move {
            let req = lambda_http::request::from_str(&event).expect("a v2 event");
            router.oneshot(twofa::http::lambda::with_client_ip(req)).await.unwrap()
        }
    };
    // When the sign-in form is posted from the allowed address
    let form = format!("accountSid={sid}&authToken=secret-token");
    let resp = call(v2_event("POST", "/console/sign-in", Some(&form), &[], "203.0.113.9")).await;
    // Then a session cookie is set
    assert_eq!(resp.status(), 303);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("twofa_console="))
        .expect("a session cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    // And the cookie, as API Gateway hands it over (the event's `cookies`), opens the overview
    let resp = call(v2_event("GET", "/console/overview", None, &[&pair], "203.0.113.9")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-security-policy"], CSP);
    // And from another address it is refused, as the API refuses it
    let resp = call(v2_event("GET", "/console/overview", None, &[&pair], "198.51.100.1")).await;
    assert_eq!(resp.status(), 403);
    // And an unknown console path is the console's own 404 page
    let resp = call(v2_event("GET", "/console/nothing", None, &[&pair], "203.0.113.9")).await;
    assert_eq!(resp.status(), 404);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn a_full_sessions_page_of_100_rows_stays_under_150_kb_and_101_is_refused() {
    // Given 100 sends
    let c = Console::start().await;
    for i in 0..100 {
        c.api.sent(&format!("+1415555{i:04}")).await;
    }
    let cookie = c.signed_in().await;
    // When the largest page is asked for
    let r = c.get("/console/sessions?pageSize=100", Some(&cookie)).await;
    // Then it holds every row within the page weight
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(attr_values(&r.text, "data-sid").len(), 100);
    assert!(r.text.len() <= 150 * 1024, "{} bytes", r.text.len());
    // And a larger page is refused, naming pageSize
    let r = c.get("/console/sessions?pageSize=101", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(text_of(&r.text, "role=\"alert\"").contains("pageSize"));
}
