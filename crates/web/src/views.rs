//! Response and request bodies. User views never contain a password hash, secret or token.

use chrono::{DateTime, Utc};
use porteiro_core::domain::User;
use porteiro_core::domain::rbac::ADMIN_ROLE;
use porteiro_core::flows::devices::Device;
use porteiro_core::flows::mfa::SecondStep;
use porteiro_core::service::Authenticated;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Success envelope of every `/api` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always `success`.
    #[schema(example = "success")]
    pub status: &'static str,
    /// Optional human-readable note.
    pub message: Option<String>,
    /// The payload.
    pub data: T,
}

/// A JSON response body. Like `axum::Json`, but serialized into a buffer sized for a typical
/// answer, which spares the reallocations of growing from 128 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Json<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        let mut body = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => {
                crate::error::ApiError(porteiro_core::Error::Internal(e.into())).into_response()
            }
        }
    }
}

/// Wraps `data` in the success envelope.
pub fn ok<T>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        status: "success",
        message: None,
        data,
    })
}

/// Wraps `data` with a message.
pub fn ok_with<T>(message: &str, data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        status: "success",
        message: Some(message.to_owned()),
        data,
    })
}

/// A user as shown to themselves and administrators.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Identifier.
    pub id: Uuid,
    /// Username.
    pub username: String,
    /// Email (lower-cased).
    pub email: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// False when disabled by an administrator.
    pub is_active: bool,
    /// Holds the built-in `admin` role.
    pub is_admin: bool,
    /// Names of the roles held, sorted.
    pub roles: Vec<String>,
    /// Locked after too many failed sign-ins.
    pub is_locked: bool,
    /// End of the current lock.
    pub locked_until: Option<DateTime<Utc>>,
    /// Consecutive failed sign-ins.
    pub failed_login_attempts: i32,
    /// Primary email verified.
    pub email_verified: bool,
    /// When the current address was confirmed.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Two-factor authentication enabled.
    pub two_factor_enabled: bool,
    /// Preferred language.
    pub locale: String,
    /// Sign-ins from new devices mail an alert.
    pub login_alerts: bool,
    /// The owner said "this wasn't me" about a sign-in: the password works again only after a
    /// reset.
    pub password_reset_required: bool,
    /// Other accounts may send private messages (`/api/messages`).
    pub accept_messages: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl UserView {
    /// Builds the view at `now` (for `is_locked`).
    #[must_use]
    pub fn new(u: User, now: DateTime<Utc>) -> Self {
        Self {
            is_locked: u.is_locked(now),
            locked_until: u.locked_until.filter(|t| *t > now),
            id: u.id,
            username: u.username,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            is_active: u.is_active,
            is_admin: u.roles.iter().any(|r| r == ADMIN_ROLE),
            roles: u.roles,
            failed_login_attempts: u.failed_login_attempts,
            email_verified: u.email_verified,
            email_verified_at: u.email_verified_at,
            two_factor_enabled: false,
            locale: u.locale,
            login_alerts: u.login_alerts,
            password_reset_required: u.password_reset_required,
            accept_messages: u.accept_messages,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Tokens and user after a sign-in or refresh (seed 004 `AuthResponse`). When a second step is
/// needed, the tokens, session and user are null and `mfa_token` and `methods` say how to go on.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    /// Signed JWT (EdDSA), valid `expires_in` seconds; null until the second step is done.
    pub access_token: Option<String>,
    /// Opaque, single-use refresh token; null until the second step is done.
    pub refresh_token: Option<String>,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds — or, with `mfa_token`, that token's lifetime.
    pub expires_in: i64,
    /// An authenticator app (or backup code) is required: finish with `POST /api/auth/2fa/verify`.
    pub requires_2fa: bool,
    /// A code was mailed: finish with `POST /api/auth/email-verification/verify`.
    pub requires_email_verification: bool,
    /// Single-use token naming the second step (≤ 5 minutes; never a bearer token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
    /// Methods the account can use for the second step: `totp`, `backup_code`, `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<&'static str>>,
    /// The session (device) id.
    pub session_id: Option<Uuid>,
    /// The user.
    pub user: Option<UserView>,
}

impl AuthResponse {
    /// Builds the response.
    #[must_use]
    pub fn new(a: Authenticated, now: DateTime<Utc>) -> Self {
        Self {
            access_token: Some(a.access_token),
            refresh_token: Some(a.refresh_token),
            token_type: "Bearer",
            expires_in: a.expires_in,
            requires_2fa: false,
            requires_email_verification: false,
            mfa_token: None,
            methods: None,
            session_id: Some(a.session_id),
            user: Some(UserView::new(a.user, now)),
        }
    }

    /// The answer to a password that needs a second step.
    #[must_use]
    pub fn second_step(step: SecondStep) -> Self {
        Self {
            access_token: None,
            refresh_token: None,
            token_type: "Bearer",
            expires_in: step.expires_in,
            requires_2fa: step.requires_2fa,
            requires_email_verification: step.requires_email_verification,
            methods: Some(step.methods.iter().map(|m| m.as_str()).collect()),
            mfa_token: Some(step.mfa_token),
            session_id: None,
            user: None,
        }
    }
}

/// A session as a device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Session id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Name (derived from the user agent, or chosen).
    pub device_name: String,
    /// `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance`, `unknown`.
    pub device_type: String,
    /// Operating system.
    pub os: Option<String>,
    /// Browser.
    pub browser: Option<String>,
    /// IP at sign-in or last refresh.
    pub ip_address: Option<String>,
    /// Raw user agent.
    pub user_agent: Option<String>,
    /// Location (not resolved).
    pub location: Option<String>,
    /// Sign-in time.
    pub created_at: DateTime<Utc>,
    /// Last sign-in or refresh.
    pub last_active_at: DateTime<Utc>,
    /// Session expiry.
    pub expires_at: DateTime<Utc>,
    /// The session making this request.
    pub is_current: bool,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        let s = d.session;
        Self {
            id: s.id,
            user_id: s.user_id,
            device_name: s.device_name,
            device_type: s.device_type,
            os: s.os,
            browser: s.browser,
            ip_address: s.ip_address,
            user_agent: s.user_agent,
            location: None,
            created_at: s.created_at,
            last_active_at: s.last_active_at,
            expires_at: s.expires_at,
            is_current: d.is_current,
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Users on this page.
    pub items: Vec<UserView>,
    /// Total users.
    pub total: u64,
    /// 1-based page.
    pub page: u64,
    /// Page size.
    pub per_page: u64,
    /// Number of pages.
    pub total_pages: u64,
}

/// The user list's query: pagination, search and filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UserListQuery {
    /// 1-based page (default 1).
    pub page: Option<u64>,
    /// Page size, 1–100 (default 20).
    pub per_page: Option<u64>,
    /// Case-insensitive prefix of the email or the username (at most 254 characters).
    pub q: Option<String>,
    /// `true`: active accounts only; `false`: disabled ones only.
    pub active: Option<bool>,
    /// `true`: accounts locked by failed sign-ins right now; `false`: the others.
    pub locked: Option<bool>,
    /// Holders of this role (a name); an unknown role gives an empty page.
    pub role: Option<String>,
}

/// A count of revoked sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// How many sessions were revoked.
    pub revoked: usize,
}
