//! Black-box tests of session detail records (`/2fa/search`) and usage records
//! (`/2fa/usage/records`) over HTTP against the dev server (embedded store). The scenarios in
//! `records_flows` run on DynamoDB too (records_dynamodb.rs).

mod common;
mod records_flows;

use common::Api;
use records_flows as flows;
use records_flows::{assert_400_naming, search, sids};
use reqwest::Method;
use serde_json::json;

// ---- the scenarios shared with DynamoDB -----------------------------------------------------

#[tokio::test]
async fn seed_flow_search_and_single_record_show_statuses_checks_events_and_usage() {
    flows::seed_flow(&Api::start().await).await;
}

#[tokio::test]
async fn provider_refusal_is_a_failed_event_with_the_providers_code_and_message() {
    flows::provider_refusal(&Api::start().await).await;
}

#[tokio::test]
async fn paging_25_records_by_page_number_and_by_page_token_shows_each_exactly_once() {
    flows::paging(&Api::start().await).await;
}

#[tokio::test]
async fn paging_a_filtered_search_by_token_keeps_the_filter() {
    flows::paging_with_a_filter(&Api::start().await).await;
}

#[tokio::test]
async fn status_filter_matches_the_status_at_read_time() {
    flows::status_filters(&Api::start().await).await;
}

#[tokio::test]
async fn service_to_channel_and_inclusive_time_filters() {
    flows::field_and_time_filters(&Api::start().await).await;
}

#[tokio::test]
async fn another_accounts_records_are_invisible_and_answer_like_unknown_ones() {
    let api = Api::start().await;
    let (sid, token) = api.other_account().await;
    flows::tenant_isolation(&api, (&sid, &token)).await;
}

#[tokio::test]
async fn account_sid_acts_for_a_sub_account_and_sub_accounts_true_adds_the_tree() {
    let api = Api::start().await;
    let (sub, sub_token) = api.sub_account(&api.sid).await;
    let (grand, grand_token) = api.sub_account(&sub).await;
    flows::sub_accounts(&api, (&sub, &sub_token), (&grand, &grand_token)).await;
}

#[tokio::test]
async fn usage_records_per_channel_day_month_year_and_named_period_in_the_seed_shapes() {
    flows::usage_records(&Api::start().await).await;
}

#[tokio::test]
async fn usage_counts_are_exact_under_100_concurrent_sends() {
    flows::usage_under_concurrent_sends(&Api::start().await, 100, false).await;
}

// ---- input, formats, tokens (store-independent) ----------------------------------------------

#[tokio::test]
async fn bad_search_input_answers_400_naming_the_parameter() {
    let api = Api::start().await;
    for (query, param) in [
        ("pageSize=0", "pageSize"),
        ("pageSize=1001", "pageSize"),
        ("pageSize=ten", "pageSize"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("status=verified", "status"),
        ("channel=fax", "channel"),
        ("startTime=yesterday", "startTime"),
        ("endTime=2021-13-01", "endTime"),
        ("startTime=2021-02-05&endTime=2021-02-04", "endTime"),
        ("startTime=2021-02-04T10:00:01&endTime=2021-02-04T10:00:00", "endTime"),
        ("subAccounts=maybe", "subAccounts"),
        ("pageToken=forged", "pageToken"),
        // (deeper than 10,000 records by number: the pageToken walk goes there, a page's read each)
        ("page=1000000", "page"),
        ("page=11&pageSize=1000", "page"),
    ] {
        let r = api.get(&format!("/2fa/search?{query}")).await;
        assert_400_naming(&r, param);
    }
    // And the same from a POST body
    let r = api.post("/2fa/search", &json!({ "pageSize": 0 })).await;
    assert_400_naming(&r, "pageSize");
    // And the limits are inclusive
    assert_eq!(api.get("/2fa/search?pageSize=1000&page=0").await.status, 200);
    assert_eq!(api.get("/2fa/search?pageSize=1000&page=10").await.status, 200);
    assert_eq!(api.get("/2fa/search?pageSize=1&startTime=2021-02-04&endTime=2021-02-04").await.status, 200);
}

#[tokio::test]
async fn a_page_token_opens_only_for_its_account_search_and_page() {
    // Given a next-page URI of a two-page search
    let api = Api::start().await;
    flows::send_many(&api, 3).await;
    let first = search(&api, "pageSize=2").await;
    let next = first["next_page_uri"].as_str().unwrap().to_owned();
    let token = next.split("pageToken=").nth(1).unwrap().to_owned();
    assert_eq!(api.get(&next).await.status, 200);

    // When the token is used by another account, with other filters, another page size or
    // another page, or altered
    let (other, other_token) = api.other_account().await;
    let r = api
        .call_as(
            &other,
            &other_token,
            Method::GET,
            &format!("/2fa/search?pageSize=2&page=1&pageToken={token}"),
            None,
            "",
        )
        .await;
    assert_400_naming(&r, "pageToken");
    assert_400_naming(&api.get(&format!("{next}&status=pending")).await, "pageToken");
    assert_400_naming(&api.get(&format!("/2fa/search?pageSize=3&page=1&pageToken={token}")).await, "pageToken");
    assert_400_naming(&api.get(&format!("/2fa/search?pageSize=2&page=2&pageToken={token}")).await, "pageToken");
    let mut altered = token.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_400_naming(&api.get(&format!("/2fa/search?pageSize=2&page=1&pageToken={altered}")).await, "pageToken");
    // Then nothing of the first account is shown to anyone but it
    let r = api.get(&format!("/2fa/search?pageSize=2&pageToken={token}")).await;
    assert_eq!(r.status, 200, "without page the token's page is used: {}", r.text);
    assert_eq!(r.json()["page"], 1);
}

#[tokio::test]
async fn search_takes_post_json_post_form_and_get_query_alike() {
    let api = Api::start().await;
    let sent = flows::send_many(&api, 3).await;
    let code = api.code_of(&sent[1]).await;
    api.verify(&sent[1], &code).await;
    let by_query = api.get("/2fa/search?status=success&pageSize=5").await.json();
    let by_json = api.post("/2fa/search", &json!({ "status": "success", "pageSize": 5 })).await.json();
    let by_form = api
        .call(Method::POST, "/2fa/search.json", Some("status=success&pageSize=5"), "application/x-www-form-urlencoded")
        .await
        .json();
    assert_eq!(sids(&by_query), [sent[1].clone()]);
    assert_eq!(by_query, by_json);
    assert_eq!(by_query, by_form);
}

#[tokio::test]
async fn records_answer_in_xml_on_xml_suffix() {
    let api = Api::start().await;
    let sid = api.sent("+14155550100").await;
    for path in
        ["/2fa/search.xml".to_owned(), format!("/2fa/search/{sid}.xml"), "/2fa/usage/records/today.xml".to_owned()]
    {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.headers["content-type"], "application/xml", "{path}");
        assert!(r.text.starts_with("<?xml") && r.text.contains("<TwoFactorResponse>"), "{path}: {}", r.text);
    }
    let r = api.get("/2fa/search.xml").await;
    assert!(r.text.contains(&format!("<twoFaOtpSdrs><item><sid>{sid}</sid>")), "{}", r.text);
}

