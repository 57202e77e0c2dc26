"""The operator console in a real browser (issue 28), against docs/console.md.

Each test makes its own account on the dev server (but the one marked `deployed`, which also
runs against make local-aws as the stack's account), drives headless Chromium as a user would,
and fails on any browser console error, failed request or unexpected HTTP error (conftest.Guard).
Every page it opens is checked with axe-core (no serious or critical violation) and
photographed into .run/console-NAME.png.
"""

from __future__ import annotations

import datetime
import random
import re
import string

import pytest
from conftest import (
    METRICS,
    NAV,
    check_page,
    http,
    make_account,
    nav,
    new_number,
    new_watched_page,
    percent,
    session_cookie,
    sign_in,
)
from playwright.sync_api import Page, expect


def unique(prefix: str) -> str:
    return prefix + "".join(random.choice(string.ascii_lowercase) for _ in range(8))


def path_of(page: Page) -> str:
    return path_of_url(page.url)


def path_of_url(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]


def figure(page: Page, metric: str) -> str:
    el = page.locator(f'[data-metric="{metric}"]')
    assert el.count() == 1, f"{el.count()} elements with data-metric={metric}"
    return el.inner_text().strip()


def shows_number(text: str, n: int) -> bool:
    return text.replace(",", "").replace("\u202f", "").replace(" ", "") == str(n)


def submit(page: Page, button: str):
    """Presses a form's button and waits for the page it answers with (the redirect's)."""
    with page.expect_navigation():
        page.get_by_role("button", name=button, exact=True).click()


# --- signing in and out --------------------------------------------------------------------


@pytest.mark.deployed
def test_an_operator_signs_in_sees_the_overview_and_after_signing_out_the_same_cookie_is_refused(
    page, context, browser, guard, axe, account
):
    # Given a visitor without a session at the console's root
    page.goto("/console")
    assert path_of(page) == "/console/sign-in", "the root sends a visitor without a session to sign in"
    check_page(page, axe, "sign-in", "Sign in")

    # When the operator signs in with the account's sid and auth token
    sign_in(page, account)

    # Then the overview shows its figures under the console's navigation
    check_page(page, axe, "overview", "Overview")
    for name in NAV:
        expect(nav(page).get_by_role("link", name=name, exact=True)).to_be_visible()
    for metric in METRICS:
        figure(page, metric)
    cookie = session_cookie(context)
    assert cookie, "signing in set no twofa_console cookie"
    # and the root now sends the signed-in operator to the overview
    page.goto("/console")
    assert path_of(page) == "/console/overview"

    # When the operator signs out
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()

    # Then they are at the sign-in form again, without a session
    assert path_of(page) == "/console/sign-in"
    expect(page.get_by_label("Auth token")).to_be_visible()
    page.goto("/console/overview")
    assert path_of(page) == "/console/sign-in", "after signing out the overview sends to sign in"

    # And the cookie they had is refused by the server too (replayed in a fresh browser)
    guard.expect(401, "/console/overview")
    ctx, other = new_watched_page(browser, guard)
    try:
        ctx.add_cookies([cookie])
        answer = other.goto("/console/overview")
        assert answer.status in (200, 401), f"a signed-out cookie answered {answer.status}"
        assert path_of(other) in ("/console/sign-in", "/console/overview")
        expect(nav(other)).to_have_count(0)
        assert other.locator('[data-metric="sends"]').count() == 0, "a signed-out cookie still shows the overview"
    finally:
        ctx.close()


