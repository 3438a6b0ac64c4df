//! `/api/auth/recovery-emails` (seed 004): the caller's recovery addresses. Every route needs a
//! signed-in caller (bearer). What is revealed, and what is not, is explained in
//! [`porteiro_core::flows::recovery_emails`]: an address another account has is answered exactly
//! like any other. The verification token is never shown (it is mailed only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Utc};
use porteiro_core::domain::recovery_email::RecoveryEmail;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, Bearer};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok, ok_with};

/// Add body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddRecoveryEmail {
    /// The address (not the account's own).
    pub email: String,
}

/// Verify body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRecoveryEmail {
    /// The 32-character token from the mailed link (`/ui/recovery-email?token=…`).
    pub token: String,
}

/// A recovery address (seed 004 `RecoveryEmail`; its `verification_code` is never shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryEmailView {
    /// Identifier.
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// The address.
    pub email: String,
    /// Verified through its mailed link: password-reset links can be sent to it.
    pub is_verified: bool,
    /// When it was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When the newest live link expires (unverified addresses).
    pub verification_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl From<RecoveryEmail> for RecoveryEmailView {
    fn from(a: RecoveryEmail) -> Self {
        Self {
            id: a.id,
            user_id: a.user_id,
            is_verified: a.is_verified(),
            email: a.email,
            verified_at: a.verified_at,
            verification_expires_at: a.verification_expires_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(verify))
        .routes(routes!(remove))
        .routes(routes!(resend))
}

/// The caller's recovery addresses, oldest first.
#[utoipa::path(get, path = "/api/auth/recovery-emails", tag = "recovery-emails", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<RecoveryEmailView>>), (status = 401, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    Bearer(p): Bearer,
) -> ApiResult<Json<Envelope<Vec<RecoveryEmailView>>>> {
    Ok(ok(s
        .recovery_emails
        .list(&p)
        .await?
        .into_iter()
        .map(RecoveryEmailView::from)
        .collect()))
}

/// Add a recovery address (unverified); a link to verify it is mailed to it, and a notice to the
/// account's own address. At most 5 per account. An address another account has is answered
/// the same way (it can never be verified).
#[utoipa::path(post, path = "/api/auth/recovery-emails", tag = "recovery-emails", request_body = AddRecoveryEmail, security(("bearer" = [])),
    responses((status = 201, body = Envelope<RecoveryEmailView>),
              (status = 400, body = ErrorBody, description = "`invalid_email`, `recovery_email_is_primary` (the account's own address), `invalid_json`"),
              (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`recovery_email_limit` (5 already), `recovery_email_exists` (the account has it already)"),
              (status = 429, body = ErrorBody, description = "Too many links mailed within the hour")))]
async fn add(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppJson(req): AppJson<AddRecoveryEmail>,
) -> ApiResult<Response> {
    let added = s.recovery_emails.add(&p, &req.email).await?;
    Ok((
        StatusCode::CREATED,
        ok_with(
            "Recovery address added; a link to verify it was sent to it.",
            RecoveryEmailView::from(added),
        ),
    )
        .into_response())
}

/// Verify one of the caller's recovery addresses with the token from the mailed link; the token
/// is spent.
#[utoipa::path(post, path = "/api/auth/recovery-emails/verify", tag = "recovery-emails", request_body = VerifyRecoveryEmail, security(("bearer" = [])),
    responses((status = 200, body = Envelope<RecoveryEmailView>),
              (status = 400, body = ErrorBody, description = "`invalid_confirmation_token` (malformed, unknown, expired, spent, another account's, or for an address that cannot be verified), `invalid_json`"),
              (status = 401, body = ErrorBody)))]
async fn verify(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppJson(req): AppJson<VerifyRecoveryEmail>,
) -> ApiResult<Json<Envelope<RecoveryEmailView>>> {
    let verified = s.recovery_emails.verify(&req.token, Some(&p)).await?;
    Ok(ok_with("Recovery address verified.", verified.into()))
}

/// Remove one of the caller's recovery addresses; a notice goes to the account's own address.
#[utoipa::path(delete, path = "/api/auth/recovery-emails/{id}", tag = "recovery-emails", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>),
              (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Not one of the caller's addresses")))]
async fn remove(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.recovery_emails.remove(&p, id).await?;
    Ok(ok_with("Recovery address removed.", None))
}

/// Mail a new verification link to one of the caller's unverified addresses (older links stop
/// working). At most 3 links per address and 10 per account per hour.
#[utoipa::path(post, path = "/api/auth/recovery-emails/{id}/resend", tag = "recovery-emails", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<RecoveryEmailView>),
              (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "Not one of the caller's addresses"),
              (status = 409, body = ErrorBody, description = "`recovery_email_verified`: verified already"),
              (status = 429, body = ErrorBody)))]
async fn resend(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<RecoveryEmailView>>> {
    let address = s.recovery_emails.resend(&p, id).await?;
    Ok(ok_with(
        "A new link to verify the address was sent to it.",
        address.into(),
    ))
}
