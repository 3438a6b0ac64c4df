//! `/api/health`: liveness with a database check, and the version.

use crate::views::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ErrorBody, error_response};
use crate::state::AppState;
use crate::views::{Envelope, ok};

/// Health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `online` (the seed-004 system's word) while the database answers.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Version report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// Product name.
    pub name: &'static str,
    /// Semantic version.
    pub version: &'static str,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(version))
}

/// Health: 200 when the database answers, 503 otherwise.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, body = Envelope<Health>), (status = 503, body = ErrorBody)))]
async fn health(State(s): State<AppState>) -> Response {
    match s.auth.store().ping().await {
        Ok(()) => ok(Health {
            status: "online",
            database: s.auth.store().backend(),
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unavailable");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "The database is not answering.",
            )
        }
    }
}

/// The API version.
#[utoipa::path(get, path = "/api/health/version", tag = "health", responses((status = 200, body = Envelope<Version>)))]
async fn version(State(s): State<AppState>) -> Json<Envelope<Version>> {
    ok(Version {
        name: "porteiro",
        version: s.settings.version,
    })
}
