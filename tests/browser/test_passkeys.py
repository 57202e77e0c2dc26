"""Passkeys end to end (issue 29): the dev server's demo page (GET /demo/passkeys) in headless
Chromium with a virtual authenticator (Chrome DevTools Protocol, WebAuthn domain), against the
API as docs/api.md describes it: register, sign in, a cloned credential with a stale signature
counter refused, a page of another origin refused, and the page accessible.

WebAuthn wants a domain as the relying party's id, so the page is opened as
http://localhost:PORT (the dev server binds 127.0.0.1, which `localhost` names), for accounts
whose `passkeys` policy is `{"rpId": "localhost", "origins": ["http://localhost:PORT"]}`.
The demo page is the dev server's alone: none of these runs against make local-aws.
"""

from __future__ import annotations

import random
import re
import socket
import string
import urllib.parse

import pytest
from conftest import BASE, check_page, http, make_account
from playwright.sync_api import Page, expect

# The dev server, named as WebAuthn wants it.
PORT = urllib.parse.urlsplit(BASE).port
ORIGIN = f"http://localhost:{PORT}"
DEMO = "/demo/passkeys"
# The status line's outcome once a ceremony has ended.
ENDED = re.compile(r"^(registered|verified|refused|error)$")
# A user-verifying platform authenticator that keeps discoverable credentials and answers at
# once (no touch to wait for). Plain CTAP 2.0, without credProtect: the server asks for
# credProtect but does not enforce it, so keys without it register too.
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}

pytestmark = pytest.mark.usefixtures("dev_only")


def unique(prefix: str) -> str:
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(10))


def passkey_account(origins=(ORIGIN,)):
    return make_account(passkeys={"rpId": "localhost", "origins": list(origins)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webauthn(page):
    """The page's DevTools session with the WebAuthn domain on (no browser UI)."""
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable", {"enableUI": False})
    yield session
    session.detach()


def add_authenticator(webauthn) -> str:
    return webauthn.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})["authenticatorId"]


def credentials(webauthn, authenticator: str) -> list[dict]:
    return webauthn.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]


def open_demo(page: Page, account, entity: str, origin: str = ORIGIN):
    """The demo page, its fields filled as a user would."""
    page.goto(origin + DEMO)
    page.get_by_label("Account SID").fill(account.sid)
    page.get_by_label("Auth token").fill(account.token)
    page.get_by_label("Entity").fill(entity)


def press(page: Page, button: str) -> tuple[str, str]:
    """Presses the button and waits for the ceremony's end: the status line's outcome and text."""
    page.get_by_role("button", name=button, exact=True).click()
    # The click empties the outcome at once; it is set again when the ceremony ends. (Not
    # wait_for_function: the page's CSP forbids the eval it needs.)
    status = page.get_by_role("status")
    expect(status).to_have_attribute("data-outcome", ENDED)
    return status.get_attribute("data-outcome"), status.inner_text()


def register(page: Page) -> tuple[str, str]:
    return press(page, "Register a passkey")


def sign_in(page: Page) -> tuple[str, str]:
    return press(page, "Sign in with a passkey")


def passkeys_of(account, entity: str) -> list[dict]:
    got = http("GET", f"/2fa/entities/{entity}/factors", auth=account.auth)
    assert got.status == 200, got
    return [f for f in got.body["data"]["factors"] if f["type"] == "passkey"]


def request_id_in(text: str) -> str:
    found = re.search(r"OTP[0-9a-f]{32}", text)
    assert found, f"no requestID in the status: {text!r}"
    return found.group(0)


def test_given_an_account_with_passkeys_when_a_user_registers_then_signs_in_on_the_demo_page_then_the_page_and_the_api_say_verified(
    page, webauthn
):
    # Given an account whose passkeys' origin is the demo page's, and a virtual authenticator
    account, entity = passkey_account(), unique("user-")
    authenticator = add_authenticator(webauthn)
    open_demo(page, account, entity)

    # When the user registers a passkey
    outcome, text = register(page)

    # Then the page says so, the authenticator holds one discoverable credential for localhost,
    # and the API holds the entity's passkey factor, verified
    assert outcome == "registered", text
    held = credentials(webauthn, authenticator)
    assert len(held) == 1 and held[0]["rpId"] == "localhost" and held[0]["isResidentCredential"], held
    factors = passkeys_of(account, entity)
    assert [f["status"] for f in factors] == ["verified"], factors
    sid = factors[0]["sid"]
    assert sid in text, "the status names the factor"

    # When the user signs in with it
    outcome, text = sign_in(page)

    # Then the page says verified, and the API agrees: the challenge is a success on channel passkey
    assert outcome == "verified", text
    request_id = request_id_in(text)
    record = http("GET", f"/2fa/search/{request_id}", auth=account.auth)
    assert record.status == 200, record
    assert record.body["status"] == "success", record.body
    assert [e["channel"] for e in record.body["events"]] == ["passkey"], record.body["events"]
    got = http("GET", f"/2fa/entities/{entity}/factors/{sid}", auth=account.auth)
    assert got.status == 200 and got.body["data"]["status"] == "verified", got


