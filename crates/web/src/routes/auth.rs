//! `/api/auth`: the seed-004 authentication routes.

use crate::views::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use porteiro_core::Error;
use porteiro_core::domain::rbac::Permission;
use porteiro_core::flows::introspection::Introspection;
use porteiro_core::flows::mfa::SignIn;
use porteiro_core::flows::registration::Registration;
use porteiro_core::flows::registration::ensure_confirmed;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, Bearer, ClientInfo, RequirePermission, perm};
use crate::routes::compact::FORGOT_MESSAGE;
use crate::state::AppState;
use crate::views::{AuthResponse, Envelope, Revoked, UserView, ok, ok_with};

/// Registration body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3–32 characters: letters, digits, `.`, `_`, `-`.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Password (8–128 characters, letters and digits, not common).
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Must equal `password` when present.
    #[schema(value_type = Option<String>, format = Password)]
    pub confirm_password: Option<SecretString>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
}

/// Login body: `username_or_email` (seed 004), or `login`, `email`, `username`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    pub username_or_email: Option<String>,
    /// Username or email.
    pub login: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Refresh body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshTokenRequest {
    /// The refresh token.
    pub refresh_token: String,
}

/// Forgot-password body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotRequest {
    /// Account email.
    pub email: String,
}

/// Reset-password body (email optional, unlike the compact API).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetRequest {
    /// Token from the email link.
    pub token: String,
    /// New password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Must equal `password` when present.
    #[schema(value_type = Option<String>, format = Password)]
    pub confirm_password: Option<SecretString>,
    /// Account email; checked when present.
    pub email: Option<String>,
    /// For an account with security questions: the proof from
    /// `POST /api/auth/verify-security-question` (required then; an addition to seed 004).
    pub recovery_proof: Option<String>,
}

/// Token revocation body: a refresh token to revoke; without one, the current session ends.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RevokeRequest {
    /// A refresh token (RFC 7009 `token`).
    pub token: Option<String>,
    /// Same, seed-004 name.
    pub refresh_token: Option<String>,
}

/// Unlock body: one of the identifiers.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnlockRequest {
    /// User id.
    pub user_id: Option<Uuid>,
    /// Username or email.
    pub username_or_email: Option<String>,
    /// Email.
    pub email: Option<String>,
}

/// RFC 7662 request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The token to describe.
    pub token: String,
    /// `access_token` or `refresh_token`.
    pub token_type_hint: Option<String>,
}

/// RFC 7662 response.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct IntrospectResponse {
    /// Whether the token is live.
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// User id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Expiry (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// How the session was authenticated (RFC 8176).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The user's roles now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Every permission the user holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(me))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(rotate))
        .routes(routes!(revoke))
        .routes(routes!(logout))
        .routes(routes!(revoke_all))
        .routes(routes!(unlock))
        .routes(routes!(introspect))
}

/// Create an account; a link to confirm its address is mailed to it.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Envelope<UserView>), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn register(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<RegisterRequest>,
) -> ApiResult<Response> {
    let user = s
        .auth
        .register(Registration {
            username: req.username,
            email: req.email,
            password: req.password,
            confirm_password: req.confirm_password,
            first_name: req.first_name,
            last_name: req.last_name,
            locale: ctx.accept_language,
            is_admin: false,
            email_verified: false,
        })
        .await?;
    s.email_confirmation.registered(&user).await;
    Ok((
        StatusCode::CREATED,
        ok_with("Account created.", UserView::new(user, s.auth.now())),
    )
        .into_response())
}

/// Sign in with username or email and password. For an account that needs a second step the
/// tokens are null and `mfa_token` and `methods` say how to finish (`/api/auth/2fa/verify` or
/// `/api/auth/email-verification/verify`).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Envelope<AuthResponse>), (status = 401, body = ErrorBody, description = "Unknown user, wrong password or locked account"),
              (status = 403, body = ErrorBody, description = "Disabled account, or unconfirmed address while REQUIRE_VERIFIED_EMAIL (right password only): `account_disabled`, `email_not_verified`"), (status = 503, body = ErrorBody)))]
