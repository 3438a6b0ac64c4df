//! Webhook endpoints and their deliveries (issue 13).
//!
//! Every security event is written to the audit log in the same transaction as the change it
//! describes; in that transaction, one delivery row is added for each enabled endpoint that
//! subscribes to the event's type. A worker delivers them (Standard Webhooks signatures) with
//! retries, and what could not be delivered after the last attempt becomes a dead letter.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::audit::AuditEvent;
use crate::store::{StoreError, StoreResult};

/// The subscription to every event type.
pub const ALL_EVENTS: &str = "*";

/// Kinds of audit event that are never fanned out to subscribers: webhook administration
/// itself. (A test event goes to the endpoint being tested only.)
pub const NOT_FANNED_OUT_PREFIX: &str = "webhook.";

/// An endpoint as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Identifier.
    pub id: Uuid,
    /// Where deliveries are POSTed (`http` or `https`).
    pub url: String,
    /// Free text for administrators.
    pub description: String,
    /// Subscribed event types; `["*"]` is every type.
    pub event_types: Vec<String>,
    /// Disabled endpoints get no new deliveries and their pending ones wait.
    pub enabled: bool,
    /// The signing secret, sealed under the master key (context: the endpoint id).
    pub secret_enc: Vec<u8>,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    pub previous_secret_enc: Option<Vec<u8>>,
    /// End of the rotation overlap.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// First failed attempt since the last successful one.
    pub failing_since: Option<DateTime<Utc>>,
    /// Why the server disabled the endpoint (`failing`), if it did.
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("enabled", &self.enabled)
            .field("secret_enc", &"<sealed>")
            .field("previous_secret_until", &self.previous_secret_until)
            .field("failing_since", &self.failing_since)
            .finish_non_exhaustive()
    }
}

/// A new endpoint.
#[derive(Clone)]
pub struct NewWebhookEndpoint {
    /// Identifier (chosen by the caller, so the secret can be sealed to it).
    pub id: Uuid,
    /// Target URL, already validated.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Subscribed types, already validated; `["*"]` for all.
    pub event_types: Vec<String>,
    /// Whether deliveries start at once.
    pub enabled: bool,
    /// Sealed signing secret.
    pub secret_enc: Vec<u8>,
    /// Creation time.
    pub now: DateTime<Utc>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookUpdate {
    /// New URL, already validated.
    pub url: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New subscription, already validated.
    pub event_types: Option<Vec<String>>,
    /// Enable or disable. Enabling clears `failing_since` and `disabled_reason`.
    pub enabled: Option<bool>,
    /// With `enabled: Some(false)`: why the server disabled it.
    pub disabled_reason: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed: a dead letter.
    Dead,
}

impl DeliveryStatus {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One event to deliver to one endpoint, with the outcome of its latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// Identifier (increasing: the cursor of the delivery log).
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The audit event delivered.
    pub event_id: i64,
    /// Its type.
    pub event_type: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the latest attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's HTTP status in the latest attempt.
    pub last_status_code: Option<i32>,
    /// The latest attempt's duration, in milliseconds.
    pub last_latency_ms: Option<i64>,
    /// Why the latest attempt failed (never the response body).
    pub last_error: Option<String>,
    /// When the delivery was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A delivery leased to a worker for one attempt, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Attempts including this one.
    pub attempts: i32,
    /// The event to send.
    pub event: AuditEvent,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Whether the receiver accepted it (2xx).
    pub delivered: bool,
    /// HTTP status, when a response came.
    pub status_code: Option<i32>,
    /// Duration in milliseconds.
    pub latency_ms: i64,
    /// Short reason for a failure.
    pub error: Option<String>,
    /// For a failure: when to try again, or `None` to give up (dead letter).
    pub retry_at: Option<DateTime<Utc>>,
}

/// Which events to deliver again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This one event, whatever the endpoint's subscription.
    Event(i64),
    /// Every event in `[from, to)` that the endpoint subscribes to.
    Range {
        /// Start, inclusive.
        from: DateTime<Utc>,
        /// End, exclusive.
        to: DateTime<Utc>,
    },
}

/// Most events one range replay queues.
pub const MAX_REPLAY_EVENTS: u32 = 10_000;

/// The stored form of a subscription: a JSON array of event types.
#[must_use]
pub fn encode_event_types(types: &[String]) -> String {
    serde_json::Value::Array(
        types
            .iter()
            .map(|t| serde_json::Value::String(t.clone()))
            .collect(),
    )
    .to_string()
}

/// Reads a stored subscription back.
///
/// # Errors
/// When the stored text is not a JSON array of strings.
pub fn decode_event_types(stored: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(stored)
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("bad webhook event_types: {e}")))
}

/// The `LIKE` pattern of the event types that are never fanned out or replayed.
#[must_use]
pub fn not_fanned_out_pattern() -> String {
    format!("{NOT_FANNED_OUT_PREFIX}%")
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// Its new status.
    pub status: DeliveryStatus,
    /// For a retry: when it is due again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// For a delivery or a dead letter: when it was completed.
    pub completed_at: Option<DateTime<Utc>>,
}

impl AttemptResult {
    /// The delivery's new state: delivered, pending until `retry_at`, or dead.
    #[must_use]
    pub fn outcome(&self) -> AttemptOutcome {
        let status = match (self.delivered, self.retry_at) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Dead,
        };
        let pending = status == DeliveryStatus::Pending;
        AttemptOutcome {
            status,
            next_attempt_at: if pending { self.retry_at } else { None },
            completed_at: (!pending).then_some(self.at),
        }
    }
}

