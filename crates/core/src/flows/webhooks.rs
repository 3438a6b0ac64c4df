//! Webhooks (issue 13): endpoint administration, the Standard Webhooks message format, and the
//! bookkeeping of each delivery attempt.
//!
//! A separate service, [`Webhooks`], rather than more of [`crate::Auth`]: it needs only the
//! store, the key hierarchy (secrets are encrypted at rest), the clock and its settings. The web layer
//! calls it for the admin API; the server's delivery worker calls it to sign, to record attempts
//! and to decide retries.
//!
//! Delivery rows are not written here: every security event's store call fans it out to the
//! subscribed endpoints in its own transaction (see [`crate::store::WebhookStore`]). The worker
//! leases due rows, POSTs each one ([`payload`], [`signature_header`]) and reports the result
//! through [`Webhooks::record_attempt`], which schedules the retry, makes the dead letter, and
//! disables an endpoint that has been failing for too long.
//!
//! Secrets: 32 bytes from the OS CSPRNG, shown once as `whsec_<base64>` (the Standard Webhooks
//! format), stored only encrypted with the deployment's data key and bound to the endpoint id, so
//! a secret copied onto another endpoint's row does not open. Audit details never carry a
//! secret, nor the URL (receivers such as chat services put a bearer token in the path): only
//! the endpoint id and host.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Clock;
use crate::crypto::random_bytes;
use crate::domain::audit::{AuditEvent, NewAuditEvent, Outcome, kind};
use crate::domain::rbac::Permission;
use crate::domain::webhook::{
    ALL_EVENTS, AttemptResult, ClaimedDelivery, NOT_FANNED_OUT_PREFIX, NewWebhookEndpoint, Replay,
    WebhookDelivery, WebhookEndpoint, WebhookUpdate,
};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::net;
use crate::service::Principal;
use crate::store::{SealedColumn, Store};

/// Prefix of a secret as shown to administrators (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Longest endpoint description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Default overlap of a secret rotation: the previous secret keeps signing this long.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::hours(24);
/// Longest overlap of a secret rotation, in seconds (7 days).
pub const MAX_ROTATION_OVERLAP_SECS: i64 = 7 * 24 * 3600;
/// Longest replayed range (31 days).
pub const MAX_REPLAY_RANGE: Duration = Duration::days(31);
/// Most deliveries one page of the delivery log returns.
pub const MAX_DELIVERY_PAGE: u32 = 200;
/// Version of the payload format, sent as `version`.
pub const PAYLOAD_VERSION: u32 = 1;
/// Growth of the retry delay per failed attempt (see [`retry_delay`]).
pub const RETRY_FACTOR: f64 = 3.6;
/// Longest delay between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::hours(12);
/// Why the server disables an endpoint that keeps failing.
pub const DISABLED_FAILING: &str = "failing";

/// Webhook settings (`WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow loopback and private destinations (`WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// Per-attempt timeout (`WEBHOOK_TIMEOUT`).
    pub timeout: StdDuration,
    /// First retry delay (`WEBHOOK_RETRY_BASE`).
    pub retry_base: Duration,
    /// Attempts in total before a delivery becomes a dead letter (`WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: i32,
    /// An endpoint failing without a success for this long is disabled (`WEBHOOK_DISABLE_AFTER`).
    pub disable_after: Duration,
    /// Attempts in flight per endpoint (`WEBHOOK_CONCURRENCY`).
    pub concurrency: u32,
    /// How often the worker looks for due deliveries (`WEBHOOK_POLL_INTERVAL`).
    pub poll_interval: StdDuration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: StdDuration::from_secs(10),
            retry_base: Duration::seconds(30),
            max_attempts: 8,
            disable_after: Duration::days(5),
            concurrency: 4,
            poll_interval: StdDuration::from_secs(1),
        }
    }
}

/// A new endpoint as an administrator asks for it.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// Target URL.
    pub url: String,
    /// Subscribed types; `None` or `["*"]` for every type.
    pub event_types: Option<Vec<String>>,
    /// Free text (≤ 500 characters).
    pub description: Option<String>,
    /// Whether deliveries start at once (default true).
    pub enabled: Option<bool>,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// New URL.
    pub url: Option<String>,
    /// New subscription.
    pub event_types: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Enable (clears the failing state) or disable.
    pub enabled: Option<bool>,
}

