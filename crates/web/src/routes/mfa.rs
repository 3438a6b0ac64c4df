//! The second step of a sign-in (`/api/auth/2fa/verify`, `/api/auth/email-verification/…`) and
//! two-factor management (`/api/users/{id}/2fa/…`), as seed 004 names them.

use crate::views::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use porteiro_core::Error;
use porteiro_core::flows::mfa::{SecondFactor, TwoFactorStatus};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, Bearer, BearerChanging, ClientInfo};
use crate::state::AppState;
use crate::views::{AuthResponse, Envelope, ok, ok_with};

/// Second step with an authenticator code or a backup code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TwoFactorVerifyRequest {
    /// The `mfa_token` from the sign-in answer.
    pub mfa_token: String,
    /// The 6-digit code of the authenticator app.
    pub code: Option<String>,
    /// Same as `code` (the name the enable route uses).
    pub totp_code: Option<String>,
    /// One of the backup codes, instead of `code`.
    pub backup_code: Option<String>,
}

/// Second step with the mailed code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailCodeVerifyRequest {
    /// The `mfa_token` from the sign-in answer.
    pub mfa_token: String,
    /// The 6-digit code from the mail.
    pub code: String,
}

/// Asks for a (new) mailed code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailCodeResendRequest {
    /// The `mfa_token` from the sign-in answer.
    pub mfa_token: String,
}

/// Enables the authenticator app set up with `GET setup`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EnableRequest {
    /// A current code from the app.
    pub totp_code: Option<String>,
    /// Same as `totp_code`.
    pub code: Option<String>,
    /// The account's password: needed when the caller signed in more than 5 minutes ago.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

/// Re-authentication for a change to the factors: the password and a current factor.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReauthRequest {
    /// The account's password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// A current code of the authenticator app…
    pub totp_code: Option<String>,
    /// …or one of the backup codes.
    pub backup_code: Option<String>,
}

/// What `GET setup` hands out once (seed 004 `TwoFactorSetup`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorSetupView {
    /// The shared secret, base32, for typing into the app.
    pub secret: String,
    /// The `otpauth://totp/…` URI the QR code encodes.
    pub otpauth_uri: String,
    /// The QR code, as a `data:image/png;base64,…` URL.
    pub qr_code: String,
    /// Ten single-use backup codes, shown only now.
    pub backup_codes: Vec<String>,
}

/// New backup codes, shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodesView {
    /// Ten single-use codes; the previous set no longer works.
    pub backup_codes: Vec<String>,
}

/// An account's two-factor state.
#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorStatusView {
    /// An authenticator app is enabled.
    pub enabled: bool,
    /// Since when.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
}

impl From<TwoFactorStatus> for TwoFactorStatusView {
    fn from(s: TwoFactorStatus) -> Self {
        Self {
            enabled: s.enabled,
            enabled_at: s.enabled_at,
            backup_codes_remaining: s.backup_codes_remaining,
        }
    }
}

/// The outcome of an administrator's reset.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetView {
    /// Whether two-factor authentication was enabled (and is now removed).
    pub was_enabled: bool,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(email_verify))
        .routes(routes!(email_resend))
        .routes(routes!(setup))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(backup_codes))
        .routes(routes!(status))
        .routes(routes!(reset))
}

/// One code field or the other, never both.
fn one_code(
    code: Option<String>,
    backup_code: Option<String>,
    code_field: &'static str,
) -> Result<SecondFactor, Error> {
    match (code, backup_code) {
        (Some(code), None) => Ok(SecondFactor::Totp(code)),
        (None, Some(code)) => Ok(SecondFactor::BackupCode(code)),
        (Some(_), Some(_)) => Err(Error::validation(
            code_field,
            "invalid_request",
            "Send either an authenticator code or a backup code, not both.",
        )),
        (None, None) => Err(Error::validation(
            code_field,
            "invalid_code_format",
            "Enter the 6-digit code or a backup code.",
        )),
    }
}

