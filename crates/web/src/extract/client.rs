//! What the network says about the caller: IP address, user agent, preferred language, device
//! cookie.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use porteiro_core::service::ClientContext;

/// The caller's [`ClientContext`], as [`crate::guard::guard`] resolved it: the IP is the socket
/// peer, or the forwarded client address when the peer is a trusted proxy.
#[derive(Debug, Clone)]
pub struct ClientInfo(pub ClientContext);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ClientContext>()
                .cloned()
                .unwrap_or_default(),
        ))
    }
}
