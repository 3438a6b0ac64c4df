//! `/api/auth/verify-email`: confirming the address a new account registered with (issue 14), or
//! a new address an account asked to change to (issue 15).
//!
//! Neither route needs a sign-in: with `REQUIRE_VERIFIED_EMAIL` an unconfirmed account cannot
//! sign in. Resending answers the same for every well-formed address (see
//! [`porteiro_core::flows::email_confirmation`]).

use crate::views::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::AppJson;
use crate::state::AppState;
use crate::views::{Envelope, ok_with};

/// The answer to every well-formed resend request.
const RESEND_MESSAGE: &str =
    "If the address belongs to an account waiting for confirmation, a new link has been sent.";

/// Confirmation body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyEmailRequest {
    /// The 32-character token from the emailed link.
    pub token: String,
}

/// Resend body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendRequest {
    /// The account's email address.
    pub email: String,
}

/// A confirmed address.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailConfirmed {
    /// The address.
    pub email: String,
    /// Always true.
    pub email_verified: bool,
    /// When it was confirmed.
    pub email_verified_at: Option<DateTime<Utc>>,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
}

/// Confirm an address with the token from the emailed link; the token is spent.
///
/// The link mailed to a new address after a change was asked for (`PUT /api/users/{id}` with
/// `email`) is used here too: it makes that address the account's, confirmed.
#[utoipa::path(post, path = "/api/auth/verify-email", tag = "auth", request_body = VerifyEmailRequest,
    responses((status = 200, body = Envelope<EmailConfirmed>),
              (status = 400, body = ErrorBody, description = "`invalid_confirmation_token` (malformed, unknown, expired, spent, or for an address the account no longer has), `invalid_json`"),
              (status = 409, body = ErrorBody, description = "`email_taken`: the new address of a change was taken by another account meanwhile; nothing changed"),
              (status = 429, body = ErrorBody)))]
async fn verify_email(
    State(s): State<AppState>,
    AppJson(req): AppJson<VerifyEmailRequest>,
) -> ApiResult<Json<Envelope<EmailConfirmed>>> {
    let user = s.email_confirmation.confirm(&req.token).await?;
    s.auth.profile_changed(user.id).await;
    Ok(ok_with(
        "Email address confirmed.",
        EmailConfirmed {
            email: user.email,
            email_verified: user.email_verified,
            email_verified_at: user.email_verified_at,
        },
    ))
}

/// Mail a new confirmation link (same answer whether or not the address belongs to an account
/// waiting for one; at most three links per account per hour).
#[utoipa::path(post, path = "/api/auth/verify-email/resend", tag = "auth", request_body = ResendRequest,
    responses((status = 200, body = Envelope<Option<String>>),
              (status = 400, body = ErrorBody, description = "`invalid_email`, `invalid_json`"),
              (status = 429, body = ErrorBody)))]
async fn resend_verification(
    State(s): State<AppState>,
    AppJson(req): AppJson<ResendRequest>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.email_confirmation.resend(&req.email)?;
    Ok(ok_with(RESEND_MESSAGE, None))
}
