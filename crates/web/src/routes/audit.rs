//! The security event log: `GET /api/admin/audit` (administrators) and `GET /api/auth/me/events`
//! (the caller's own events). Newest first, paginated with a cursor: pass the `next_before` of a
//! page as `before` to get the next one.

use crate::views::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use porteiro_core::domain::AuditFilter;
use porteiro_core::domain::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppQuery, Bearer, RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, ok};

/// Filters and cursor.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this account's events (administrators only).
    pub user_id: Option<Uuid>,
    /// Only this event type, e.g. `sign_in.failed`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// At or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only events older than this id (`next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            user_id: self.user_id,
            event_type: self.event_type.clone(),
            since: self.since,
            until: self.until,
            before_id: self.before,
        }
    }
}

/// One security event. `details` never holds a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Increasing id.
    pub id: i64,
    /// When (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Event type, e.g. `sign_in.succeeded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The account concerned.
    pub user_id: Option<Uuid>,
    /// Who acted, when not the account itself (an administrator).
    pub actor_id: Option<Uuid>,
    /// Client address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Event-specific facts (reason, session id, counts).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            event_type: e.event_type,
            outcome: e.outcome,
            user_id: e.user_id,
            actor_id: e.actor_id,
            ip_address: e.ip_address,
            user_agent: e.user_agent,
            details: e.details,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEventView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

fn page(events: Vec<AuditEvent>, limit: u32) -> AuditPage {
    let full = u32::try_from(events.len()).is_ok_and(|n| n >= limit);
    let next_before = if full {
        events.last().map(|e| e.id)
    } else {
        None
    };
    AuditPage {
        events: events.into_iter().map(AuditEventView::from).collect(),
        next_before,
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_audit))
        .routes(routes!(my_events))
}

fn limit(q: &AuditQuery) -> u32 {
    q.limit
        .unwrap_or(50)
        .clamp(1, porteiro_core::flows::audit::MAX_AUDIT_PAGE)
}

/// The security event log (administrators).
#[utoipa::path(get, path = "/api/admin/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<AuditPage>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn admin_audit(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::AuditRead>,
    AppQuery(q): AppQuery<AuditQuery>,
) -> ApiResult<Json<Envelope<AuditPage>>> {
    let limit = limit(&q);
    let events = s.auth.audit_events(&p, q.filter(), limit).await?;
    Ok(ok(page(events, limit)))
}

/// The caller's own security events.
#[utoipa::path(get, path = "/api/auth/me/events", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<AuditPage>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn my_events(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppQuery(q): AppQuery<AuditQuery>,
) -> ApiResult<Json<Envelope<AuditPage>>> {
    let limit = limit(&q);
    let events = s.auth.my_events(&p, q.filter(), limit).await?;
    Ok(ok(page(events, limit)))
}