def test_a_wrong_auth_token_is_refused_with_an_alert_and_no_session(page, context, guard, axe, account):
    # Given the sign-in form
    page.goto("/console/sign-in")
    wrong = "wrong-" + account.token[::-1]

    # When the account's sid is given with a wrong token
    guard.expect(401, "/console/sign-in")
    page.get_by_label("Account SID").fill(account.sid)
    page.get_by_label("Auth token").fill(wrong)
    with page.expect_response(lambda r: r.request.method == "POST" and "/console/sign-in" in r.url) as posted:
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")

    # Then the form answers 401 with the alert, and no session began
    assert posted.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("The account SID or auth token is wrong.")
    expect(page.get_by_label("Auth token")).to_be_visible()
    assert wrong not in page.content(), "the wrong token is written back into the page"
    assert session_cookie(context) is None
    check_page(page, axe, "sign-in-refused", "Sign in")
    page.goto("/console/overview")
    assert path_of(page) == "/console/sign-in"


def test_keyboard_alone_signs_in_and_reaches_every_page_through_the_nav(page, account):
    # Given the sign-in page and a keyboard only
    page.goto("/console/sign-in")

    # When the operator tabs to the fields, types, and presses Enter
    tab_to(page, lambda el: el["name"] == "accountSid", "the Account SID field")
    page.keyboard.type(account.sid)
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "authToken", "Tab from the sid goes to the auth token"
    page.keyboard.type(account.token)
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Then they are signed in, and Tab through the navigation reaches each page, its focus visible
    page.wait_for_url(re.compile(r"/console/overview"))
    for name in NAV[1:] + NAV[:1]:
        link = tab_to(page, lambda el, name=name: el["tag"] == "A" and el["inNav"] and el["text"] == name, f"the {name} link")
        assert link["focusVisible"], f"the focused {name} link shows no focus indicator"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text(name)


