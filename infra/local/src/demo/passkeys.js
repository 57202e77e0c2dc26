// The passkeys demo page of the dev server (GET /demo/passkeys; docs/console.md, "The passkeys
// demo page"). Registers a passkey as a factor of an entity and signs in with it, through this
// origin's API with HTTP Basic, as a relying party's own page would:
//   register: POST …/factors (type=passkey) → parseCreationOptionsFromJSON →
//             navigator.credentials.create → POST …/factors/{sid}/confirm (credential)
//   sign in:  POST …/factors/{sid}/challenges → parseRequestOptionsFromJSON →
//             navigator.credentials.get → POST …/factors/{sid}/verify (requestId, credential)
// The status line (role=status) says what happened: data-outcome is `registered`, `verified`,
// `refused` (the server refused the ceremony: 474, 475, 478) or `error`, and the API's last
// answer is shown as it came. Needs Chromium 129+ (parse*FromJSON, toJSON). No dependency.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("passkeys");
  const fields = { accountSid: $("account-sid"), authToken: $("auth-token"), entity: $("entity") };
  const buttons = [$("register"), $("sign-in")];
  const status = $("status");
  const message = $("status-message");
  const answer = $("status-answer");
  // This tab only: the token is gone when the tab closes.
  const KEPT = "twofa-demo-passkeys";
  // The codes of a ceremony the server refused (docs/api.md): a failed ceremony, a locked
  // factor or challenge, the entity's failed-verify budget spent.
  const REFUSALS = new Set([474, 475, 478]);

  class ApiError extends Error {
    constructor(status, body, text) {
      super(`the API answered ${status}`);
      this.status = status;
      this.body = body;
      this.text = text;
    }
  }

  function show(outcome, text, apiText) {
    status.dataset.outcome = outcome;
    message.textContent = text;
    answer.textContent = apiText || "";
    answer.hidden = !apiText;
  }

  function values() {
    return {
      accountSid: fields.accountSid.value.trim(),
      authToken: fields.authToken.value,
      entity: fields.entity.value.trim(),
    };
  }

  function keep() {
    try {
      sessionStorage.setItem(KEPT, JSON.stringify(values()));
    } catch (_) {
      // Storage refused (a private window's quota): the fields still work.
    }
  }

  function restore() {
    try {
      const kept = JSON.parse(sessionStorage.getItem(KEPT) || "{}");
      for (const [name, input] of Object.entries(fields)) {
        if (typeof kept[name] === "string" && !input.value) input.value = kept[name];
      }
    } catch (_) {
      // Nothing kept, or not JSON: start empty.
    }
  }

  // One call of this origin's API: JSON in, JSON out; an error answer throws ApiError.
  async function api(method, path, body) {
    const { accountSid, authToken } = values();
    const headers = {
      Accept: "application/json",
      Authorization: "Basic " + btoa(`${accountSid}:${authToken}`),
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The Authorization header only: no cookie, and no browser sign-in prompt on a 401.
      credentials: "omit",
      cache: "no-store",
    });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = null;
    }
    if (!res.ok) throw new ApiError(res.status, json, text);
    return { json: json || {}, text };
  }

  const factorsPath = (entity) => `/2fa/entities/${encodeURIComponent(entity)}/factors`;
  const factorPath = (entity, sid) => `${factorsPath(entity)}/${encodeURIComponent(sid)}`;

  // The entity's newest verified passkey (factors are listed oldest first), or null.
  async function passkeyOf(entity) {
    const listed = await api("GET", factorsPath(entity));
    const factors = (listed.json.data || listed.json).factors || [];
    const passkeys = factors.filter((f) => f.type === "passkey" && f.status === "verified");
    return passkeys.length ? passkeys[passkeys.length - 1].sid : null;
  }

  async function register(entity) {
    // 1. The factor and its creation options.
    const created = await api("POST", factorsPath(entity), { type: "passkey", friendlyName: "Demo page passkey" });
    const factor = created.json.data || created.json;
    const options = factor.options || created.json.options;
    let confirmed;
    try {
      const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
      const credential = await navigator.credentials.create({ publicKey });
      // 2. The server checks the ceremony (origin, challenge, user verification, signature).
      confirmed = await api("POST", `${factorPath(entity, factor.sid)}/confirm`, {
        credential: JSON.stringify(credential.toJSON()),
      });
    } catch (err) {
      // An unconfirmed factor would only count toward the entity's 20: remove it.
      await api("DELETE", factorPath(entity, factor.sid)).catch(() => null);
      throw err;
    }
    show("registered", `Passkey registered: factor ${factor.sid} of ${entity} is verified.`, confirmed.text);
  }

  async function signIn(entity) {
    const sid = await passkeyOf(entity);
    if (!sid) {
      show("error", `${entity} has no verified passkey here: register one first.`, "");
      return;
    }
    // 3. A challenge: its request options.
    const challenge = await api("POST", `${factorPath(entity, sid)}/challenges`, {});
    const requestId = challenge.json.requestID;
    const options = challenge.json.options || (challenge.json.data || {}).options;
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const assertion = await navigator.credentials.get({ publicKey });
    // 4. The server checks the assertion (origin, challenge, user verification, signature and
    // its counter: a cloned credential's stale counter is refused).
    const verified = await api("POST", `${factorPath(entity, sid)}/verify`, {
      requestId,
      credential: JSON.stringify(assertion.toJSON()),
    });
    show("verified", `Signed in: ${entity}'s passkey (factor ${sid}) verified challenge ${requestId}.`, verified.text);
  }

  function failed(what, err) {
    if (err instanceof ApiError) {
      const code = err.body && err.body.code;
      if (REFUSALS.has(code)) {
        show("refused", `${what} refused by the server (HTTP ${err.status}, code ${code}).`, err.text);
      } else {
        show("error", `${what} failed: the API answered HTTP ${err.status}${code ? `, code ${code}` : ""}.`, err.text);
      }
    } else {
      // The browser's side: no authenticator, the user cancelled, a timeout (NotAllowedError)…
      show("error", `${what} failed in the browser: ${err.name}: ${err.message}`, "");
    }
  }

  async function run(what, action, button) {
    if (!form.reportValidity()) return;
    keep();
    buttons.forEach((b) => (b.disabled = true));
    form.setAttribute("aria-busy", "true");
    show("", `${what}…`, "");
    try {
      await action(values().entity);
    } catch (err) {
      failed(what, err);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      form.removeAttribute("aria-busy");
      button.focus();
    }
  }

  restore();
  for (const input of Object.values(fields)) input.addEventListener("change", keep);
  form.addEventListener("submit", (e) => e.preventDefault());

  const supported =
    window.PublicKeyCredential &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
    typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";
  if (!supported) {
    buttons.forEach((b) => (b.disabled = true));
    show("error", "This browser lacks WebAuthn's JSON helpers (parseCreationOptionsFromJSON): use Chromium 129 or later.", "");
    return;
  }
  // WebAuthn wants a domain as the relying party's id: an address in the bar cannot be one.
  if (/^[0-9.]+$|^\[/.test(location.hostname)) {
    const there = `${location.protocol}//localhost${location.port ? `:${location.port}` : ""}${location.pathname}`;
    show("", `Passkeys need a name, not an address: open ${there} instead.`, "");
  }
  const [registerButton, signInButton] = buttons;
  registerButton.addEventListener("click", () => run("Registration", register, registerButton));
  signInButton.addEventListener("click", () => run("Sign-in", signIn, signInButton));
})();
