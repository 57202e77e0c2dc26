"""The console's browser tests: fixtures and helpers (pytest + Playwright's sync API).

Run by infra/scripts/browser.sh (make test-browser), which starts a dev server and sets:

  TWOFA_BROWSER_URL        the API's base URL (the console is under /console)
  TWOFA_BROWSER_DEV=1      the dev routes are there: tests make their own accounts
                           (POST /dev/accounts) and read codes from GET /dev/outbox
  TWOFA_BROWSER_SID/TOKEN  without the dev routes (make local-aws): the account to sign in as
  TWOFA_CHROMIUM           Debian's chromium (Playwright downloads no browser here)
  TWOFA_BROWSER_SHOTS      where screenshots go (default .run), as PREFIX + page name + .png
  TWOFA_BROWSER_SHOT_PREFIX  default `console-`

Every test gets a `page` whose console errors, uncaught page errors, failed requests and HTTP
error answers fail the test at its end, unless the test said beforehand that it expects that
answer (`guard.expect(401, "/console/sign-in")`).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import random
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = os.environ.get("TWOFA_BROWSER_URL", "http://127.0.0.1:3000").rstrip("/")
DEV = os.environ.get("TWOFA_BROWSER_DEV") == "1"
SHOTS = pathlib.Path(os.environ.get("TWOFA_BROWSER_SHOTS", ROOT / ".run"))
SHOT_PREFIX = os.environ.get("TWOFA_BROWSER_SHOT_PREFIX", "console-")
# The figures of the overview (docs/console.md), in the page's order.
METRICS = ["sends", "verified", "conversionRate", "deliveryRate"] + [
    f"refused-{c}" for c in ("453", "454", "476", "477", "478")
]
NAV = ["Overview", "Sessions", "Limits", "Workflows", "Account"]
# axe-core impacts that fail a page.
FAILING_IMPACTS = {"serious", "critical"}
# sam local answers a cold function's first request in seconds.
TIMEOUT_MS = 60_000 if not DEV else 15_000


def chromium_path() -> str:
    given = os.environ.get("TWOFA_CHROMIUM")
    for path in (given, "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("no chromium: apt-get install chromium (or set TWOFA_CHROMIUM)")


# --- the API, as a client calls it ---------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: dict

    @property
    def code(self):
        return self.body.get("code")


def http(method: str, path: str, body=None, auth=None, query=None) -> Answer:
    url = BASE + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_MS / 1000) as resp:
            return Answer(resp.status, json.loads(resp.read() or b"{}"))
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return Answer(e.code, parsed)


def new_number(country: str = "US") -> str:
    """A number that can exist and that no other test sends to (the default limit allows one
    send a minute per destination)."""
    digits = "".join(random.choice("0123456789") for _ in range(6))
    return {"US": f"+14155{digits}", "GB": f"+447400{digits}", "FR": f"+33612{digits}"}[country]


@dataclass
class Account:
    sid: str
    token: str
    numbers: list = field(default_factory=list)

    @property
    def auth(self):
        return (self.sid, self.token)

    def send(self, to: str, **extra) -> Answer:
        body = {"service": "2FA", "from": "Twofa", "to": to, "body": "Your verification code is: {code}"}
        body.update(extra)
        return http("POST", "/2fa/send", body, auth=self.auth)

    def verify(self, request_id: str, code: str) -> Answer:
        return http("POST", "/2fa/verify", {"service": "2FA", "requestId": request_id, "code": code}, auth=self.auth)

    def code_sent_to(self, to: str) -> str:
        """The code of the newest message the dev outbox holds for `to`."""
        got = http("GET", "/dev/outbox", query={"to": to})
        assert got.status == 200, got
        messages = got.body["messages"]
        assert messages, f"no message sent to {to}"
        found = re.search(r"\d{4,10}", messages[0]["body"])
        assert found, messages[0]
        return found.group(0)

    def insights(self, **query) -> dict:
        got = http("GET", "/2fa/insights", auth=self.auth, query=query or None)
        assert got.status == 200, f"GET /2fa/insights {query}: {got}"
        return got.body["data"]


def make_account(**policy) -> Account:
    """A new account on the dev server (POST /dev/accounts), with any policy part."""
    got = http("POST", "/dev/accounts", policy)
    assert got.status == 200, f"POST /dev/accounts: {got}"
    return Account(got.body["accountSid"], got.body["authToken"])


@pytest.fixture
def account() -> Account:
    """An account of this test's own on the dev server, or the one given (make local-aws)."""
    if DEV:
        return make_account()
    sid, token = os.environ.get("TWOFA_BROWSER_SID"), os.environ.get("TWOFA_BROWSER_TOKEN")
    if not (sid and token):
        pytest.fail("no dev routes (TWOFA_BROWSER_DEV) and no TWOFA_BROWSER_SID / TWOFA_BROWSER_TOKEN")
    return Account(sid, token)


