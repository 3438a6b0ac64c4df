//! What the network says about the caller: IP address, user agent, preferred language.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{ACCEPT_LANGUAGE, USER_AGENT};
use axum::http::request::Parts;
use porteiro_core::service::ClientContext;

/// The caller's [`ClientContext`]. The IP is the socket peer; forwarded headers are ignored
/// until trusted proxies are configured (they are trivially forged).
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
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Self(ClientContext {
            ip,
            user_agent: header(USER_AGENT),
            accept_language: header(ACCEPT_LANGUAGE),
        }))
    }
}
