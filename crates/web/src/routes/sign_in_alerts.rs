//! `GET /api/auth/login-history`: the caller's own sign-ins, newest first, from the audit log
//! (see [`porteiro_core::flows::sign_in_alerts`]). Paginated with a cursor, like the audit log:
//! pass a page's `next_before` as `before` for the next one.
//!
//! The "this wasn't me" link of a new-device alert is a hosted page (`/ui/not-me`), not an API
//! route: see `ui::not_me`.

use crate::views::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use porteiro_core::domain::device::describe;
use porteiro_core::domain::sign_in_alert::LoginAttempt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppQuery, Bearer};
use crate::state::AppState;
use crate::views::{Envelope, ok};

/// The history's cursor and page size.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Cursor: only sign-ins older than this (`next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
}

/// The device of a sign-in, as its user agent describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDevice {
    /// Browser, when known.
    pub browser: Option<String>,
    /// Operating system, when known.
    pub os: Option<String>,
    /// A name such as "Firefox on Linux".
    pub name: String,
    /// `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance` or `unknown`.
    pub device_type: String,
}

/// One sign-in attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    /// The audit event's id (the cursor).
    pub id: i64,
    /// When (UTC).
    pub time: DateTime<Utc>,
    /// Client address.
    pub ip_address: Option<String>,
    /// The device.
    pub device: HistoryDevice,
    /// `success` or `failure`.
    pub result: String,
    /// `password`, or the second step that ended it: `totp`, `backup_code`, `email`.
    pub method: String,
}

impl From<LoginAttempt> for HistoryItem {
    fn from(a: LoginAttempt) -> Self {
        let method = a.method();
        let d = describe(a.user_agent.as_deref());
        Self {
            id: a.id,
            time: a.occurred_at,
            ip_address: a.ip_address,
            device: HistoryDevice {
                browser: d.browser,
                os: d.os,
                name: d.name,
                device_type: d.device_type,
            },
            result: a.outcome,
            method,
        }
    }
}

/// A page of the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login_history))
}

/// The caller's sign-ins (successful and failed), newest first.
#[utoipa::path(get, path = "/api/auth/login-history", tag = "auth", params(HistoryQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<HistoryPage>),
        (status = 400, body = ErrorBody, description = "`invalid_pagination`, `invalid_query`"),
        (status = 401, body = ErrorBody)))]
async fn login_history(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> ApiResult<Json<Envelope<HistoryPage>>> {
    let page = s
        .auth
        .login_history(&p, q.before, q.limit.unwrap_or(20))
        .await?;
    Ok(ok(HistoryPage {
        items: page.items.into_iter().map(HistoryItem::from).collect(),
        next_before: page.next_before,
    }))
}