def test_given_a_credential_copied_before_its_last_use_when_the_copy_signs_in_then_its_stale_counter_is_refused(
    page, webauthn, guard
):
    # Given a passkey registered and used once, and a copy of its credential (private key and
    # signature counter) taken then
    account, entity = passkey_account(), unique("user-")
    original = add_authenticator(webauthn)
    open_demo(page, account, entity)
    assert register(page)[0] == "registered"
    assert sign_in(page)[0] == "verified"
    [copy] = credentials(webauthn, original)
    assert copy.get("privateKey") and "signCount" in copy, "the credential is read whole"
    [factor] = passkeys_of(account, entity)

    # And the original used once more: its counter moves past the copy's
    outcome, text = sign_in(page)
    assert outcome == "verified", text
    assert credentials(webauthn, original)[0]["signCount"] > copy["signCount"]

    # When the copy, in another authenticator, signs in
    webauthn.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": original})
    clone = add_authenticator(webauthn)
    webauthn.send("WebAuthn.addCredential", {"authenticatorId": clone, "credential": copy})
    verify_path = f"/2fa/entities/{entity}/factors/{factor['sid']}/verify"
    guard.expect(401, verify_path)
    outcome, text = sign_in(page)

    # Then the server refuses its assertion as a wrong code (401, code 474), and the page says so
    assert outcome == "refused", text
    assert '"code":474' in text.replace(" ", ""), text
    assert (401, verify_path) in guard.seen_expected, "the refusal came from the verify call"

    # And the same key with its counter past the stored one signs in: the counter alone was why
    current = credentials(webauthn, clone)[0]["signCount"]
    webauthn.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": clone})
    fresh = add_authenticator(webauthn)
    webauthn.send("WebAuthn.addCredential", {"authenticatorId": fresh, "credential": {**copy, "signCount": current + 1}})
    outcome, text = sign_in(page)
    assert outcome == "verified", text
    got = http("GET", f"/2fa/entities/{entity}/factors/{factor['sid']}", auth=account.auth)
    assert got.status == 200 and got.body["data"]["status"] == "verified", got


def test_given_the_demo_page_served_at_an_origin_the_account_does_not_list_when_a_user_registers_there_then_the_server_refuses(
    page, context, webauthn, guard
):
    # Given an account whose only origin is http://localhost:PORT, and the same page (and its API
    # calls) served to the browser as http://localhost:OTHER: another origin of the same RP id
    account, entity = passkey_account(), unique("user-")
    other = f"http://localhost:{free_port()}"

    def forward(route):
        parts = urllib.parse.urlsplit(route.request.url)
        target = ORIGIN + parts.path + (f"?{parts.query}" if parts.query else "")
        route.fulfill(response=route.fetch(url=target))

    context.route(f"{other}/**", forward)
    add_authenticator(webauthn)
    open_demo(page, account, entity, origin=other)
    assert page.evaluate("location.origin") == other

    # When the user registers a passkey there (the authenticator signs for RP id localhost and
    # origin http://localhost:OTHER)
    confirm = re.compile(rf"/2fa/entities/{re.escape(entity)}/factors/YF[0-9a-f]{{32}}/confirm")
    guard.expect(401, confirm)
    outcome, text = register(page)

    # Then the server refuses the ceremony (401, code 474), the page says so, and the entity has
    # no verified passkey
    assert outcome == "refused", text
    assert '"code":474' in text.replace(" ", ""), text
    assert (401, confirm) in guard.seen_expected, "the refusal came from the confirm call"
    assert not [f for f in passkeys_of(account, entity) if f["status"] == "verified"]


def test_the_demo_page_is_accessible_and_sends_its_content_security_policy(page, axe):
    # Given the demo page as a user opens it
    answer = page.goto(ORIGIN + DEMO)

    # Then it is served under a CSP with no inline script, labels its fields and passes axe-core
    csp = answer.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, csp
    for label in ("Account SID", "Auth token", "Entity"):
        expect(page.get_by_label(label)).to_be_editable()
    for button in ("Register a passkey", "Sign in with a passkey"):
        expect(page.get_by_role("button", name=button)).to_be_enabled()
    expect(page.get_by_role("status")).to_have_count(1)
    check_page(page, axe, "passkeys-demo", "Passkeys demo")