FOCUSED_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  return {tag: el.tagName, name: el.getAttribute('name') || '', text: (el.innerText || '').trim(),
          inNav: !!el.closest('nav[aria-label="Console"]'),
          focusVisible: el.matches(':focus-visible') && (outline || s.boxShadow !== 'none')};
}"""


def focused(page: Page):
    return page.evaluate(FOCUSED_JS) or {"tag": "", "name": "", "text": "", "inNav": False, "focusVisible": False}


def tab_to(page: Page, want, what: str, most: int = 40):
    """Presses Tab until the focused element is what `want` accepts (from the page's start)."""
    seen = []
    for _ in range(most):
        page.keyboard.press("Tab")
        el = focused(page)
        if want(el):
            return el
        seen.append(el["tag"] + ("[" + (el["name"] or el["text"][:20]) + "]"))
    raise AssertionError(f"{most} Tabs never reached {what}; focus went: {' '.join(seen)}")


# --- the overview and the insights API -----------------------------------------------------


def test_otps_sent_through_the_api_are_counted_on_the_overview_as_the_insights_api_counts_them(page, axe, dev_only):
    # Given an account that may send SMS to the US and GB only, three sends, two of them
    # verified, and one refused for its country (FR: 476)
    acct = make_account(allowedCountries={"sms": ["US", "GB"]})
    sent = []
    for to in (new_number("US"), new_number("US"), new_number("GB")):
        got = acct.send(to)
        assert got.status == 200, got
        sent.append((got.body["requestID"], to))
    for rid, to in sent[:2]:
        got = acct.verify(rid, acct.code_sent_to(to))
        assert got.status == 200, got
    refused = acct.send(new_number("FR"))
    assert (refused.status, refused.code) == (403, 476), refused

    # When the operator opens the overview of the last 24 hours
    sign_in(page, acct)
    page.goto("/console/overview?range=24h")
    api = acct.insights(range="24h")

    # Then the insights API counts what happened
    totals = api["totals"]
    assert (totals["sends"], totals["verified"], totals["refused"]["476"]) == (3, 2, 1), totals
    # and every figure on the page is the API's
    assert_figures_are(page, totals)
    # as are the channel and country tables, row by row (countries most sends first)
    channels = {
        r.get_attribute("data-channel"): int(r.get_attribute("data-sends"))
        for r in page.locator("table#channels [data-channel]").all()
    }
    assert channels == {c["channel"]: c["sends"] for c in api["channels"]}, (channels, api["channels"])
    rows = page.locator("table#countries [data-country]").all()
    countries = [(r.get_attribute("data-country"), int(r.get_attribute("data-sends"))) for r in rows]
    assert countries == [(c["country"], c["sends"]) for c in api["countries"]], (countries, api["countries"])
    assert ("US", 2) in countries and ("GB", 1) in countries, countries
    for r in rows:
        if int(r.get_attribute("data-sends")) > 0:
            assert r.locator("svg").count() >= 1, f"country row {r.get_attribute('data-country')} has no bar"
    chart = page.locator("svg[role=img][aria-label]")
    assert chart.count() >= 1, "no time series (svg role=img with an aria-label)"
    assert chart.first.get_attribute("aria-label").strip()
    check_page(page, axe, "overview", "Overview")

    # When the operator follows the 7-day range link
    with page.expect_navigation():
        page.locator('a[href*="range=7d"]').first.click()

    # Then the figures are the API's for 7 days
    assert_figures_are(page, acct.insights(range="7d")["totals"])
    check_page(page, axe, "overview-7d", "Overview")

    # When the operator asks for a custom range in its form: yesterday to tomorrow (UTC), which
    # holds the sends even when midnight passed since
    today = datetime.datetime.now(datetime.timezone.utc).date()
    start, end = (today - datetime.timedelta(days=1)).isoformat(), (today + datetime.timedelta(days=1)).isoformat()
    form = page.locator("form").filter(has=page.locator('[name="from"]'))
    form.locator('[name="from"]').fill(start)
    form.locator('[name="to"]').fill(end)
    with page.expect_navigation():
        form.locator('button, input[type="submit"]').first.click()

    # Then the page shows that range, and the API's figures for it
    assert "range=custom" in page.url and f"from={start}" in page.url and f"to={end}" in page.url, page.url
    custom = acct.insights(**{"from": start, "to": end})["totals"]
    assert custom["sends"] == 3, custom
    assert_figures_are(page, custom)


def assert_figures_are(page: Page, totals: dict):
    want = {
        "sends": str(totals["sends"]),
        "verified": str(totals["verified"]),
        "conversionRate": percent(totals["conversionRate"]),
        "deliveryRate": percent(totals["deliveryRate"]),
    }
    for code, n in totals["refused"].items():
        want[f"refused-{code}"] = str(n)
    got = {m: figure(page, m) for m in METRICS}
    for m in METRICS:
        ok = shows_number(got[m], int(want[m])) if want[m].isdigit() else got[m] == want[m]
        assert ok, f"figure {m}: the page shows {got[m]!r}, the insights API says {want[m]!r}\n page: {got}\n API: {totals}"


# --- sessions and a timeline ---------------------------------------------------------------


def test_an_otp_is_found_in_sessions_by_page_and_by_number_and_its_timeline_shows_the_send_the_check_and_the_verify(
    page, axe, dev_only
):
    # Given an account with two OTPs, one of them checked with a wrong code, then verified
    acct = make_account()
    to, other = new_number("US"), new_number("US")
    rid = acct.send(to).body["requestID"]
    other_rid = acct.send(other).body["requestID"]
    code = acct.code_sent_to(to)
    wrong = "".join(str((int(d) + 1) % 10) for d in code)
    assert acct.verify(rid, wrong).status != 200
    assert acct.verify(rid, code).status == 200

    # When the operator opens Sessions from the navigation
    sign_in(page, acct)
    with page.expect_navigation():
        nav(page).get_by_role("link", name="Sessions", exact=True).click()

    # Then both OTPs are listed
    check_page(page, axe, "sessions", "Sessions")
    table = page.locator("table#sessions")
    expect(table.get_by_role("link", name=rid, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=other_rid, exact=True)).to_be_visible()

    # When they ask for one OTP a page
    size = page.locator('form [name="pageSize"]')
    size.fill("1")
    with page.expect_navigation():
        size.press("Enter")

    # Then the newest is listed alone, the other one page further (rel="next"), and back
    expect(table.get_by_role("link", name=other_rid, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=rid, exact=True)).to_have_count(0)
    with page.expect_navigation():
        page.locator('a[rel="next"]').click()
    expect(table.get_by_role("link", name=rid, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=other_rid, exact=True)).to_have_count(0)
    with page.expect_navigation():
        page.locator('a[rel="prev"]').click()
    expect(table.get_by_role("link", name=other_rid, exact=True)).to_be_visible()

    # When they filter by the first OTP's number
    with page.expect_navigation():
        page.locator('form [name="to"]').fill(to)
        page.locator('form [name="to"]').press("Enter")

    # Then only that OTP is listed
    expect(table.get_by_role("link", name=rid, exact=True)).to_be_visible()
    expect(table.get_by_role("link", name=other_rid, exact=True)).to_have_count(0)

    # When they open it
    with page.expect_navigation():
        table.get_by_role("link", name=rid, exact=True).click()

    # Then its timeline shows the masked destination and every event in time order: the send
    # first, the verify last, the wrong check between
    assert path_of(page) == f"/console/sessions/{rid}"
    check_page(page, axe, "timeline")
    shown = page.locator('[data-field="to"]').inner_text().strip()
    assert shown.endswith(to[-4:]) and to[1:-4] not in shown, f"the destination is shown as {shown!r}"
    items = [t.lower() for t in page.locator("ol#timeline > li").all_inner_texts()]
    assert len(items) >= 3, f"a send, a wrong check and a verify make {len(items)} timeline items: {items}"
    assert re.search(r"\bsen[dt]", items[0]), f"the first item is not the send: {items[0]!r}"
    assert "verif" in items[-1], f"the last item is not the verify: {items[-1]!r}"
    times = page.locator("ol#timeline > li time[datetime]").evaluate_all("ts => ts.map(t => t.getAttribute('datetime'))")
    assert times == sorted(times), f"the timeline is not in time order: {times}"


def test_another_accounts_otp_answers_404_in_the_console_as_an_unknown_one(page, guard, dev_only):
    # Given an OTP of one account, and an operator of another signed in
    owner, stranger = make_account(), make_account()
    to = new_number("US")
    rid = owner.send(to).body["requestID"]
    unknown = "OTP" + "0" * 32
    sign_in(page, stranger)

    # When the stranger opens that OTP's timeline, and an unknown one's
    guard.expect(404, f"/console/sessions/{rid}")
    guard.expect(404, f"/console/sessions/{unknown}")
    theirs = page.goto(f"/console/sessions/{rid}")
    theirs_text = page.locator("main").inner_text().replace(rid, "SID")
    masked = page.locator('[data-field="to"]').count()
    none = page.goto(f"/console/sessions/{unknown}")
    none_text = page.locator("main").inner_text().replace(unknown, "SID")

    # Then both answer 404 with the same page, nothing of the OTP shown
    assert (theirs.status, none.status) == (404, 404)
    assert masked == 0 and to[-4:] not in theirs_text
    assert theirs_text == none_text


# --- limits and workflows ------------------------------------------------------------------


def test_a_limit_whose_bad_json_is_refused_with_an_alert_then_created_holds_api_sends_and_once_deleted_is_unknown(
    page, guard, axe, dev_only
):
    # Given an operator on the Limits page
    acct = make_account()
    sign_in(page, acct)
    with page.expect_navigation():
        nav(page).get_by_role("link", name="Limits", exact=True).click()
    check_page(page, axe, "limits", "Limits")
    name = unique("per_key_")

    # When they first give buckets that are not JSON
    guard.expect(400, "/console/limits")
    page.locator('form [name="name"]').fill(name)
    page.locator('form [name="buckets"]').fill("one a minute")
    with page.expect_response(lambda r: r.request.method == "POST" and path_of_url(r.url) == "/console/limits") as posted:
        page.get_by_role("button", name="Create limit", exact=True).click()
    page.wait_for_load_state("load")

    # Then the form comes back (400) with an alert naming the field, what was typed kept
    assert posted.value.status == 400, posted.value.status
    expect(page.get_by_role("alert")).to_contain_text("buckets")
    expect(page.locator('form [name="name"]')).to_have_value(name)
    expect(page.locator(f'table#limits [data-name="{name}"]')).to_have_count(0)

    # When they create a limit of one send per key value a minute
    page.locator('form [name="name"]').fill(name)
    page.locator('form [name="description"]').first.fill("one a minute")
    page.locator('form [name="buckets"]').fill('[{"name":"minute","max":1,"interval":60}]')
    submit(page, "Create limit")

    # Then the page says so and lists it, and the API holds a second send with the same key
    expect(page.get_by_role("status")).to_be_visible()
    row = page.locator(f'table#limits [data-name="{name}"]')
    expect(row).to_have_count(1)
    key = "203.0.113.7"
    assert acct.send(new_number("US"), limits={name: key}).status == 200
    held = acct.send(new_number("US"), limits={name: key})
    assert (held.status, held.code) == (404, 454), held

    # When they edit its description on its own page
    with page.expect_navigation():
        row.get_by_role("link", name="Edit").click()
    check_page(page, axe, "limit")
    page.locator('form [name="description"]').fill("edited in the console")
    submit(page, "Save")

    # Then the API answers the new description
    expect(page.get_by_role("status")).to_be_visible()
    listed = http_limits(acct, name)
    assert listed and listed[0]["description"] == "edited in the console", listed

    # When they delete it from the list
    with page.expect_navigation():
        nav(page).get_by_role("link", name="Limits", exact=True).click()
    with page.expect_navigation():
        page.locator(f'table#limits [data-name="{name}"]').get_by_role("button", name="Delete").click()

    # Then it is gone from the page and the API: a send naming it answers 495
    expect(page.get_by_role("status")).to_be_visible()
    expect(page.locator(f'table#limits [data-name="{name}"]')).to_have_count(0)
    assert http_limits(acct, name) == []
    gone = acct.send(new_number("US"), limits={name: key})
    assert (gone.status, gone.code) == (409, 495), gone


def http_limits(acct, name):
    got = http("GET", "/2fa/limits/search", auth=acct.auth, query={"name": name})
    assert got.status == 200, got
    return [lim for lim in got.body["data"]["result"] if lim["name"] == name]


def test_a_workflow_created_and_edited_in_the_console_is_the_one_the_api_answers(page, axe, dev_only):
    # Given an operator on the Workflows page
    acct = make_account()
    sign_in(page, acct)
    with page.expect_navigation():
        nav(page).get_by_role("link", name="Workflows", exact=True).click()
    check_page(page, axe, "workflows", "Workflows")
    name = unique("sms then call ")

    # When they create a workflow of an SMS, then a call a minute later
    page.locator('form [name="name"]').fill(name)
    page.locator('form [name="steps"]').fill('[{"channel":"sms","interval":0},{"channel":"call","interval":60}]')
    submit(page, "Create workflow")

    # Then it is listed, and the API has the same steps
    expect(page.get_by_role("status")).to_be_visible()
    row = page.locator(f'table#workflows [data-name="{name}"]')
    expect(row).to_have_count(1)
    got = http("GET", "/2fa/workflows/search", auth=acct.auth, query={"name": name})
    found = [w for w in got.body["data"]["result"] if w["name"] == name]
    assert [s["channel"] for s in found[0]["channels"]] == ["sms", "call"], found

    # When they change its description on its own page
    with page.expect_navigation():
        row.get_by_role("link", name="Edit").click()
    check_page(page, axe, "workflow")
    page.locator('form [name="description"]').fill("edited in the console")
    submit(page, "Save")

    # Then the API answers it
    expect(page.get_by_role("status")).to_be_visible()
    got = http("GET", f"/2fa/workflows/{found[0]['sid']}", auth=acct.auth)
    assert got.body["data"]["description"] == "edited in the console", got


# --- the account's policy ------------------------------------------------------------------


def test_sms_countries_saved_on_the_account_page_are_enforced_by_the_api_and_a_rotated_secret_shows_once(page, axe, dev_only):
    # Given an account that may send SMS anywhere
    acct = make_account()
    assert acct.send(new_number("US")).status == 200

    # When the operator limits SMS to GB on the account page
    sign_in(page, acct)
    with page.expect_navigation():
        nav(page).get_by_role("link", name="Account", exact=True).click()
    check_page(page, axe, "account", "Account")
    page.locator('[name="smsCountries"]').fill("GB")
    submit(page, "Save geo permissions")

    # Then the page says so and shows GB, and the API refuses a US number (476) but sends to GB
    expect(page.get_by_role("status")).to_be_visible()
    expect(page.locator('[name="smsCountries"]')).to_have_value("GB")
    us = acct.send(new_number("US"))
    assert (us.status, us.code) == (403, 476), us
    assert acct.send(new_number("GB")).status == 200

    # When they rotate the webhook secret
    with page.expect_navigation():
        page.get_by_role("button", name="Rotate secret").click()

    # Then the new secret is shown once, and not again on the next visit
    secret = page.locator('[data-field="secret"]')
    expect(secret).to_have_count(1)
    assert secret.inner_text().strip().startswith("whsec_"), secret.inner_text()
    page.goto("/console/account")
    expect(page.locator('[data-field="secret"]')).to_have_count(0)


# --- what holds on every page --------------------------------------------------------------


def test_a_change_posted_without_the_sessions_csrf_token_is_refused(page, account, dev_only):
    # Given a signed-in operator and the limits page's create form
    sign_in(page, account)
    page.goto("/console/limits")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Create limit"))
    action = form.get_attribute("action") or "/console/limits"
    assert form.locator('input[type="hidden"][name="csrf"]').count() == 1, "the form carries no csrf input"
    name = unique("no_csrf_")

    # When the same form is posted with the session's cookie but without its csrf token
    answer = page.request.post(
        action,
        form={"name": name, "description": "", "buckets": '[{"name":"m","max":1,"interval":60}]'},
        max_redirects=0,
    )

    # Then it answers 403 and nothing is created
    assert answer.status == 403, answer.status
    got = http("GET", "/2fa/limits/search", auth=account.auth, query={"name": name})
    assert got.body["data"]["result"] == []


def test_the_session_cookie_is_http_only_and_strict_and_every_page_forbids_scripts(page, context, account):
    # Given the sign-in page
    answer = page.goto("/console/sign-in")
    assert_strict_csp(answer.headers.get("content-security-policy", ""), "sign-in")

    # When the operator signs in
    sign_in(page, account)

    # Then the session cookie is out of scripts' reach, same-site only, and scoped to /console
    cookie = session_cookie(context)
    assert cookie, "no twofa_console cookie"
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == "/console", cookie
    assert "twofa_console" not in page.evaluate("document.cookie")
    # and each page forbids scripts and has none
    for url in ("/console/overview", "/console/sessions", "/console/limits", "/console/workflows", "/console/account"):
        answer = page.goto(url)
        assert answer.status == 200, (url, answer.status)
        assert_strict_csp(answer.headers.get("content-security-policy", ""), url)
        assert page.locator("script").count() == 0, f"{url} has a <script>"
        assert page.locator("[style]").count() == 0, f"{url} has an inline style attribute"


def assert_strict_csp(csp: str, where: str):
    for part in ("default-src 'none'", "style-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert part in csp, f"{where}: Content-Security-Policy {csp!r} lacks {part!r}"
    assert "script-src" not in csp, f"{where}: Content-Security-Policy allows scripts: {csp!r}"