/// Which events to queue again.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayRequest {
    /// One event, by id.
    pub event_id: Option<i64>,
    /// Start of a range, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// End of a range, exclusive.
    pub to: Option<DateTime<Utc>>,
}

/// What one attempt to deliver came to, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// The receiver answered 2xx.
    pub delivered: bool,
    /// Its HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// How long the attempt took.
    pub latency: StdDuration,
    /// Why it failed (never the response body).
    pub error: Option<String>,
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFate {
    /// Accepted by the receiver.
    Delivered,
    /// Failed; tried again at this time.
    Retry(DateTime<Utc>),
    /// Failed for the last time: a dead letter.
    Dead,
}

/// An endpoint's signing secrets at one moment: the current one, and during a rotation overlap
/// the previous one. Never printed.
pub struct SigningKeys(Vec<hmac::Key>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} keys)", self.0.len())
    }
}

impl SigningKeys {
    /// Keys from raw secret bytes (tests and verification).
    #[must_use]
    pub fn from_secrets(secrets: &[&[u8]]) -> Self {
        Self(
            secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s))
                .collect(),
        )
    }

    /// The `webhook-signature` header value: `v1,<base64>` per key, space-separated, over
    /// `{msg_id}.{timestamp}.{body}` (Standard Webhooks).
    #[must_use]
    pub fn signature_header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|key| {
                let mut ctx = hmac::Context::with_key(key);
                ctx.update(msg_id.as_bytes());
                ctx.update(b".");
                ctx.update(timestamp.to_string().as_bytes());
                ctx.update(b".");
                ctx.update(body);
                format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `webhook-id` of an event: stable across retries and replays, so receivers can
/// deduplicate.
#[must_use]
pub fn message_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// The JSON body delivered for an event (format version 1). Built from the audit event alone,
/// whose details never hold a secret.
#[must_use]
pub fn payload(event: &AuditEvent) -> Vec<u8> {
    let body = json!({
        "type": event.event_type,
        "id": message_id(event.id),
        "timestamp": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "version": PAYLOAD_VERSION,
        "data": {
            "outcome": event.outcome,
            "user_id": event.user_id,
            "actor_id": event.actor_id,
            "ip_address": event.ip_address,
            "user_agent": event.user_agent,
            "details": event.details,
        },
    });
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The delay after failed attempt number `attempts` (1-based): `base` × 3.6^(attempts − 1),
/// ±20 % jitter from the CSPRNG, at most 12 hours. With the defaults (30 s, 8 attempts) the
/// retries come after about 30 s, 2 min, 6.5 min, 23 min, 1.4 h, 5 h and 12 h: the last attempt
/// about 19 hours after the first. Jitter keeps the retries of many deliveries that failed
/// together (a receiver outage) from arriving together when it comes back.
#[must_use]
pub fn retry_delay(base: Duration, attempts: i32) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30);
    #[allow(clippy::cast_precision_loss)]
    let base_ms = base.num_milliseconds() as f64;
    let nominal = base_ms * RETRY_FACTOR.powi(exponent);
    let unit = f64::from(u32::from_be_bytes(random_bytes::<4>())) / f64::from(u32::MAX);
    let jittered = nominal * (0.8 + 0.4 * unit);
    #[allow(clippy::cast_precision_loss)]
    let capped = jittered.min(MAX_RETRY_DELAY.num_milliseconds() as f64);
    // Finite, positive and at most 12 h in milliseconds: the conversion cannot overflow.
    #[allow(clippy::cast_possible_truncation)]
    Duration::milliseconds(capped.max(1.0) as i64)
}

/// The event types an endpoint may subscribe to: every audit kind but webhook administration.
pub fn subscribable_types() -> impl Iterator<Item = &'static str> {
    kind::ALL
        .iter()
        .copied()
        .filter(|k| !k.starts_with(NOT_FANNED_OUT_PREFIX))
}

