//! The request guard: resolves the client address (trusting `X-Forwarded-For` only from
//! `TRUSTED_PROXIES`) and applies the per-client rate limits before any handler runs.

pub mod client_ip;
pub mod rate_limit;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use porteiro_core::service::ClientContext;

pub use client_ip::{ClientIp, TrustedProxies};
pub use rate_limit::{Quota, RateClass, RateLimitSettings, RateLimiter};

use crate::error::error_response;

/// Runtime state of the guard.
#[derive(Debug)]
pub struct Guard {
    /// Whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// `None` when rate limiting is disabled.
    pub limiter: Option<RateLimiter>,
}

/// Middleware: records [`ClientIp`] in the request, refuses it with `429` when its bucket is
/// empty, and otherwise runs it with its [`ClientContext`] current (for the audit log). The
/// device cookie is not parsed here: only sign-in needs it ([`crate::extract::ClientInfo`]).
pub async fn guard(State(guard): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let mut client = ClientContext {
        ip: None,
        user_agent: header_text(req.headers(), header::USER_AGENT),
        accept_language: header_text(req.headers(), header::ACCEPT_LANGUAGE),
        device: None,
    };
    if let Some(peer) = client_ip::peer(req.extensions()) {
        let ip = guard.proxies.resolve(peer, req.headers());
        client.ip = Some(ip.to_string());
        req.extensions_mut().insert(ClientIp(ip));
        if let Some(limiter) = &guard.limiter {
            let class = if req.method() == Method::POST {
                RateClass::of(req.uri().path())
            } else {
                None
            };
            if let Err(wait) = limiter.check(ip, class) {
                if req.uri().path().starts_with("/ui/") {
                    return crate::ui::too_many_requests(req.headers(), wait);
                }
                return too_many_requests(wait);
            }
            if class == Some(RateClass::Introspection) {
                // The handler charges failed caller authentications to the sign-in bucket.
                req.extensions_mut().insert(Arc::clone(&guard));
            }
        }
    }
    // Handlers read it (ClientInfo); the audit log of whatever the request does records it.
    let client = Arc::new(client);
    req.extensions_mut().insert(Arc::clone(&client));
    client.scope(next.run(req)).await
}

fn header_text(headers: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

/// A wait in whole seconds, rounded up, at least 1 (for `Retry-After`).
#[must_use]
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `429` with `Retry-After` in whole seconds (at least 1).
#[must_use]
pub fn too_many_requests(wait: std::time::Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests. Wait for the time in Retry-After, then try again.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}
