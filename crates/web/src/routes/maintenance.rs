//! `/api/admin/clean-*` (seed 004): maintenance jobs on request, for callers holding
//! `system:maintain`. The same jobs run on a schedule (`MAINTENANCE_INTERVAL`); what each removes
//! is in `porteiro_core::domain::maintenance`.

use axum::extract::State;
use porteiro_core::domain::maintenance::Job;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok_with};

/// What a job removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// Rows removed (for `clean-sessions`, sessions; their refresh tokens go with them).
    pub removed: u64,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clean_tokens))
        .routes(routes!(clean_verification_codes))
        .routes(routes!(clean_sessions))
}

/// The caller, holding `system:maintain` (403 before the handler otherwise).
type Maintainer = RequirePermission<perm::SystemMaintain>;

async fn run(
    s: &AppState,
    caller: Maintainer,
    job: Job,
    message: &str,
) -> ApiResult<Json<Envelope<Removed>>> {
    let removed = s.maintenance.run(&caller.0, job).await?;
    Ok(ok_with(message, Removed { removed }))
}

/// Remove dead tokens (`system:maintain`).
///
/// Refresh tokens never spent and expired, every refresh token of a session that ended more than
/// one refresh lifetime ago, and password-reset links expired or spent and issued before the
/// recovery window. Spent refresh tokens of live sessions stay (they detect reuse).
#[utoipa::path(post, path = "/api/admin/clean-tokens", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Removed>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn clean_tokens(
    State(s): State<AppState>,
    caller: Maintainer,
) -> ApiResult<Json<Envelope<Removed>>> {
    run(&s, caller, Job::Tokens, "Expired tokens removed.").await
}

/// Remove dead verification codes (`system:maintain`).
///
/// Address-confirmation links expired or spent and issued more than an hour ago, and second
/// steps of sign-in (with their emailed codes) that expired, were completed or died after too
/// many wrong codes.
#[utoipa::path(post, path = "/api/admin/clean-verification-codes", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Removed>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn clean_verification_codes(
    State(s): State<AppState>,
    caller: Maintainer,
) -> ApiResult<Json<Envelope<Removed>>> {
    run(
        &s,
        caller,
        Job::VerificationCodes,
        "Expired verification codes removed.",
    )
    .await
}

/// Remove long-ended sessions (`system:maintain`).
///
/// Sessions revoked or expired more than one refresh lifetime ago (at least a day), with their
/// refresh tokens; `removed` counts the sessions.
#[utoipa::path(post, path = "/api/admin/clean-sessions", tag = "maintenance", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Removed>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn clean_sessions(
    State(s): State<AppState>,
    caller: Maintainer,
) -> ApiResult<Json<Envelope<Removed>>> {
    run(&s, caller, Job::Sessions, "Ended sessions removed.").await
}
