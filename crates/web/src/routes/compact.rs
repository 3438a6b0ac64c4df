//! The compact API of seed 002, exactly as PRODUCT.md §2 specifies it.
//!
//! | route | success | failure |
//! |---|---|---|
//! | `POST /auth` | `200 {auth, refresh}` | `403` for every credential failure; `403 mfa_required` when `otp` is needed |
//! | `POST /refresh` | `200 {auth, refresh}` | `403` |
//! | `POST /change-password` | `200` | `403` wrong current password, `400` weak |
//! | `POST /forgot-password` | `200` (same for unknown emails) | `400` malformed email |
//! | `POST /reset-password` | `200` | `403` bad token, `400` weak |

use crate::views::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use porteiro_core::Error;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{CompactError, CompactResult, ErrorBody};
use crate::extract::{AppJson, ClientInfo, CompactBearer};
use crate::state::AppState;

/// Sign-in body: one identifier field and the password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthRequest {
    /// Email address.
    pub email: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Username or email.
    pub login: Option<String>,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// For an account with two-factor authentication: the authenticator app's 6-digit code, or
    /// a backup code.
    pub otp: Option<String>,
}

impl AuthRequest {
    /// The identifier, whichever field carried it.
    pub(crate) fn identifier(&self) -> Option<&str> {
        self.login
            .as_deref()
            .or(self.username.as_deref())
            .or(self.email.as_deref())
    }
}

/// A token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// Access JWT.
    pub auth: String,
    /// Opaque refresh token.
    pub refresh: String,
}

/// Refresh body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh: String,
}

/// Change-password body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// Current password.
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// New password.
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// Forgot-password body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotPasswordRequest {
    /// Account email.
    pub email: String,
}

/// Reset-password body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    /// Account email.
    pub email: String,
    /// The 32-character token from the email link.
    pub token: String,
    /// New password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// For an account with security questions: the proof from
    /// `POST /api/auth/verify-security-question` (required then).
    pub recovery_proof: Option<String>,
}

/// A plain success body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    /// Always `success`.
    pub status: &'static str,
    /// What happened.
    pub message: &'static str,
}

pub(crate) const FORGOT_MESSAGE: &str =
    "If the address belongs to an account, a link to reset the password has been sent.";

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(refresh))
        .routes(routes!(change_password))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
}

/// Sign in with username or email (and `otp` for an account with two-factor authentication).
#[utoipa::path(post, path = "/auth", tag = "compact", request_body = AuthRequest,
    responses((status = 200, body = TokenPair), (status = 403, body = ErrorBody, description = "Bad credentials (a wrong `otp` included), locked or disabled: `invalid_credentials`; right password but `otp` missing: `mfa_required`; right password, unconfirmed address while REQUIRE_VERIFIED_EMAIL: `email_not_verified`"),
              (status = 400, body = ErrorBody)))]
async fn sign_in(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<AuthRequest>,
) -> CompactResult<(HeaderMap, Json<TokenPair>)> {
    let identifier = req.identifier().ok_or_else(|| {
        Error::validation(
            "login",
            "invalid_login",
            "Send `login`, `username` or `email`.",
        )
    })?;
    let out = s
        .auth
        .login_with_otp(identifier, &req.password, req.otp.as_deref(), &ctx)
        .await?;
    let headers = crate::routes::session::device_cookie(&s, out.device_token.as_deref());
    Ok((
        headers,
        Json(TokenPair {
            auth: out.access_token,
            refresh: out.refresh_token,
        }),
    ))
}

/// Exchange a refresh token for a new pair (the old one is spent).
#[utoipa::path(post, path = "/refresh", tag = "compact", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 403, body = ErrorBody)))]
async fn refresh(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<RefreshRequest>,
) -> CompactResult<Json<TokenPair>> {
    let out = s.auth.refresh(&req.refresh, &ctx).await?;
    Ok(Json(TokenPair {
        auth: out.access_token,
        refresh: out.refresh_token,
    }))
}

/// Change the password; every other session is revoked.
#[utoipa::path(post, path = "/change-password", tag = "compact", request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Done), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn change_password(
    State(s): State<AppState>,
    CompactBearer(p): CompactBearer,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> CompactResult<Json<Done>> {
    s.auth
        .change_password(
            &p,
            p.user_id,
            Some(&req.current_password),
            &req.new_password,
        )
        .await?;
    Ok(Json(Done {
        status: "success",
        message: "Password changed; other sessions were signed out.",
    }))
}

/// Send a reset link, if the email belongs to an account (same answer either way).
#[utoipa::path(post, path = "/forgot-password", tag = "compact", request_body = ForgotPasswordRequest,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody)))]
async fn forgot_password(
    State(s): State<AppState>,
    AppJson(req): AppJson<ForgotPasswordRequest>,
) -> CompactResult<Json<Done>> {
    s.auth.forgot_password(&req.email).map_err(CompactError)?;
    Ok(Json(Done {
        status: "success",
        message: FORGOT_MESSAGE,
    }))
}

/// Set a new password with the emailed token; all sessions are revoked.
#[utoipa::path(post, path = "/reset-password", tag = "compact", request_body = ResetPasswordRequest,
    responses((status = 200, body = Done), (status = 403, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn reset_password(
    State(s): State<AppState>,
    AppJson(req): AppJson<ResetPasswordRequest>,
) -> CompactResult<Json<Done>> {
    s.auth
        .reset_password(
            &req.token,
            Some(&req.email),
            &req.password,
            req.recovery_proof.as_deref(),
        )
        .await?;
    Ok(Json(Done {
        status: "success",
        message: "Password reset; every session was signed out.",
    }))
}
