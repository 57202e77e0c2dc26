//! HTTP Basic authentication against the accounts in the store.

use std::net::IpAddr;

use axum::{extract::FromRequestParts, http::request::Parts};
use base64::Engine;

use crate::{
    domain::{
        account::{self, Account},
        error::Error,
    },
    http::error::ApiError,
    ports::Deps,
};

/// The caller's address, as the host saw it (the dev server's socket, API Gateway's source IP).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The authenticated caller.
pub struct Caller(pub Account);

impl FromRequestParts<Deps> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Deps) -> Result<Self, Self::Rejection> {
        let (sid, token) = basic_credentials(parts).ok_or(Error::Unauthenticated)?;
        let ip = client_ip(parts);
        let account = account::authenticate(deps.store.as_ref(), &deps.keys, &sid, &token, ip).await?;
        Ok(Caller(account))
    }
}

/// The client's address: a host in front (API Gateway) says who the client is; served
/// directly (the dev server), the socket's peer is.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ClientIp>()
        .map(|c| c.0)
        .or_else(|| parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()))
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (sid, token) = text.split_once(':')?;
    // The seeds' curl lines put a space before the sid (`--user ' {sid}:{token}'`).
    Some((sid.trim().to_owned(), token.to_owned()))
}
