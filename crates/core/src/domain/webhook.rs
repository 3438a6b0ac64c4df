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

impl WebhookEndpoint {
    /// Whether the endpoint subscribes to `event_type`.
    #[must_use]
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.event_types
            .iter()
            .any(|t| t == ALL_EVENTS || t == event_type)
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