async fn login(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<LoginRequest>,
) -> ApiResult<(HeaderMap, Json<Envelope<AuthResponse>>)> {
    let identifier = req
        .username_or_email
        .as_deref()
        .or(req.login.as_deref())
        .or(req.email.as_deref())
        .or(req.username.as_deref())
        .ok_or_else(|| {
            Error::validation(
                "username_or_email",
                "invalid_login",
                "Enter your username or email.",
            )
        })?;
    match s.auth.login(identifier, &req.password, &ctx).await? {
        SignIn::Done(out) => {
            let headers = crate::routes::session::device_cookie(&s, out.device_token.as_deref());
            Ok((headers, ok(AuthResponse::new(*out, s.auth.now()))))
        }
        SignIn::SecondStep(step) => Ok((
            HeaderMap::new(),
            ok_with(
                "A second step is required.",
                AuthResponse::second_step(step),
            ),
        )),
    }
}

/// Exchange a refresh token for a new pair; reuse of a spent token revokes its session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshTokenRequest,
    responses((status = 200, body = Envelope<AuthResponse>), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<RefreshTokenRequest>,
) -> ApiResult<Json<Envelope<AuthResponse>>> {
    let out = s.auth.refresh(&req.refresh_token, &ctx).await?;
    Ok(ok(AuthResponse::new(out, s.auth.now())))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 401, body = ErrorBody)))]
async fn me(State(s): State<AppState>, Bearer(p): Bearer) -> ApiResult<Json<Envelope<UserView>>> {
    let user = s.auth.me(&p).await?;
    Ok(ok(UserView::new(user, s.auth.now())))
}

/// Send a reset link if the email belongs to an account (same answer either way).
#[utoipa::path(post, path = "/api/auth/forgot-password", tag = "auth", request_body = ForgotRequest,
    responses((status = 200, body = Envelope<Option<String>>), (status = 400, body = ErrorBody)))]
async fn forgot_password(
    State(s): State<AppState>,
    AppJson(req): AppJson<ForgotRequest>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.forgot_password(&req.email)?;
    Ok(ok_with(FORGOT_MESSAGE, None))
}

/// Set a new password with the emailed token; every session is revoked. An account with
/// security questions also needs `recovery_proof` (`403 recovery_proof_required` without it;
/// the token stays usable).
#[utoipa::path(post, path = "/api/auth/reset-password", tag = "auth", request_body = ResetRequest,
    responses((status = 200, body = Envelope<Option<String>>), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "`invalid_reset_token`, `recovery_proof_required`, `invalid_recovery_proof`")))]
async fn reset_password(
    State(s): State<AppState>,
    AppJson(req): AppJson<ResetRequest>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    ensure_confirmed(
        "confirm_password",
        &req.password,
        req.confirm_password.as_ref(),
    )?;
    s.auth
        .reset_password(
            &req.token,
            req.email.as_deref(),
            &req.password,
            req.recovery_proof.as_deref(),
        )
        .await?;
    Ok(ok_with(
        "Password reset; every session was signed out.",
        None,
    ))
}

/// Rotate tokens for the current session: the refresh token must belong to it.
#[utoipa::path(post, path = "/api/auth/token/rotate", tag = "auth", request_body = RefreshTokenRequest, security(("bearer" = [])),
    responses((status = 200, body = Envelope<AuthResponse>), (status = 401, body = ErrorBody)))]
async fn rotate(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    ClientInfo(ctx): ClientInfo,
    AppJson(req): AppJson<RefreshTokenRequest>,
) -> ApiResult<Json<Envelope<AuthResponse>>> {
    let out = s.auth.rotate_for(&p, &req.refresh_token, &ctx).await?;
    Ok(ok(AuthResponse::new(out, s.auth.now())))
}

/// Revoke a refresh token's session, or the current session when no token is given.
#[utoipa::path(post, path = "/api/auth/token/revoke", tag = "auth", request_body(content = RevokeRequest, description = "Optional"), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 401, body = ErrorBody)))]
async fn revoke(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    body: axum::body::Bytes,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    // The body is optional: empty means "this session".
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        RevokeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            Error::validation(
                "token",
                "invalid_request",
                "The body must be JSON with an optional `token`.",
            )
        })?
    };
    match req.token.or(req.refresh_token) {
        Some(token) => s.auth.revoke_refresh_token(Some(&p), &token).await?,
        None => s.auth.logout(&p).await?,
    }
    Ok(ok_with("Token revoked.", None))
}

/// Sign out: revoke the current session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 401, body = ErrorBody)))]
async fn logout(
    State(s): State<AppState>,
    Bearer(p): Bearer,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.auth.logout(&p).await?;
    Ok(ok_with("Signed out.", None))
}

