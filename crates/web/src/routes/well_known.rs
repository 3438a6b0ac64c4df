//! `/.well-known/jwks.json`: the public keys that verify access tokens.

use crate::views::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// JSON Web Key Set (RFC 7517): every key that may have signed a live access token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "The key set", content_type = "application/jwk-set+json")))]
async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    // Public data, safe to cache briefly; rotation keeps old keys, so a short cache is harmless.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(s.auth.jwks()),
    )
}