/// Finish a sign-in with an authenticator code or a backup code.
#[utoipa::path(post, path = "/api/auth/2fa/verify", tag = "mfa", request_body = TwoFactorVerifyRequest,
    responses((status = 200, body = Envelope<AuthResponse>),
              (status = 400, body = ErrorBody, description = "`invalid_code_format`, `mfa_method_not_allowed`, `invalid_request`"),
              (status = 401, body = ErrorBody, description = "`invalid_mfa_token` (unknown, expired, spent, dead after 5 wrong codes, or another client's), `invalid_code` (wrong or reused: counted), `invalid_credentials` (account locked)"),
              (status = 403, body = ErrorBody, description = "`account_disabled`"),
              (status = 429, body = ErrorBody)))]
async fn verify(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<TwoFactorVerifyRequest>,
) -> ApiResult<(HeaderMap, Json<Envelope<AuthResponse>>)> {
    let factor = one_code(req.code.or(req.totp_code), req.backup_code, "code")?;
    let out = s
        .auth
        .verify_second_step(&req.mfa_token, &factor, &ctx)
        .await?;
    let headers = crate::routes::session::device_cookie(&s, out.device_token.as_deref());
    Ok((headers, ok(AuthResponse::new(out, s.auth.now()))))
}

/// Finish a sign-in with the code sent by email.
#[utoipa::path(post, path = "/api/auth/email-verification/verify", tag = "mfa", request_body = EmailCodeVerifyRequest,
    responses((status = 200, body = Envelope<AuthResponse>),
              (status = 400, body = ErrorBody, description = "`invalid_code_format`, `mfa_method_not_allowed`"),
              (status = 401, body = ErrorBody, description = "`invalid_mfa_token`, `invalid_code` (wrong or expired: counted), `invalid_credentials`"),
              (status = 403, body = ErrorBody, description = "`account_disabled`"),
              (status = 429, body = ErrorBody)))]
async fn email_verify(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<EmailCodeVerifyRequest>,
) -> ApiResult<(HeaderMap, Json<Envelope<AuthResponse>>)> {
    let out = s
        .auth
        .verify_second_step(&req.mfa_token, &SecondFactor::EmailCode(req.code), &ctx)
        .await?;
    let headers = crate::routes::session::device_cookie(&s, out.device_token.as_deref());
    Ok((headers, ok(AuthResponse::new(out, s.auth.now()))))
}

/// Mail a new code for this sign-in (it replaces the previous one; wrong attempts still count).
#[utoipa::path(post, path = "/api/auth/email-verification/resend", tag = "mfa", request_body = EmailCodeResendRequest,
    responses((status = 200, body = Envelope<Option<String>>),
              (status = 400, body = ErrorBody, description = "`mfa_method_not_allowed`"),
              (status = 401, body = ErrorBody, description = "`invalid_mfa_token`"),
              (status = 429, body = ErrorBody, description = "At most one code a minute and six per sign-in (`Retry-After`)")))]
async fn email_resend(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<EmailCodeResendRequest>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.resend_second_step_code(&req.mfa_token, &ctx).await?;
    Ok(ok_with("A new code is on its way.", None))
}

/// Start setting up an authenticator app: a new secret, its QR code and backup codes. Nothing
/// is active until `enable` sees a code from the app. Only the account holder may do this.
/// It replaces a pending setup, so a cookie session needs `X-CSRF-Token` here although it is a
/// `GET`.
#[utoipa::path(get, path = "/api/users/{id}/2fa/setup", tag = "mfa", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<TwoFactorSetupView>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`mfa_already_enabled`")))]
async fn setup(
    State(s): State<AppState>,
    BearerChanging(p): BearerChanging,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<TwoFactorSetupView>>> {
    let setup = s.two_factor.setup(&p, id).await?;
    Ok(ok(TwoFactorSetupView {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
        qr_code: format!("data:image/png;base64,{}", setup.qr_png_base64),
        backup_codes: setup.backup_codes,
    }))
}

/// Enable the authenticator app set up with `setup`, proving it works with a current code. A
/// sign-in older than 5 minutes must confirm with `password` (a stolen access token must not
/// turn on a factor that would lock the owner out).
#[utoipa::path(post, path = "/api/users/{id}/2fa/enable", tag = "mfa", params(("id" = Uuid, Path)), request_body = EnableRequest, security(("bearer" = [])),
    responses((status = 200, body = Envelope<TwoFactorStatusView>),
              (status = 400, body = ErrorBody, description = "`invalid_code_format`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "`invalid_code`, `forbidden`, `reauthentication_required` (send `password`), `incorrect_password` (counted towards the lock)"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`mfa_already_enabled`, `mfa_setup_required`")))]