/// Revoke every session of a user (yourself, or anyone as an administrator).
#[utoipa::path(post, path = "/api/auth/revoke-all/{id}", tag = "auth", params(("id" = Uuid, Path, description = "User id")), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Revoked>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_all(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Revoked>>> {
    let revoked = s.auth.revoke_all(&p, id).await?;
    Ok(ok_with("All sessions revoked.", Revoked { revoked }))
}

/// Unlock an account locked by failed sign-ins (administrators).
#[utoipa::path(post, path = "/api/auth/unlock", tag = "auth", request_body = UnlockRequest, security(("bearer" = [])),
    responses((status = 200, body = Envelope<UserView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unlock(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::UsersManage>,
    AppJson(req): AppJson<UnlockRequest>,
) -> ApiResult<Json<Envelope<UserView>>> {
    let identifier = req
        .user_id
        .map(|id| id.to_string())
        .or(req.username_or_email)
        .or(req.email)
        .ok_or_else(|| {
            Error::validation(
                "user_id",
                "invalid_request",
                "Send `user_id`, `username_or_email` or `email`.",
            )
        })?;
    let user = s.auth.unlock_as(&p, &identifier).await?;
    Ok(ok_with(
        "Account unlocked.",
        UserView::new(user, s.auth.now()),
    ))
}

/// RFC 7662 token introspection, for an administrator's bearer token or the configured client
/// credentials (HTTP Basic). Accepts a form or a JSON body.
#[utoipa::path(post, path = "/api/auth/introspect", tag = "auth", request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("bearer" = []), ("basic" = [])),
    responses((status = 200, body = IntrospectResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn introspect(
    State(s): State<AppState>,
    guard: Option<axum::Extension<std::sync::Arc<crate::guard::Guard>>>,
    client_ip: Option<axum::Extension<crate::guard::ClientIp>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // Introspection has a generous bucket of its own; guessing the caller's credentials is what
    // must stay slow, so each failure costs a sign-in token and an empty sign-in bucket refuses
    // the caller before its credentials are looked at.
    let limiter = guard
        .as_ref()
        .and_then(|g| g.limiter.as_ref())
        .zip(client_ip.map(|ip| ip.0.0));
    if let Some((limiter, ip)) = limiter
        && let Err(wait) = limiter.sign_in_available(ip)
    {
        return Ok(crate::guard::too_many_requests(wait));
    }
    if let Err(e) = authorize_introspection(&s, &headers).await {
        if let Some((limiter, ip)) = limiter {
            limiter.charge_sign_in_failure(ip);
        }
        return Err(e);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let parsed = if is_json {
        serde_json::from_slice::<IntrospectRequest>(&body).ok()
    } else {
        serde_urlencoded_form(&body)
    };
    let req = parsed.ok_or_else(|| {
        Error::validation("token", "invalid_request", "Send `token` as a form field.")
    })?;
    let answer = match s
        .auth
        .introspect(&req.token, req.token_type_hint.as_deref())
        .await?
    {
        Introspection::Inactive => IntrospectResponse::default(),
        Introspection::Active {
            token_type,
            sub,
            username,
            sid,
            exp,
            iat,
            jti,
            amr,
            roles,
            permissions,
        } => IntrospectResponse {
            active: true,
            token_type: Some(token_type),
            sub: Some(sub),
            username: Some(username),
            sid: Some(sid),
            exp: Some(exp.timestamp()),
            iat,
            jti,
            iss: Some(s.auth.config().issuer.clone()),
            aud: Some(s.auth.config().audience.clone()),
            amr: Some(amr),
            roles: Some(roles),
            permissions: Some(permissions),
        },
    };
    Ok(Json(answer).into_response())
}

fn serde_urlencoded_form(body: &[u8]) -> Option<IntrospectRequest> {
    let mut token = None;
    let mut hint = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "token" => token = Some(v.into_owned()),
            "token_type_hint" => hint = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(IntrospectRequest {
        token: token?,
        token_type_hint: hint,
    })
}

async fn authorize_introspection(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (scheme, rest) = value.split_once(' ').unwrap_or(("", ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let p = s.auth.authenticate(rest.trim()).await?;
        p.ensure(Permission::TokensIntrospect)?;
        return Ok(());
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Some((id, secret)) = &s.settings.introspection_client
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .unwrap_or_default();
        let expected = format!("{id}:{}", secret.expose_secret());
        if porteiro_core::crypto::ct_eq(&decoded, expected.as_bytes()) {
            return Ok(());
        }
    }
    Err(ApiError(Error::InvalidAccessToken))
}
