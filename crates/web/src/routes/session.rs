//! Browser sessions over the API: `GET /api/auth/csrf`, `POST /api/auth/session` (sign in with a
//! cookie; `POST /api/auth/session/verify` finishes one that needs a second step) and `DELETE /api/auth/session` (sign out). The session cookie is `HttpOnly`,
//! `SameSite=Lax`, `__Host-`-prefixed and `Secure` under HTTPS; every state-changing call made
//! with it needs the CSRF token (see [`crate::extract::Bearer`]).

use crate::views::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::cookies::{CSRF, DEVICE, SESSION};
use crate::error::{ApiError, ErrorBody};
use crate::extract::auth::{csrf_failed, csrf_ok};
use crate::extract::{AppJson, ClientInfo};
use crate::state::AppState;
use crate::views::{AuthResponse, Envelope, UserView, ok};
use porteiro_core::Error;
use porteiro_core::flows::browser::{BrowserSession, BrowserSignIn};
use porteiro_core::flows::mfa::SecondFactor;

/// Device cookies live a year; they only matter while the account exists.
const DEVICE_COOKIE_SECS: i64 = 365 * 24 * 3600;

/// `Set-Cookie` for a new device cookie, if sign-in made one.
pub(crate) fn device_cookie(state: &AppState, token: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        state
            .settings
            .cookies
            .set(&mut headers, DEVICE, token, Some(DEVICE_COOKIE_SECS));
    }
    headers
}

/// A CSRF token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CsrfToken {
    /// Send it back in the `X-CSRF-Token` header (or the `csrf_token` form field of the UI).
    pub csrf_token: String,
}

/// Browser sign-in body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SessionRequest {
    /// Username or email.
    pub username_or_email: String,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: secrecy::SecretString,
}

/// A browser session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session (listed among devices).
    pub session_id: Uuid,
    /// The CSRF token bound to this session (also set as a cookie).
    pub csrf_token: String,
    /// The signed-in user.
    pub user: UserView,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(csrf))
        .routes(routes!(sign_in, sign_out))
        .routes(routes!(session_verify))
}

/// Issues a CSRF token (and its cookie) for this browser.
#[utoipa::path(get, path = "/api/auth/csrf", tag = "auth",
    responses((status = 200, body = Envelope<CsrfToken>)))]
async fn csrf(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> (HeaderMap, Json<Envelope<CsrfToken>>) {
    let cookies = s.settings.cookies;
    let session = cookies.read(&headers, SESSION);
    let token = s.auth.csrf_token(session.as_deref());
    let mut out = HeaderMap::new();
    cookies.set(&mut out, CSRF, &token, None);
    (out, ok(CsrfToken { csrf_token: token }))
}

/// Signs a browser in: sets the session cookie, a new CSRF cookie and the device cookie. Needs
/// the CSRF token from `GET /api/auth/csrf` in `X-CSRF-Token`.
#[utoipa::path(post, path = "/api/auth/session", tag = "auth", request_body = SessionRequest,
    responses((status = 200, body = Envelope<SessionAnswer>, description = "The session, or (for an account that needs one) the second step: finish it with `POST /api/auth/session/verify`"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "CSRF token missing or wrong; account disabled"),
        (status = 429, body = ErrorBody)))]
async fn sign_in(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    parts: Parts,
    AppJson(req): AppJson<SessionRequest>,
) -> Result<(HeaderMap, Json<Envelope<SessionAnswer>>), Response> {
    let cookies = s.settings.cookies;
    let current = cookies.read(&parts.headers, SESSION);
    if !csrf_ok(&parts, &s, current.as_deref()) {
        return Err(csrf_failed());
    }
    let browser = match s
        .auth
        .login_browser(&req.username_or_email, &req.password, &ctx)
        .await
        .map_err(|e| ApiError(e).into_response())?
    {
        BrowserSignIn::Done(browser) => browser,
        BrowserSignIn::SecondStep(step) => {
            return Ok((
                HeaderMap::new(),
                Json(Envelope {
                    status: "success",
                    message: Some("A second step is required.".to_owned()),
                    data: SessionAnswer::SecondStep(AuthResponse::second_step(step)),
                }),
            ));
        }
    };
    open_browser_session(&s, current.as_deref(), *browser).await
}

