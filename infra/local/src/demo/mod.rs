//! Dev server only: the passkeys demo page (`GET /demo/passkeys`) and its script (`GET
//! /demo/passkeys.js`), to try passkeys in a browser against the dev server's API and for
//! tests/browser/test_passkeys.py. `Dev::app` mounts them; no Lambda serves them.
//!
//! No inline script or style: both answers carry a CSP that allows this origin's script,
//! stylesheet (the console's), icon and API calls, and nothing else.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

pub const PAGE_PATH: &str = "/demo/passkeys";
pub const SCRIPT_PATH: &str = "/demo/passkeys.js";
const PAGE: &str = include_str!("passkeys.html");
const SCRIPT: &str = include_str!("passkeys.js");

/// The demo's Content-Security-Policy: this origin's script, stylesheet, icon and fetches.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                       img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router {
    Router::new()
        .route(PAGE_PATH, get(|| async { answer("text/html; charset=utf-8", PAGE) }))
        .route(SCRIPT_PATH, get(|| async { answer("text/javascript; charset=utf-8", SCRIPT) }))
}

fn answer(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_so_the_csp_can_forbid_them() {
        let lower = PAGE.to_ascii_lowercase();
        // The one script element loads the script by its path.
        assert_eq!(lower.matches("<script").count(), 1);
        assert!(lower.contains(&format!("<script src=\"{SCRIPT_PATH}\" defer></script>")));
        assert!(!lower.contains("<style"), "a <style> element");
        assert!(!lower.contains(" style="), "a style attribute");
        assert!(!lower.contains("javascript:"), "a javascript: URL");
        for handler in [" onclick=", " onload=", " onsubmit=", " onchange=", " oninput="] {
            assert!(!lower.contains(handler), "an inline handler {handler}");
        }
        // Nothing from another origin.
        assert!(!lower.contains("src=\"http") && !lower.contains("href=\"http"), "an asset of another origin");
    }

    #[test]
    fn the_script_uses_only_this_origin() {
        assert!(!SCRIPT.contains("http://") && !SCRIPT.contains("https://"));
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("new Function"));
    }
}
