//! `/api/admin/webhooks`: webhook endpoints, their delivery log, dead letters, replay and test
//! events (administrators).
//!
//! The signing secret is in the answers of `POST /api/admin/webhooks` and
//! `POST /api/admin/webhooks/{id}/rotate-secret` only; no other answer carries it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use porteiro_core::domain::webhook::{WebhookDelivery, WebhookEndpoint};
use porteiro_core::flows::webhooks::{
    EndpointChange, EndpointRequest, MAX_DELIVERY_PAGE, ReplayRequest, message_id,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody, error_response};
use crate::extract::{AppJson, AppPath, AppQuery, RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok, ok_with};

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: `http` or `https`, no user name or password, at most 2048
    /// characters, resolving only to public addresses (unless `WEBHOOK_ALLOW_PRIVATE=true`).
    #[schema(example = "https://hooks.example.com/porteiro")]
    pub url: String,
    /// Event types to deliver (see the catalogue); omitted or `["*"]` for every type.
    #[schema(example = json!(["user.registered", "sign_in.failed"]))]
    pub event_types: Option<Vec<String>>,
    /// Free text, at most 500 characters.
    pub description: Option<String>,
    /// Whether deliveries start at once (default true).
    pub enabled: Option<bool>,
}

/// A change to an endpoint; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateWebhook {
    /// New URL (checked like at creation).
    pub url: Option<String>,
    /// New subscription.
    pub event_types: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Enable (clears the failing state) or disable.
    pub enabled: Option<bool>,
}

/// Secret rotation options (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing, in seconds: 0 to 604800 (7 days); default
    /// 86400 (24 hours).
    pub overlap_seconds: Option<i64>,
}

/// What to deliver again: `event_id`, or `from` and `to`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplayWebhook {
    /// One audit event, by id, whatever the endpoint's subscription.
    pub event_id: Option<i64>,
    /// Start of a range (RFC 3339, inclusive): every subscribed event in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    /// End of the range (RFC 3339, exclusive); at most 31 days after `from`.
    pub to: Option<DateTime<Utc>>,
}

/// Cursor and page size of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries with a smaller id (`next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
}

impl DeliveryQuery {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, MAX_DELIVERY_PAGE)
    }
}

/// An endpoint. Never carries its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Identifier.
    pub id: Uuid,
    /// Target URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Subscribed event types; `["*"]` is every type.
    pub event_types: Vec<String>,
    /// Whether new events are delivered.
    pub enabled: bool,
    /// Why the server disabled it (`failing`), if it did.
    pub disabled_reason: Option<String>,
    /// First failed attempt since the last successful one.
    pub failing_since: Option<DateTime<Utc>>,
    /// While a rotation overlap lasts: when the previous secret stops signing.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl WebhookView {
    fn new(e: WebhookEndpoint, now: DateTime<Utc>) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            previous_secret_until: e.previous_secret_until.filter(|t| *t > now),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookView,
    /// The signing secret (`whsec_` and base64 of 32 bytes), for a Standard Webhooks library.
    /// Store it now: it is never shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwKQ0vE8ycxEI=")]
    pub secret: String,
}

impl WebhookWithSecret {
    fn new(e: WebhookEndpoint, secret: &SecretString, now: DateTime<Utc>) -> Self {
        Self {
            endpoint: WebhookView::new(e, now),
            secret: secret.expose_secret().to_owned(),
        }
    }
}

/// A list of endpoints, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The endpoints.
    pub items: Vec<WebhookView>,
}

/// One delivery of one event to one endpoint, as its latest attempt left it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Identifier (the cursor of the log).
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The audit event delivered.
    pub event_id: i64,
    /// Its `webhook-id` header (`evt_<event_id>`).
    pub webhook_id: String,
    /// Its type.
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the latest attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's HTTP status in the latest attempt.
    pub last_status_code: Option<i32>,
    /// The latest attempt's duration in milliseconds.
    pub last_latency_ms: Option<i64>,
    /// Why the latest attempt failed (never the response body).
    pub last_error: Option<String>,
    /// When the delivery was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            webhook_id: message_id(d.event_id),
            event_type: d.event_type,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_latency_ms: d.last_latency_ms,
            last_error: d.last_error,
            created_at: d.created_at,
            completed_at: d.completed_at,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

fn page(deliveries: Vec<WebhookDelivery>, limit: u32) -> DeliveryPage {
    let full = u32::try_from(deliveries.len()).is_ok_and(|n| n >= limit);
    let next_before = if full {
        deliveries.last().map(|d| d.id)
    } else {
        None
    };
    DeliveryPage {
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
        next_before,
    }
}

/// How many deliveries a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// New deliveries queued.
    pub queued: u64,
}

/// The delivery of a test event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestQueued {
    /// The delivery (see the endpoint's delivery log).
    pub delivery_id: i64,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(dead_letters))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(replay))
        .routes(routes!(send_test))
}

/// A JSON body that may be absent: an empty body is `T::default()`; otherwise it must be JSON
/// like any other body. The error is the rejection's status, code and message.
fn optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, (StatusCode, &'static str, &'static str)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with `Content-Type: application/json`.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body has a field of the wrong type.",
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "The request body is not valid JSON.",
            )
        }
    })
}