/// Sets the cookies of a new browser session (ending the one the browser had, if any).
async fn open_browser_session(
    s: &AppState,
    current: Option<&str>,
    browser: BrowserSession,
) -> Result<(HeaderMap, Json<Envelope<SessionAnswer>>), Response> {
    let cookies = s.settings.cookies;
    // Signing in over an existing browser session ends that one: one cookie, one session.
    if let Some(previous) = current
        && let Ok(p) = s.auth.authenticate_cookie(previous).await
    {
        s.auth
            .logout(&p)
            .await
            .map_err(|e| ApiError(e).into_response())?;
    }
    let mut headers = device_cookie(s, browser.signed_in.device_token.as_deref());
    let lifetime = s.auth.config().initial_session_lifetime().num_seconds();
    cookies.set(&mut headers, SESSION, &browser.cookie, Some(lifetime));
    cookies.set(&mut headers, CSRF, &browser.csrf, None);
    Ok((
        headers,
        ok(SessionAnswer::Session(SessionView {
            session_id: browser.signed_in.session_id,
            csrf_token: browser.csrf,
            user: UserView::new(browser.signed_in.user, s.auth.now()),
        })),
    ))
}

/// The second step of a browser sign-in: exactly one of the code fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SessionVerifyRequest {
    /// The `mfa_token` from the sign-in answer.
    pub mfa_token: String,
    /// The 6-digit code of the authenticator app.
    pub code: Option<String>,
    /// Same as `code`.
    pub totp_code: Option<String>,
    /// One of the backup codes.
    pub backup_code: Option<String>,
    /// The 6-digit code from the sign-in mail (when `methods` offers `email`).
    pub email_code: Option<String>,
}

/// Finishes a browser sign-in that needed a second step: sets the same cookies as a one-step
/// sign-in. Needs the CSRF token in `X-CSRF-Token`.
#[utoipa::path(post, path = "/api/auth/session/verify", tag = "auth", request_body = SessionVerifyRequest,
    responses((status = 200, body = Envelope<SessionView>),
        (status = 400, body = ErrorBody, description = "`invalid_code_format` (none or several of the code fields), `mfa_method_not_allowed`"),
        (status = 401, body = ErrorBody, description = "`invalid_mfa_token`, `invalid_code`"),
        (status = 403, body = ErrorBody, description = "CSRF token missing or wrong; account disabled"),
        (status = 429, body = ErrorBody)))]
async fn session_verify(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    parts: Parts,
    AppJson(req): AppJson<SessionVerifyRequest>,
) -> Result<(HeaderMap, Json<Envelope<SessionAnswer>>), Response> {
    let current = s.settings.cookies.read(&parts.headers, SESSION);
    if !csrf_ok(&parts, &s, current.as_deref()) {
        return Err(csrf_failed());
    }
    let factor = match (req.code.or(req.totp_code), req.backup_code, req.email_code) {
        (Some(code), None, None) => SecondFactor::Totp(code),
        (None, Some(code), None) => SecondFactor::BackupCode(code),
        (None, None, Some(code)) => SecondFactor::EmailCode(code),
        _ => {
            return Err(ApiError(Error::validation(
                "code",
                "invalid_code_format",
                "Send one of `code`, `backup_code` or `email_code`.",
            ))
            .into_response());
        }
    };
    let signed_in = s
        .auth
        .verify_second_step(&req.mfa_token, &factor, &ctx)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    let browser = s
        .auth
        .attach_browser(signed_in)
        .await
        .map_err(|e| ApiError(e).into_response())?;
    open_browser_session(&s, current.as_deref(), browser).await
}

/// A browser sign-in's answer: the session, or the second step it needs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SessionAnswer {
    /// Signed in.
    Session(SessionView),
    /// A second step is needed (`POST /api/auth/session/verify`).
    SecondStep(AuthResponse),
}

/// Signs the browser out: revokes its session (CSRF token required while it is live) and clears
/// the cookie — also when the session had already ended.
#[utoipa::path(delete, path = "/api/auth/session", tag = "auth", security(("cookie" = [])),
    responses((status = 200, body = Envelope<CsrfToken>), (status = 403, body = ErrorBody)))]
async fn sign_out(
    State(s): State<AppState>,
    parts: Parts,
) -> Result<(HeaderMap, Json<Envelope<CsrfToken>>), Response> {
    let cookies = s.settings.cookies;
    if let Some(session) = cookies.read(&parts.headers, SESSION)
        && let Ok(p) = s.auth.authenticate_cookie(&session).await
    {
        if !csrf_ok(&parts, &s, Some(&session)) {
            return Err(csrf_failed());
        }
        s.auth
            .logout(&p)
            .await
            .map_err(|e| ApiError(e).into_response())?;
    }
    let mut headers = HeaderMap::new();
    cookies.clear(&mut headers, SESSION);
    let token = s.auth.csrf_token(None);
    cookies.set(&mut headers, CSRF, &token, None);
    Ok((headers, ok(CsrfToken { csrf_token: token })))
}
