//! What the network says about the caller: IP address, user agent, preferred language.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT_LANGUAGE, USER_AGENT};
use axum::http::request::Parts;
use porteiro_core::service::ClientContext;

use crate::guard::ClientIp;

/// The caller's [`ClientContext`]. The IP is the one [`crate::guard::guard`] resolved: the
/// socket peer, or the forwarded client address when the peer is a trusted proxy.
#[derive(Debug, Clone)]
pub struct ClientInfo(pub ClientContext);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect::<String>())
        };
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|ClientIp(ip)| ip.to_string());
        Ok(Self(ClientContext {
            ip,
            user_agent: header(USER_AGENT),
            accept_language: header(ACCEPT_LANGUAGE),
        }))
    }
}