#[tokio::test]
async fn an_xml_answer_stays_well_formed_whatever_a_stored_field_holds() {
    // Given an OTP whose service holds characters XML 1.0 has no form for
    let api = Api::start().await;
    let r = api.send_to("+14155550100", json!({ "service": "2FA\u{0001}\u{001f}\u{ffff}x" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // When the records are read as XML
    let r = api.get("/2fa/search.xml").await;
    // Then every character is one XML 1.0 allows, and the document parses to its end
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    assert!(r.text.chars().all(allowed), "{:?}", r.text);
    let mut reader = quick_xml::Reader::from_str(&r.text);
    let mut services = vec![];
    let mut in_service = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(e) => in_service = e.name().as_ref() == b"service",
            quick_xml::events::Event::Text(t) if in_service => services.push(t.decode().unwrap().into_owned()),
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    // And the service reads with each such character as U+FFFD
    assert_eq!(services, ["2FA\u{FFFD}\u{FFFD}\u{FFFD}x"]);
}

#[tokio::test]
async fn bad_usage_input_answers_400_naming_the_parameter_and_unknown_periods_404() {
    let api = Api::start().await;
    for (query, param) in [
        ("startDate=2020-02-30", "startDate"),
        ("endDate=yesterday", "endDate"),
        ("startDate=2020-02-02&endDate=2020-02-01", "endDate"),
        ("startTime=2020-01-01T00:00:00", "startTime"),
        ("channel=fax", "channel"),
    ] {
        assert_400_naming(&api.get(&format!("/2fa/usage/records?{query}")).await, param);
    }
    assert_400_naming(&api.get("/2fa/usage/records/daily?channel=fax").await, "channel");
    for path in ["/2fa/usage/records/weekly", "/2fa/usage/records/weekly.json", "/2fa/usage/records/daily/extra"] {
        let r = api.get(path).await;
        assert_eq!(
            (r.status.as_u16(), r.text.as_str()),
            (404, r#"{"code":404,"message":"Not found","requestID":null}"#),
            "{path}"
        );
    }
    // And a range or period without usage answers a zero count, daily answers no records
    assert_eq!(flows::usage_count(&api, "/2fa/usage/records?startDate=2020-01-01&endDate=2020-01-31").await, 0);
    assert_eq!(flows::usage(&api, "/2fa/usage/records/daily").await, Vec::<serde_json::Value>::new());
}

#[tokio::test]
async fn records_need_authentication() {
    let api = Api::start().await;
    for path in ["/2fa/search", "/2fa/usage/records", "/2fa/usage/records/daily"] {
        let r = api.call_as(&api.sid, "wrong-token", Method::GET, path, None, "").await;
        assert_eq!(r.status, 401, "{path}");
    }
}
