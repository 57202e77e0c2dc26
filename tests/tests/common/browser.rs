//! A browser on the console's pages: signed in through the sign-in form, its cookies kept
//! by hand (the session cookie is `Secure`), the CSRF token read from the pages, forms posted
//! urlencoded and redirects not followed (each is checked).
#![allow(dead_code)]

use std::{collections::BTreeMap, sync::Mutex};

use reqwest::{header, redirect::Policy, StatusCode};

/// A browser signed in to the console: its cookies and the session's CSRF token.
pub struct Console {
    pub base: String,
    pub http: reqwest::Client,
    pub cookies: Mutex<BTreeMap<String, String>>,
    pub csrf: String,
}

/// One answer: status, body, where it redirects.
pub struct Page {
    pub status: StatusCode,
    pub text: String,
    pub location: Option<String>,
}

impl Page {
    /// The text of the element with `role="alert"`, if any.
    pub fn alert(&self) -> Option<String> {
        element_text(&self.text, r#"role="alert""#)
    }
    pub fn flash(&self) -> Option<String> {
        element_text(&self.text, r#"role="status""#)
    }
    /// The `value` of the input `id`.
    pub fn input(&self, id: &str) -> String {
        let at = self.text.find(&format!(r#"id="{id}""#)).unwrap_or_else(|| panic!("no #{id} in {}", self.text));
        let tag = &self.text[self.text[..at].rfind('<').unwrap()..];
        let tag = &tag[..tag.find('>').unwrap()];
        tag.split(r#"value=""#).nth(1).map(|v| unescape(&v[..v.find('"').unwrap()])).unwrap_or_default()
    }
    /// The text of the textarea `id`.
    pub fn textarea(&self, id: &str) -> String {
        let at = self.text.find(&format!(r#"id="{id}""#)).unwrap_or_else(|| panic!("no #{id}"));
        let rest = &self.text[at..];
        let start = rest.find('>').unwrap() + 1;
        unescape(&rest[start..rest.find("</textarea>").unwrap()])
    }
    /// Whether the table `id` has a row with `attr="value"`.
    pub fn has_row(&self, table: &str, attr: &str, value: &str) -> bool {
        let at = self.text.find(&format!(r#"<table id="{table}""#)).unwrap_or_else(|| panic!("no table #{table}"));
        let rest = &self.text[at..];
        rest[..rest.find("</table>").unwrap()].contains(&format!(r#"{attr}="{value}""#))
    }
}

/// The text of the first element whose start tag holds `marker`, tags inside it dropped.
pub fn element_text(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let open = html[..at].rfind('<')?;
    let tag: String = html[open + 1..].chars().take_while(char::is_ascii_alphanumeric).collect();
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let inner = &rest[start..];
    let end = inner.find(&format!("</{tag}>")).unwrap_or(inner.len());
    let mut out = String::new();
    let mut in_tag = false;
    for c in inner[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    Some(unescape(out.trim()))
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The `value` of the hidden input `name` in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let at = html.find(&marker)? + marker.len();
    Some(unescape(&html[at..at + html[at..].find('"')?]))
}

impl Console {
    /// Given the account (sid, token) signed in through the sign-in form.
    pub async fn sign_in(base: &str, sid: &str, token: &str) -> Console {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let mut c = Console { base: base.to_owned(), http, cookies: Mutex::new(BTreeMap::new()), csrf: String::new() };
        let form = c.get("/console/sign-in").await;
        assert_eq!(form.status, 200, "the sign-in page: {}", form.text);
        let mut fields = vec![("accountSid", sid.to_owned()), ("authToken", token.to_owned())];
        if let Some(csrf) = hidden(&form.text, "csrf") {
            fields.push(("csrf", csrf));
        }
        let r = c.send(c.http.post(format!("{}/console/sign-in", c.base)).form(&fields)).await;
        assert_eq!(r.status, 303, "signing in: {}", r.text);
        let page = c.get("/console/account").await;
        assert_eq!(page.status, 200, "signed in: {}", page.text);
        c.csrf = hidden(&page.text, "csrf").expect("a csrf input");
        c
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let cookie =
            self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let req = if cookie.is_empty() { req } else { req.header(header::COOKIE, cookie) };
        let r = req.send().await.expect("request");
        let status = r.status();
        {
            let mut jar = self.cookies.lock().unwrap();
            for v in r.headers().get_all(header::SET_COOKIE) {
                let v = v.to_str().unwrap();
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                let gone = value.is_empty() || v.to_ascii_lowercase().contains("max-age=0");
                if gone {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let location = r.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_owned());
        let text = r.text().await.expect("body");
        Page { status, text, location }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A form posted with the session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &self.csrf));
        self.post_raw(path, &all).await
    }

    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(self.http.post(format!("{}{path}", self.base)).form(fields)).await
    }

    /// A form posted and expected to succeed: 303, then the page it goes back to.
    pub async fn change(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let r = self.post(path, fields).await;
        assert_eq!(r.status, 303, "POST {path} {fields:?}: {}", r.text);
        let to = r.location.expect("a Location");
        let page = self.get(&to).await;
        assert_eq!(page.status, 200, "GET {to}: {}", page.text);
        page
    }
}
