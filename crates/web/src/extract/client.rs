//! What the network says about the caller: IP address, user agent, preferred language, device
//! cookie.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use porteiro_core::service::ClientContext;

use crate::state::AppState;

/// The caller's [`ClientContext`], as [`crate::guard::guard`] resolved it (the IP is the socket
/// peer, or the forwarded client address when the peer is a trusted proxy), plus the device
/// cookie, which only sign-in reads.
#[derive(Debug, Clone)]
pub struct ClientInfo(pub ClientContext);

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let mut ctx = parts
            .extensions
            .get::<Arc<ClientContext>>()
            .map(|c| ClientContext::clone(c))
            .unwrap_or_default();
        ctx.device = state
            .settings
            .cookies
            .read(&parts.headers, crate::cookies::DEVICE);
        Ok(Self(ctx))
    }
}