/// Typed access to the columns of one stored row, so that both store backends decode rows
/// (webhooks, multi-factor credentials and challenges) with the same code: only how an id, a time
/// or a flag is stored differs between them.
pub trait StoredColumns {
    /// A text column.
    fn text(&self, col: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    /// A boolean column.
    fn flag(&self, col: &str) -> StoreResult<bool>;
    /// A 32-bit integer column.
    fn int(&self, col: &str) -> StoreResult<i32>;
    /// A nullable 32-bit integer column.
    fn opt_int(&self, col: &str) -> StoreResult<Option<i32>>;
    /// A 64-bit integer column.
    fn big(&self, col: &str) -> StoreResult<i64>;
    /// A nullable 64-bit integer column.
    fn opt_big(&self, col: &str) -> StoreResult<Option<i64>>;
    /// A binary column.
    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>>;
    /// A nullable binary column.
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;
    /// A UUID column.
    fn uuid(&self, col: &str) -> StoreResult<Uuid>;
    /// A nullable UUID column.
    fn opt_uuid(&self, col: &str) -> StoreResult<Option<Uuid>>;
    /// A time column.
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>>;
    /// A nullable time column.
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>>;
}

/// The columns [`endpoint_from_columns`] reads, as a literal for `concat!` in a store's SQL.
#[macro_export]
macro_rules! webhook_endpoint_columns {
    () => {
        "id, url, description, event_types, enabled, secret_enc, previous_secret_enc, \
         previous_secret_until, failing_since, disabled_reason, created_at, updated_at"
    };
}

/// Decodes a `webhook_endpoints` row (the columns of [`crate::webhook_endpoint_columns!`]).
///
/// # Errors
/// When a column is missing or malformed.
pub fn endpoint_from_columns(r: &impl StoredColumns) -> StoreResult<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: r.uuid("id")?,
        url: r.text("url")?,
        description: r.text("description")?,
        event_types: decode_event_types(&r.text("event_types")?)?,
        enabled: r.flag("enabled")?,
        secret_enc: r.bytes("secret_enc")?,
        previous_secret_enc: r.opt_bytes("previous_secret_enc")?,
        previous_secret_until: r.opt_time("previous_secret_until")?,
        failing_since: r.opt_time("failing_since")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// Decodes a delivery row (the columns of [`crate::webhook_delivery_columns!`]).
///
/// # Errors
/// When a column is missing or malformed.
pub fn delivery_from_columns(r: &impl StoredColumns) -> StoreResult<WebhookDelivery> {
    let stored = r.text("status")?;
    let status = DeliveryStatus::parse(&stored).ok_or_else(|| {
        StoreError::Backend(anyhow::anyhow!("bad webhook delivery status: {stored}"))
    })?;
    Ok(WebhookDelivery {
        id: r.big("id")?,
        endpoint_id: r.uuid("endpoint_id")?,
        event_id: r.big("event_id")?,
        event_type: r.text("event_type")?,
        status,
        attempts: r.int("attempts")?,
        next_attempt_at: match status {
            DeliveryStatus::Pending => Some(r.time("next_attempt_at")?),
            DeliveryStatus::Delivered | DeliveryStatus::Dead => None,
        },
        last_attempt_at: r.opt_time("last_attempt_at")?,
        last_status_code: r.opt_int("last_status_code")?,
        last_latency_ms: r.opt_big("last_latency_ms")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        completed_at: r.opt_time("completed_at")?,
    })
}

/// The columns [`delivery_from_columns`] reads from `webhook_deliveries d` joined with
/// `audit_events a`, as a literal for `concat!` in a store's SQL.
#[macro_export]
macro_rules! webhook_delivery_columns {
    () => {
        "d.id, d.endpoint_id, d.event_id, a.event_type, d.status, d.attempts, d.next_attempt_at, \
         d.last_attempt_at, d.last_status_code, d.last_latency_ms, d.last_error, d.created_at, \
         d.completed_at"
    };
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn subscriptions_round_trip_as_json() {
        let types = vec!["*".to_owned(), "user.\"odd\"".to_owned()];
        let stored = encode_event_types(&types);
        assert_eq!(stored, r#"["*","user.\"odd\""]"#);
        assert_eq!(decode_event_types(&stored).expect("decodes"), types);
        assert!(decode_event_types("{}").is_err());
    }

    #[test]
    fn an_attempt_delivers_retries_or_gives_up() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid time");
        let retry = at + chrono::Duration::seconds(30);
        let result = |delivered, retry_at| AttemptResult {
            at,
            delivered,
            status_code: None,
            latency_ms: 5,
            error: None,
            retry_at,
        };
        let out = |status, next, done| AttemptOutcome {
            status,
            next_attempt_at: next,
            completed_at: done,
        };
        assert_eq!(
            result(true, Some(retry)).outcome(),
            out(DeliveryStatus::Delivered, None, Some(at))
        );
        assert_eq!(
            result(false, Some(retry)).outcome(),
            out(DeliveryStatus::Pending, Some(retry), None)
        );
        assert_eq!(
            result(false, None).outcome(),
            out(DeliveryStatus::Dead, None, Some(at))
        );
    }
}
