//! Porteiro's HTTP layer: routes, extractors, error mapping, middleware and the OpenAPI document.
//!
//! Handlers extract, call one [`porteiro_core::Auth`] method and map the result; there is no SQL
//! and no hashing here. [`app`] builds the whole router so tests can drive it in-process or on a
//! socket. Every response passes [`middleware::harden`], which enforces the request timeout, turns
//! any bare error status into the JSON envelope and sets `Cache-Control: no-store` and security
//! headers.

pub mod api_language;
pub mod body_budget;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod guard;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod state;
pub mod ui;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};

use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use state::{AppState, CorsOrigins, MetricsAccess, WebSettings};

use crate::error::error_response;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Porteiro",
        description = "Self-hosted authentication and identity server: accounts, sign-in, session-bound tokens, recovery.",
        license(name = "MIT")
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "compact", description = "The compact API (seed 002): `/auth`, `/refresh`, `/change-password`, `/forgot-password`, `/reset-password`."),
        (name = "auth", description = "Accounts, sign-in, tokens and recovery."),
        (name = "devices", description = "The caller's sessions, as devices."),
        (name = "recovery-emails", description = "The caller's recovery addresses (seed 004): up to 5, each verified through a mailed link, then able to receive password-reset links."),
        (name = "mfa", description = "Multi-factor sign-in: the second step (`mfa_token`), authenticator apps (TOTP) with backup codes, emailed codes."),
        (name = "users", description = "Accounts (self or administrators)."),
        (name = "rbac", description = "Roles, permissions, assignments and permission checks (seed 004 `/api/rbac`)."),
        (name = "security-questions", description = "Security questions (seed 004): the catalogue, users' answers (hashed, normalised; setting or removing your own needs your password), and recovery by questions, which yields a `recovery_proof` that a password reset needs besides the emailed token — never instead of it."),
        (name = "messages", description = "Private messages between accounts (seed 001): encrypted at rest with a key per message wrapped for each party; only the two parties can read them; no enumeration of recipients."),
        (name = "audit", description = "The security event log: administrators see every event, users their own."),
        (name = "webhooks", description = "Signed deliveries of security events to your endpoints (Standard Webhooks), with delivery log, retries, dead letters and replay (administrators)."),
        (name = "maintenance", description = "Removing expired tokens, codes and sessions on request (`system:maintain`); the same jobs run every `MAINTENANCE_INTERVAL`."),
        (name = "tokens", description = "Public keys for verifying access tokens."),
        (name = "health", description = "Liveness and version."),
        (name = "metrics", description = "Prometheus metrics (`METRICS_TOKEN`, `METRICS_ADDR`).")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-porteiro-session",
                "Browser session (POST /api/auth/session); unsafe methods also need X-CSRF-Token.",
            ))),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The OpenAPI document and the API routes.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::compact::router())
        .merge(routes::auth::router())
        .merge(routes::email_confirmation::router())
        .merge(routes::devices::router())
        .merge(routes::recovery_emails::router())
        .merge(routes::mfa::router())
        .merge(routes::users::router())
        .merge(routes::rbac::router())
        .merge(routes::security_questions::router())
        .merge(routes::messages::router())
        .merge(routes::audit::router())
        .merge(routes::webhooks::router())
        .merge(routes::maintenance::router())
        .merge(routes::session::router())
        .merge(routes::sign_in_alerts::router())
        .merge(routes::health::router())
        .merge(routes::well_known::router())
        .merge(routes::metrics::router())
        .split_for_parts()
}

/// The complete application.
///
/// The middleware wraps the finished router once, as one service, rather than through
/// `Router::layer`: that would wrap every route separately, and axum would then clone a chain of
/// boxed services for each layer on every request (about a hundred allocations for a `404`).
/// Outermost first: panics become a JSON `500`; every request gets an `x-request-id` of ours
/// (echoed in the response; a client's own is only kept aside, see [`middleware`]) and a
/// tracing span; [`api_language::localise`] puts JSON messages in the caller's language;
/// [`middleware::harden`] reads any request body into memory
/// ([`middleware::buffer_body`]) and runs the rest within the request timeout, then adds the
/// security headers; CORS; the [`guard`] (client address, rate limits, audit context); the body
/// limits.
pub fn app(state: AppState) -> Router {
    let (api_routes, mut spec) = api();
    spec.info.version = state.settings.version.to_owned();
    let docs = routes::docs::Docs::new(&spec, state.settings.version);
    let settings = state.settings.clone();
    let guard = Arc::new(guard::Guard {
        proxies: settings.trusted_proxies.clone(),
        limiter: guard::RateLimiter::new(&settings.rate_limits),
    });
    let routes = api_routes
        .merge(routes::docs::router(docs))
        .merge(ui::router())
        // Matched routes tell the HTTP metrics their template; the fallbacks stay unwrapped.
        .route_layer(metrics::RouteTagLayer)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let stack = ServiceBuilder::new()
        .layer(metrics::HttpMetricsLayer)
        .layer(CatchPanicLayer::custom(|_| -> Response {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong.",
            )
        }))
        // The client's id goes aside first, so the id layer always makes ours.
        .map_request(middleware::take_client_request_id::<axum::body::Body>)
        .layer(SetRequestIdLayer::x_request_id(
            middleware::RequestIds::new(),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
        .layer(axum::middleware::from_fn_with_state(
            settings.clone(),
            api_language::localise,
        ))
        .layer(axum::middleware::from_fn_with_state(
            settings.clone(),
            middleware::harden,
        ))
        .option_layer(cors(&settings.cors))
        .map_response(IntoResponse::into_response)
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .service(routes);
    Router::new().fallback_service(stack)
}

/// The application of the separate metrics listener (`METRICS_ADDR`): `/metrics` alone, with
/// the request timeout and the security headers of [`middleware::harden`]; anything else is a
/// JSON `404`.
pub fn metrics_app(state: AppState) -> Router {
    let settings = state.settings.clone();
    let routes = routes::metrics::dedicated_router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let stack = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(|_| -> Response {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong.",
            )
        }))
        .layer(axum::middleware::from_fn_with_state(
            settings,
            middleware::harden,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .service(routes);
    Router::new().fallback_service(stack)
}

/// The CORS layer for the configured origins. Without origins it adds nothing, so a browser
/// refuses every cross-origin read; `*` allows any origin but never with credentials.
fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let list = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    let layer = CorsLayer::new()
        .allow_origin(list)
        .allow_credentials(matches!(origins, CorsOrigins::List(_)))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT_LANGUAGE,
            HeaderName::from_static(extract::auth::CSRF_HEADER),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600));
    Some(layer)
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "No such route.")
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not accept that method.",
    )
}