async fn enable(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<EnableRequest>,
) -> ApiResult<Json<Envelope<TwoFactorStatusView>>> {
    let code = req.totp_code.or(req.code).ok_or_else(|| {
        Error::validation(
            "totp_code",
            "invalid_code_format",
            "Enter the 6-digit code.",
        )
    })?;
    s.two_factor
        .enable(&p, id, &code, req.password.as_ref())
        .await?;
    let status = s.two_factor.status(&p, id).await?;
    Ok(ok_with(
        "Two-factor authentication is on.",
        TwoFactorStatusView::from(status),
    ))
}

/// Turn two-factor authentication off: needs the password and a current code (or a backup code).
#[utoipa::path(post, path = "/api/users/{id}/2fa/disable", tag = "mfa", params(("id" = Uuid, Path)), request_body = ReauthRequest, security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>),
              (status = 400, body = ErrorBody, description = "`invalid_code_format`, `invalid_request`"),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "`incorrect_password`, `invalid_code` (both counted towards the lock), `forbidden`"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`mfa_not_enabled`")))]
async fn disable(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<ReauthRequest>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    let factor = one_code(req.totp_code, req.backup_code, "totp_code")?;
    s.two_factor.disable(&p, id, &req.password, &factor).await?;
    Ok(ok_with("Two-factor authentication is off.", None))
}

/// Replace the backup codes: needs the password and a current code (or a backup code).
#[utoipa::path(post, path = "/api/users/{id}/2fa/backup-codes", tag = "mfa", params(("id" = Uuid, Path)), request_body = ReauthRequest, security(("bearer" = [])),
    responses((status = 200, body = Envelope<BackupCodesView>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "`incorrect_password`, `invalid_code`, `forbidden`"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`mfa_not_enabled`")))]
async fn backup_codes(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<ReauthRequest>,
) -> ApiResult<Json<Envelope<BackupCodesView>>> {
    let factor = one_code(req.totp_code, req.backup_code, "totp_code")?;
    let codes = s
        .two_factor
        .regenerate_backup_codes(&p, id, &req.password, &factor)
        .await?;
    Ok(ok_with(
        "New backup codes; the previous ones no longer work.",
        BackupCodesView {
            backup_codes: codes,
        },
    ))
}

/// Two-factor state of an account (its holder, or an administrator).
#[utoipa::path(get, path = "/api/users/{id}/2fa/status", tag = "mfa", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<TwoFactorStatusView>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn status(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<TwoFactorStatusView>>> {
    Ok(ok(s.two_factor.status(&p, id).await?.into()))
}

/// Remove an account's authenticator app and backup codes (administrators; the user is told
/// by mail). The CLI does the same with `porteiro user reset-2fa EMAIL`.
#[utoipa::path(post, path = "/api/users/{id}/2fa/reset", tag = "mfa", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<ResetView>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Needs `users:manage` (the admin role); never on the caller's own account (that is `disable`, with password and code)"),
              (status = 404, body = ErrorBody)))]
async fn reset(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<ResetView>>> {
    let was_enabled = s.two_factor.reset(Some(&p), id).await?;
    Ok(ok_with(
        if was_enabled {
            "Two-factor authentication was reset."
        } else {
            "Two-factor authentication was not enabled."
        },
        ResetView { was_enabled },
    ))
}
