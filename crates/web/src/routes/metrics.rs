//! `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
//!
//! Who may read it (`METRICS_TOKEN`, `METRICS_ADDR`):
//! - with a token, every scrape presents it as a bearer token, compared in constant time (as
//!   SHA-256 digests, so not even its length leaks); otherwise `401`;
//! - with a separate listener, the main listener answers `404` as for any unknown route, and the
//!   metrics listener serves it (with the token, when one is set);
//! - with neither, only direct loopback connections: the socket peer is loopback and not a
//!   trusted proxy, and the request carries no forwarding header. Nothing relayed by a proxy
//!   counts as local (see [`from_loopback`]). Refusals are `404`, as if there were no such route.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use porteiro_core::crypto::{ct_eq, token_hash};
use secrecy::{ExposeSecret as _, SecretString};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, error_response};
use crate::guard::ClientIp;
use crate::state::AppState;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path.
pub const PATH: &str = "/metrics";

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// The router of the separate metrics listener (`METRICS_ADDR`): `/metrics` only.
pub(crate) fn dedicated_router() -> Router<AppState> {
    Router::new().route(PATH, get(scrape_dedicated))
}

/// Prometheus metrics (text format 0.0.4).
///
/// Served on the main listener only when `METRICS_ADDR` is unset. With `METRICS_TOKEN` set the
/// bearer token is required (`401` otherwise); without it only direct loopback connections are
/// answered, never one through a proxy (`404` for others). Labels never carry user data: see the README's metric list.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`METRICS_TOKEN` is set and the bearer token is missing or wrong.", body = ErrorBody),
        (status = 404, description = "Served elsewhere (`METRICS_ADDR`), or, without `METRICS_TOKEN`, a client that is not a direct loopback connection.", body = ErrorBody),
    ),
    security((), ("metrics_token" = []))
)]
pub async fn scrape(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let access = &state.settings.metrics;
    if access.separate_listener {
        return not_found();
    }
    if let Some(token) = &access.token {
        if !presents(&parts, token) {
            return unauthorized();
        }
    } else if !from_loopback(&parts, &state) {
        return not_found();
    }
    respond(&state).await
}

/// `/metrics` on the separate listener: the token when one is set, else open to whoever
/// reaches that address.
async fn scrape_dedicated(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(token) = &state.settings.metrics.token
        && !presents(&parts, token)
    {
        return unauthorized();
    }
    respond(&state).await
}

async fn respond(state: &AppState) -> Response {
    let body = crate::metrics::render(&state.auth, &state.settings.scrape_hooks).await;
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Whether the request carries `Authorization: Bearer <token>`: digests compared in constant
/// time, so neither the content nor the length of the token leaks through timing.
fn presents(parts: &Parts, token: &SecretString) -> bool {
    let given = crate::extract::auth::bearer_token(parts).unwrap_or("");
    let expected = token_hash(token.expose_secret());
    // Always compare, even with no token given: the refusal takes the same time either way.
    ct_eq(token_hash(given).as_bytes(), expected.as_bytes()) && !given.is_empty()
}

/// Loopback-only access: the connection itself comes from this host, carries no forwarding
/// header, and does not come from a declared proxy. A proxy relays remote clients, so nothing
/// arriving through one counts as local, whatever it says about the client (a client can send
/// `X-Forwarded-For: 127.0.0.1` itself, and a proxy that adds no header makes every client look
/// like the proxy): scraping through a proxy needs `METRICS_TOKEN`.
fn from_loopback(parts: &Parts, state: &AppState) -> bool {
    let Some(ClientIp(ip)) = parts.extensions.get::<ClientIp>().copied() else {
        return false;
    };
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|name| parts.headers.contains_key(*name));
    let through_proxy = crate::guard::client_ip::peer(&parts.extensions)
        .is_none_or(|peer| state.settings.trusted_proxies.trusts(peer));
    ip.is_loopback() && !forwarded && !through_proxy
}

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "No such route.")
}

fn unauthorized() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "The metrics token is missing or wrong.",
    )
}