fn validate_event_types(types: Option<Vec<String>>) -> Result<Vec<String>, Error> {
    let Some(types) = types else {
        return Ok(vec![ALL_EVENTS.to_owned()]);
    };
    let bad = |message: String| Error::validation("event_types", "invalid_event_types", message);
    if types.is_empty() {
        return Err(bad(
            "Subscribe to at least one event type, or to [\"*\"] for all.".to_owned(),
        ));
    }
    if types.iter().any(|t| t == ALL_EVENTS) {
        return if types.len() == 1 {
            Ok(types)
        } else {
            Err(bad(
                "\"*\" subscribes to every type; list it alone.".to_owned()
            ))
        };
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for t in types {
        if !subscribable_types().any(|k| k == t) {
            let shown: String = t.chars().take(64).collect();
            return Err(bad(format!(
                "Unknown event type {shown:?}; see the event catalogue in the README (webhook.* events are not delivered)."
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn validate_description(d: Option<String>) -> Result<Option<String>, Error> {
    let Some(d) = d else { return Ok(None) };
    let d = d.trim().to_owned();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::validation(
            "description",
            "invalid_description",
            format!("The description is longer than {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }
    // Bidi controls and invisible characters would let a description disguise itself (or what
    // follows it) on the console page.
    let invisible = |c: char| {
        matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if d.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || invisible(c))
    {
        return Err(Error::validation(
            "description",
            "invalid_description",
            "The description contains control, direction or invisible characters.",
        ));
    }
    Ok(Some(d))
}

/// The host of a URL, for audit details (never the path or query, which may hold a token).
fn host_of(url: &str) -> Value {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(ToOwned::to_owned))
        .map_or(Value::Null, Value::String)
}

/// The webhook service.
pub struct Webhooks {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
    settings: WebhookSettings,
    notices: Option<AdminNotices>,
}

/// Where notices to administrators go (the mail outbox), when mail is on.
#[derive(Debug, Clone)]
pub struct AdminNotices {
    /// The outbox.
    pub outbox: crate::mail::Outbox,
    /// `EMAIL_BASE_URL`: links point at its console.
    pub base_url: String,
    /// The product name for the mail.
    pub product: String,
}

/// Most administrators one notice is mailed to.
const MAX_NOTICE_RECIPIENTS: u32 = 20;

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Builds the service.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        envelope: Arc<Envelope>,
        clock: Arc<dyn Clock>,
        settings: WebhookSettings,
    ) -> Self {
        Self {
            store,
            envelope,
            clock,
            settings,
            notices: None,
        }
    }

    /// Mails administrators when the server disables a failing endpoint.
    #[must_use]
    pub fn with_admin_notices(mut self, notices: AdminNotices) -> Self {
        self.notices = Some(notices);
        self
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// The store (for the worker's queue calls).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time from the injected clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    /// An audit event about webhook administration, by `actor` (none for the server itself).
    fn event(
        &self,
        event_type: &'static str,
        actor: Option<&Principal>,
        details: Value,
    ) -> NewAuditEvent {
        new_event(
            self.now(),
            event_type,
            Outcome::Success,
            None,
            actor,
            details,
        )
    }

    /// Validates a URL and checks where it leads.
    async fn checked_url(&self, raw: &str) -> Result<String, Error> {
        let url = net::parse_webhook_url(raw)?;
        net::vet_destination(&url, self.settings.allow_private).await?;
        Ok(url.to_string())
    }

    /// A fresh secret for endpoint `id`: what to show once, and what to store.
    fn new_secret(&self, id: Uuid) -> (SecretString, Vec<u8>) {
        let bytes = random_bytes::<32>();
        let shown = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes));
        (
            SecretString::from(shown),
            self.envelope.seal_deployment_column(
                SealedColumn::WebhookSecret,
                &id.to_string(),
                &bytes,
            ),
        )
    }

    async fn endpoint(&self, id: Uuid) -> Result<WebhookEndpoint, Error> {
        self.store.webhook_by_id(id).await?.ok_or(Error::NotFound)
    }

    /// Adds an endpoint (administrators). Returns it with its secret, which is never shown
    /// again.
    ///
    /// # Errors
    /// `Forbidden`; `Validation` for the URL (syntax, or an address refused by the SSRF policy),
    /// the event types or the description.
    pub async fn create(
        &self,
        principal: &Principal,
        req: EndpointRequest,
    ) -> Result<(WebhookEndpoint, SecretString), Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let event_types = validate_event_types(req.event_types)?;
        let description = validate_description(req.description)?.unwrap_or_default();
        let url = self.checked_url(&req.url).await?;
        let id = Uuid::now_v7();
        let (secret, secret_enc) = self.new_secret(id);
        let new = NewWebhookEndpoint {
            id,
            url,
            description,
            event_types,
            enabled: req.enabled.unwrap_or(true),
            secret_enc,
            now: self.now(),
        };
        let event = self.event(
            kind::WEBHOOK_CREATED,
            Some(principal),
            json!({
                "endpoint_id": id,
                "host": host_of(&new.url),
                "event_types": new.event_types,
                "enabled": new.enabled,
            }),
        );
        let events = [event];
        let endpoint = self.store.insert_webhook(&new, &events).await?;
        committed(&events);
        Ok((endpoint, secret))
    }

    /// One endpoint (administrators).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn get(&self, principal: &Principal, id: Uuid) -> Result<WebhookEndpoint, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        self.endpoint(id).await
    }

    /// Every endpoint, oldest first (administrators).
    ///
    /// # Errors
    /// `Forbidden`.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<WebhookEndpoint>, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        Ok(self.store.list_webhooks().await?)
    }

    /// Changes an endpoint (administrators). Enabling one clears its failing state.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` as for [`Webhooks::create`].
    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        change: EndpointChange,
    ) -> Result<WebhookEndpoint, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let current = self.endpoint(id).await?;
        // Only what differs from the stored endpoint is a change: an unchanged URL is not
        // resolved again, and a request that changes nothing writes nothing (and no event).
        let event_types = match change.event_types {
            Some(types) => Some(validate_event_types(Some(types))?)
                .filter(|types| *types != current.event_types),
            None => None,
        };
        let description =
            validate_description(change.description)?.filter(|d| *d != current.description);
        let url = match change.url {
            Some(raw) if raw.trim() == current.url => None,
            Some(raw) => Some(self.checked_url(&raw).await?).filter(|u| *u != current.url),
            None => None,
        };
        let enabled = change.enabled.filter(|e| *e != current.enabled);
        if url.is_none() && description.is_none() && event_types.is_none() && enabled.is_none() {
            return Ok(current);
        }
        let update = WebhookUpdate {
            url,
            description,
            event_types,
            enabled,
            disabled_reason: None,
        };
        let changed: Vec<&str> = [
            ("url", update.url.is_some()),
            ("description", update.description.is_some()),
            ("event_types", update.event_types.is_some()),
            ("enabled", update.enabled.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        let mut details = json!({"endpoint_id": id, "changed": changed});
        if let Some(url) = &update.url {
            details["host"] = host_of(url);
        }
        if let Some(enabled) = update.enabled {
            details["enabled"] = json!(enabled);
        }
        let events = [self.event(kind::WEBHOOK_UPDATED, Some(principal), details)];
        let endpoint = self
            .store
            .update_webhook(id, &update, self.now(), &events)
            .await?
            .ok_or(Error::NotFound)?;
        committed(&events);
        Ok(endpoint)
    }

    /// Deletes an endpoint and its deliveries (administrators).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn delete(&self, principal: &Principal, id: Uuid) -> Result<(), Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let endpoint = self.endpoint(id).await?;
        let event = self.event(
            kind::WEBHOOK_DELETED,
            Some(principal),
            json!({"endpoint_id": id, "host": host_of(&endpoint.url)}),
        );
        let events = [event];
        if self.store.delete_webhook(id, &events).await? {
            committed(&events);
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// Replaces an endpoint's secret (administrators). The previous one keeps signing for
    /// `overlap_seconds` (default 24 hours, at most 7 days; 0 ends it at once). Returns the
    /// endpoint and the new secret, which is never shown again.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` for an overlap out of range.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        id: Uuid,
        overlap_seconds: Option<i64>,
    ) -> Result<(WebhookEndpoint, SecretString), Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let overlap = match overlap_seconds {
            None => DEFAULT_ROTATION_OVERLAP,
            Some(s) if (0..=MAX_ROTATION_OVERLAP_SECS).contains(&s) => Duration::seconds(s),
            Some(_) => {
                return Err(Error::validation(
                    "overlap_seconds",
                    "invalid_overlap",
                    format!(
                        "overlap_seconds must be between 0 and {MAX_ROTATION_OVERLAP_SECS} (7 days)."
                    ),
                ));
            }
        };
        let now = self.now();
        let (secret, secret_enc) = self.new_secret(id);
        let until = now + overlap;
        let event = self.event(
            kind::WEBHOOK_SECRET_ROTATED,
            Some(principal),
            json!({
                "endpoint_id": id,
                "previous_secret_until": until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        );
        let events = [event];
        let endpoint = self
            .store
            .rotate_webhook_secret(id, &secret_enc, until, now, &events)
            .await?
            .ok_or(Error::NotFound)?;
        committed(&events);
        Ok((endpoint, secret))
    }

    /// An endpoint's delivery log, newest first (administrators); `before` is the cursor (a
    /// delivery id).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn deliveries(
        &self,
        principal: &Principal,
        id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        self.endpoint(id).await?;
        Ok(self
            .store
            .list_webhook_deliveries(id, before, limit.clamp(1, MAX_DELIVERY_PAGE))
            .await?)
    }

    /// Dead letters of every endpoint, newest first (administrators).
    ///
    /// # Errors
    /// `Forbidden`.
    pub async fn dead_letters(
        &self,
        principal: &Principal,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        Ok(self
            .store
            .dead_letters(before, limit.clamp(1, MAX_DELIVERY_PAGE))
            .await?)
    }

    /// Queues events again for one endpoint (administrators): one event by id (whatever the
    /// subscription), or every subscribed event in `[from, to)` (at most 31 days). Returns how
    /// many deliveries were queued.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound` for an unknown endpoint or event; `Validation` for a request that
    /// names neither or both, or a bad range.
    pub async fn replay(
        &self,
        principal: &Principal,
        id: Uuid,
        req: ReplayRequest,
    ) -> Result<u64, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let bad = |message: &str| Error::validation("replay", "invalid_replay", message);
        let (replay, details) = match (req.event_id, req.from, req.to) {
            (Some(event_id), None, None) => (
                Replay::Event(event_id),
                json!({"endpoint_id": id, "event_id": event_id}),
            ),
            (None, Some(from), Some(to)) => {
                if from >= to {
                    return Err(bad("`from` must be before `to`."));
                }
                if to - from > MAX_REPLAY_RANGE {
                    return Err(bad("A replayed range spans at most 31 days."));
                }
                (
                    Replay::Range { from, to },
                    json!({
                        "endpoint_id": id,
                        "from": from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "to": to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    }),
                )
            }
            _ => {
                return Err(bad(
                    "Give either `event_id`, or both `from` and `to` (RFC 3339).",
                ));
            }
        };
        self.endpoint(id).await?;
        let events = [self.event(kind::WEBHOOK_REPLAYED, Some(principal), details)];
        let queued = self
            .store
            .replay_webhook_events(id, replay, self.now(), &events)
            .await?;
        if queued == 0 {
            return if matches!(replay, Replay::Event(_)) {
                Err(Error::NotFound)
            } else {
                Ok(0)
            };
        }
        committed(&events);
        Ok(queued)
    }

    /// Sends a `webhook.tested` event to this endpoint only (administrators). Returns the id of
    /// its delivery.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn send_test(&self, principal: &Principal, id: Uuid) -> Result<i64, Error> {
        principal.ensure(Permission::WebhooksManage)?;
        let event = self.event(
            kind::WEBHOOK_TESTED,
            Some(principal),
            json!({"endpoint_id": id}),
        );
        let delivery = self
            .store
            .queue_test_event(id, &event)
            .await?
            .ok_or(Error::NotFound)?;
        committed(std::slice::from_ref(&event));
        Ok(delivery)
    }

    /// The keys that sign for `endpoint` at `now`: its secret, and the previous one while the
    /// rotation overlap lasts.
    ///
    /// # Errors
    /// `DataUnreadable` when a secret does not decrypt (wrong master key, or tampering).
    pub fn signing_keys(
        &self,
        endpoint: &WebhookEndpoint,
        now: DateTime<Utc>,
    ) -> Result<SigningKeys, Error> {
        let key = endpoint.id.to_string();
        let open = |sealed: &[u8]| {
            self.envelope
                .open_deployment_column(SealedColumn::WebhookSecret, &key, sealed)
        };
        let mut secrets = vec![open(&endpoint.secret_enc)?];
        if let (Some(previous), Some(until)) = (
            &endpoint.previous_secret_enc,
            endpoint.previous_secret_until,
        ) && until > now
        {
            secrets.push(open(previous)?);
        }
        let refs: Vec<&[u8]> = secrets.iter().map(|s| s.as_slice()).collect();
        Ok(SigningKeys::from_secrets(&refs))
    }

    /// Records the result of one attempt on `delivery`: delivered, retried later, or a dead
    /// letter after `WEBHOOK_MAX_ATTEMPTS`. An endpoint that has been failing, without one
    /// success, for `WEBHOOK_DISABLE_AFTER` is disabled (event `webhook.disabled`).
    ///
    /// # Errors
    /// On store failure.
    pub async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        report: AttemptReport,
    ) -> Result<AttemptFate, Error> {
        let now = self.now();
        let fate = if report.delivered {
            AttemptFate::Delivered
        } else if delivery.attempts >= self.settings.max_attempts {
            AttemptFate::Dead
        } else {
            AttemptFate::Retry(now + retry_delay(self.settings.retry_base, delivery.attempts))
        };
        let result = AttemptResult {
            at: now,
            delivered: report.delivered,
            status_code: report.status_code.map(i32::from),
            latency_ms: i64::try_from(report.latency.as_millis()).unwrap_or(i64::MAX),
            error: report.error.map(|e| e.chars().take(300).collect()),
            retry_at: match fate {
                AttemptFate::Retry(at) => Some(at),
                AttemptFate::Delivered | AttemptFate::Dead => None,
            },
        };
        let failing_since = self
            .store
            .finish_webhook_attempt(delivery.id, &result)
            .await?;
        if let Some(since) = failing_since
            && now - since >= self.settings.disable_after
        {
            self.disable_failing(delivery.endpoint_id, since).await?;
        }
        Ok(fate)
    }

    async fn disable_failing(&self, id: Uuid, since: DateTime<Utc>) -> Result<(), Error> {
        let Some(endpoint) = self.store.webhook_by_id(id).await? else {
            return Ok(());
        };
        if !endpoint.enabled {
            return Ok(());
        }
        let update = WebhookUpdate {
            enabled: Some(false),
            disabled_reason: Some(DISABLED_FAILING.to_owned()),
            ..WebhookUpdate::default()
        };
        let event = self.event(
            kind::WEBHOOK_DISABLED,
            None,
            json!({
                "endpoint_id": id,
                "host": host_of(&endpoint.url),
                "reason": DISABLED_FAILING,
                "failing_since": since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
        );
        let events = [event];
        if self
            .store
            .update_webhook(id, &update, self.now(), &events)
            .await?
            .is_some()
        {
            committed(&events);
            self.notify_administrators().await;
        }
        tracing::warn!(
            endpoint_id = %id,
            failing_since = %since,
            "webhook endpoint disabled: every delivery has failed for longer than WEBHOOK_DISABLE_AFTER; fix the receiver and enable it again (PUT /api/admin/webhooks/{{id}} with enabled=true)"
        );
        Ok(())
    }
}

impl Webhooks {
    /// Queues the "endpoint disabled" notice to every active administrator, in their language.
    /// The mail says which page to open, never which endpoint (the URL may carry a token). A
    /// failure is logged: the endpoint stays disabled either way.
    async fn notify_administrators(&self) {
        let Some(notices) = &self.notices else {
            return;
        };
        let admins = match self
            .store
            .active_administrators(MAX_NOTICE_RECIPIENTS)
            .await
        {
            Ok(admins) => admins,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: administrators not notified");
                return;
            }
        };
        let link = format!(
            "{}/ui/admin/webhooks",
            notices.base_url.trim_end_matches('/')
        );
        for admin in admins {
            let queued = match crate::mail::render(
                crate::mail::MailKind::WebhookDisabled { link: &link },
                crate::mail::Locale::negotiate(&admin.locale),
                &admin.email,
                &notices.product,
            ) {
                Ok(message) => notices.outbox.queue(&message).await,
                Err(e) => Err(e),
            };
            if let Err(e) = queued {
                tracing::warn!(user_id = %admin.id, error = %e, "webhooks: administrator not notified");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_default_to_all_and_refuse_unknown_or_webhook_kinds() {
        assert_eq!(validate_event_types(None).expect("default"), vec!["*"]);
        assert_eq!(
            validate_event_types(Some(vec!["*".into()])).expect("all"),
            vec!["*"]
        );
        assert_eq!(
            validate_event_types(Some(vec![
                "user.registered".into(),
                "sign_in.failed".into(),
                "user.registered".into()
            ]))
            .expect("known"),
            vec!["user.registered", "sign_in.failed"]
        );
        for bad in [
            vec![],
            vec!["nope".to_owned()],
            vec!["webhook.created".to_owned()],
            vec!["*".to_owned(), "user.registered".to_owned()],
        ] {
            let e = validate_event_types(Some(bad.clone())).expect_err("refused");
            assert!(
                matches!(&e, Error::Validation(f) if f.field == "event_types"),
                "{bad:?}"
            );
        }
        assert!(subscribable_types().all(|t| !t.starts_with("webhook.")));
        assert!(subscribable_types().any(|t| t == kind::USER_REGISTERED));
    }

    #[test]
    fn descriptions_are_bounded() {
        assert!(validate_description(Some("a".repeat(500))).is_ok());
        assert!(validate_description(Some("é".repeat(500))).is_ok());
        assert!(validate_description(Some("a".repeat(501))).is_err());
        assert!(validate_description(Some("bell\u{7}".into())).is_err());
        for disguise in [
            "gpj.\u{202E}exe",
            "a\u{200B}b",
            "\u{2066}x\u{2069}",
            "\u{FEFF}x",
        ] {
            assert!(
                validate_description(Some(disguise.into())).is_err(),
                "{disguise:?}"
            );
        }
        assert!(validate_description(Some("línea 1\nlinha 2\tfim".into())).is_ok());
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let keys = SigningKeys::from_secrets(&[&secret]);
        let header = keys.signature_header(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = SigningKeys::from_secrets(&[b"a", b"b"]).signature_header("m", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.split(' ').all(|s| s.starts_with("v1,")));
    }

    #[test]
    fn retries_grow_with_jitter_up_to_twelve_hours() {
        let base = Duration::seconds(30);
        for _ in 0..50 {
            let first = retry_delay(base, 1);
            assert!(first >= Duration::seconds(24) && first <= Duration::seconds(36));
            let third = retry_delay(base, 3);
            // 30 s × 3.6² = 388.8 s, ±20 %.
            assert!(
                third >= Duration::milliseconds(311_040)
                    && third <= Duration::milliseconds(466_560)
            );
            assert!(retry_delay(base, 7) <= MAX_RETRY_DELAY);
            assert!(retry_delay(base, 1_000) <= MAX_RETRY_DELAY);
        }
        // The nominal schedule of the defaults spreads 8 attempts over most of a day.
        let total: f64 = (1..8)
            .map(|n| (30.0 * RETRY_FACTOR.powi(n - 1)).min(43_200.0))
            .sum();
        assert!((18.0 * 3600.0..24.0 * 3600.0).contains(&total), "{total}");
    }

    #[test]
    fn payload_carries_the_event_and_a_stable_id() {
        let event = AuditEvent {
            id: 42,
            occurred_at: DateTime::from_timestamp_millis(1_700_000_000_123).expect("time"),
            event_type: "user.registered".into(),
            outcome: "success".into(),
            user_id: Some(Uuid::nil()),
            actor_id: None,
            ip_address: Some("203.0.113.5".into()),
            user_agent: Some("ua".into()),
            details: json!({"via": "api"}),
        };
        let body: Value = serde_json::from_slice(&payload(&event)).expect("json");
        assert_eq!(body["type"], "user.registered");
        assert_eq!(body["id"], "evt_42");
        assert_eq!(body["version"], 1);
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(body["data"]["details"]["via"], "api");
        assert_eq!(body["data"]["outcome"], "success");
        assert_eq!(message_id(42), "evt_42");
    }
}