/// Add an endpoint. The answer carries its signing secret, which is never shown again.
#[utoipa::path(post, path = "/api/admin/webhooks", tag = "webhooks", request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, body = Envelope<WebhookWithSecret>), (status = 400, body = ErrorBody, description = "Invalid URL (including an address refused by the SSRF policy: `invalid_url`), event types or description"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppJson(req): AppJson<CreateWebhook>,
) -> ApiResult<Response> {
    let (endpoint, secret) = s
        .webhooks
        .create(
            &p,
            EndpointRequest {
                url: req.url,
                event_types: req.event_types,
                description: req.description,
                enabled: req.enabled,
            },
        )
        .await?;
    let view = WebhookWithSecret::new(endpoint, &secret, s.webhooks.now());
    Ok((
        StatusCode::CREATED,
        ok_with(
            "Webhook endpoint created. Store its secret now: it is not shown again.",
            view,
        ),
    )
        .into_response())
}

/// Every endpoint, oldest first.
#[utoipa::path(get, path = "/api/admin/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Envelope<WebhookList>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
) -> ApiResult<Json<Envelope<WebhookList>>> {
    let now = s.webhooks.now();
    let items = s
        .webhooks
        .list(&p)
        .await?
        .into_iter()
        .map(|e| WebhookView::new(e, now))
        .collect();
    Ok(ok(WebhookList { items }))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/admin/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<WebhookView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<WebhookView>>> {
    let endpoint = s.webhooks.get(&p, id).await?;
    Ok(ok(WebhookView::new(endpoint, s.webhooks.now())))
}

/// Change an endpoint; enabling it clears its failing state.
#[utoipa::path(put, path = "/api/admin/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), request_body = UpdateWebhook, security(("bearer" = [])),
    responses((status = 200, body = Envelope<WebhookView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<UpdateWebhook>,
) -> ApiResult<Json<Envelope<WebhookView>>> {
    let endpoint = s
        .webhooks
        .update(
            &p,
            id,
            EndpointChange {
                url: req.url,
                event_types: req.event_types,
                description: req.description,
                enabled: req.enabled,
            },
        )
        .await?;
    Ok(ok_with(
        "Webhook endpoint updated.",
        WebhookView::new(endpoint, s.webhooks.now()),
    ))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/api/admin/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.webhooks.delete(&p, id).await?;
    Ok(ok_with("Webhook endpoint deleted.", None))
}

/// Replace the signing secret. The previous secret keeps signing (a second `v1,` signature)
/// for the overlap. The answer carries the new secret, which is never shown again.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path)), request_body(content = Option<RotateSecret>), security(("bearer" = [])),
    responses((status = 200, body = Envelope<WebhookWithSecret>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn rotate_secret(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: RotateSecret = match optional_json(&headers, &body) {
        Ok(req) => req,
        Err((status, code, message)) => return Ok(error_response(status, code, message)),
    };
    let (endpoint, secret) = s
        .webhooks
        .rotate_secret(&p, id, req.overlap_seconds)
        .await?;
    let view = WebhookWithSecret::new(endpoint, &secret, s.webhooks.now());
    Ok(ok_with(
        "Secret rotated. Store the new secret now: it is not shown again.",
        view,
    )
    .into_response())
}

/// An endpoint's delivery log, newest first.
#[utoipa::path(get, path = "/api/admin/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = Uuid, Path), DeliveryQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<DeliveryPage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deliveries(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<DeliveryQuery>,
) -> ApiResult<Json<Envelope<DeliveryPage>>> {
    let limit = q.limit();
    let list = s.webhooks.deliveries(&p, id, q.before, limit).await?;
    Ok(ok(page(list, limit)))
}

/// Deliveries of every endpoint that failed their last attempt, newest first.
#[utoipa::path(get, path = "/api/admin/webhooks/dead-letters", tag = "webhooks", params(DeliveryQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<DeliveryPage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn dead_letters(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppQuery(q): AppQuery<DeliveryQuery>,
) -> ApiResult<Json<Envelope<DeliveryPage>>> {
    let limit = q.limit();
    let list = s.webhooks.dead_letters(&p, q.before, limit).await?;
    Ok(ok(page(list, limit)))
}

/// Deliver events to this endpoint again: one event (`event_id`), or every subscribed event in
/// `[from, to)`. The replayed deliveries carry the events' original `webhook-id`.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/replay", tag = "webhooks", params(("id" = Uuid, Path)), request_body = ReplayWebhook, security(("bearer" = [])),
    responses((status = 200, body = Envelope<Replayed>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "No such endpoint or event")))]
async fn replay(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<ReplayWebhook>,
) -> ApiResult<Json<Envelope<Replayed>>> {
    let queued = s
        .webhooks
        .replay(
            &p,
            id,
            ReplayRequest {
                event_id: req.event_id,
                from: req.from,
                to: req.to,
            },
        )
        .await?;
    Ok(ok_with("Events queued for delivery.", Replayed { queued }))
}

/// Send a `webhook.tested` event to this endpoint only.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/test", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 202, body = Envelope<TestQueued>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn send_test(
    State(s): State<AppState>,
    RequirePermission(p, _perm): RequirePermission<perm::WebhooksManage>,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Response> {
    let delivery_id = s.webhooks.send_test(&p, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        ok_with("Test event queued.", TestQueued { delivery_id }),
    )
        .into_response())
}