@pytest.fixture
def dev_only():
    if not DEV:
        pytest.fail("this test needs the dev server's routes (run it with make test-browser)")


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=args, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def axe():
    return Axe()


class Guard:
    """What went wrong in the browser: console errors, page errors, failed requests, HTTP error
    answers. An answer the test expects (status and path) is not a fault, nor the console line
    Chromium prints for it."""

    def __init__(self):
        self.faults: list[str] = []
        self.expected: list[tuple[int, str]] = []
        self.seen_expected: set[tuple[int, str]] = set()

    def expect(self, status: int, path: str | re.Pattern):
        """An answer with this status at this path (or any path the pattern matches whole: a
        sid the page makes) is expected."""
        self.expected.append((status, path))

    def _expected(self, status: int, url: str) -> bool:
        path = urllib.parse.urlsplit(url).path
        for exp in self.expected:
            matches = exp[1].fullmatch(path) if isinstance(exp[1], re.Pattern) else path == exp[1]
            if exp[0] == status and matches:
                self.seen_expected.add(exp)
                return True
        return False

    def watch(self, page: Page):
        page.on("console", self._console)
        page.on("pageerror", lambda err: self.faults.append(f"page error: {err}"))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, msg):
        if msg.type != "error":
            return
        text = msg.text
        url = (msg.location or {}).get("url", "")
        status = re.search(r"status of (\d{3})", text)
        if status and self._expected(int(status.group(1)), url):
            return
        self.faults.append(f"console {msg.type}: {text} ({url})")

    def _request_failed(self, req):
        # A load the page's own next navigation cancelled (the icon of a page left at once).
        if req.failure == "net::ERR_ABORTED":
            return
        self.faults.append(f"request failed: {req.method} {req.url}: {req.failure}")

    def _response(self, resp):
        if resp.status >= 400 and not self._expected(resp.status, resp.url):
            self.faults.append(f"HTTP {resp.status}: {resp.request.method} {resp.url}")

    def check(self):
        assert not self.faults, "the browser reported:\n  " + "\n  ".join(self.faults)


@pytest.fixture
def guard() -> Guard:
    return Guard()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(base_url=BASE, viewport={"width": 1280, "height": 900}, locale="en-US")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_failed = report.failed


@pytest.fixture
def page(request, context, guard) -> Page:
    """A page of the test's own context, watched by `guard`: any fault fails the test (a test
    that failed already only prints them, so it counts once)."""
    p = context.new_page()
    guard.watch(p)
    yield p
    # Late console lines (a stylesheet, a favicon) arrive after the last navigation.
    p.wait_for_timeout(200)
    if getattr(request.node, "call_failed", False):
        if guard.faults:
            print("the browser also reported:\n  " + "\n  ".join(guard.faults))
        return
    guard.check()


def new_watched_page(browser, guard: Guard, **context_args):
    ctx = browser.new_context(base_url=BASE, viewport={"width": 1280, "height": 900}, **context_args)
    ctx.set_default_timeout(TIMEOUT_MS)
    p = ctx.new_page()
    guard.watch(p)
    return ctx, p


# --- what every page is held to ------------------------------------------------------------


def check_page(page: Page, axe: Axe, name: str, heading: str | None = None):
    """The page is whole and accessible: its <h1> is `heading` (when given), axe-core finds no
    serious or critical violation; then a full-page screenshot goes to .run/console-NAME.png."""
    page.wait_for_load_state("load")
    h1 = page.locator("h1")
    assert h1.count() == 1, f"{name}: {h1.count()} <h1> elements"
    if heading is not None:
        assert h1.inner_text().strip() == heading, f"{name}: <h1> is {h1.inner_text()!r}"
    results = axe.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in FAILING_IMPACTS]
    detail = "\n".join(
        f"  {v['impact']}: {v['id']} ({v['help']}): " + ", ".join(str(n["target"]) for n in v["nodes"][:5]) for v in bad
    )
    shot(page, name)
    assert not bad, f"{name}: axe-core found serious or critical violations:\n{detail}"


def shot(page: Page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{SHOT_PREFIX}{name}.png"), full_page=True)


def sign_in(page: Page, account: Account):
    """Signs in through the form, by mouse and keyboard as a user would; lands on the overview.
    (The suite signs in about a dozen times from 127.0.0.1; the console takes 30 sign-ins per
    address in 15 minutes, and each run has a dev server of its own.)"""
    page.goto("/console/sign-in")
    page.get_by_label("Account SID").fill(account.sid)
    page.get_by_label("Auth token").fill(account.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/overview"))


def nav(page: Page):
    return page.get_by_role("navigation", name="Console")


def session_cookie(context) -> dict | None:
    for c in context.cookies():
        if c["name"] == "twofa_console":
            return c
    return None


def percent(rate) -> str:
    """How the overview shows a rate (docs/console.md): `75.0%`, `–` when there is none."""
    return "–" if rate is None else f"{rate * 100:.1f}%"
