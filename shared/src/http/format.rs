//! Response format: JSON, or XML (root `<TwoFactorResponse>`, same fields) when the path ends in
//! `.xml` or the client accepts `application/xml` and not JSON.

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};
use serde_json::Value;

pub async fn negotiate(req: Request, next: Next) -> Response {
    let wants_xml = req.uri().path().ends_with(".xml") || {
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        accept.contains("application/xml") && !accept.contains("application/json")
    };
    let resp = next.run(req).await;
    if !wants_xml {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><TwoFactorResponse>");
    write_fields(&value, &mut xml);
    xml.push_str("</TwoFactorResponse>");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(xml))
}

fn write_fields(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                write_element(k, v, out);
            }
        }
        other => escape_into(&scalar(other), out),
    }
}

fn write_element(name: &str, value: &Value, out: &mut String) {
    match value {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for item in items {
                write_element("item", item, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        v => {
            out.push_str(&format!("<{name}>"));
            write_fields(v, out);
            out.push_str(&format!("</{name}>"));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no form for these (not even as a character reference): each stands as
            // U+FFFD, so the answer stays well-formed whatever a stored field holds.
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}
