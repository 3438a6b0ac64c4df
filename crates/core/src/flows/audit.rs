//! The security event log: recording (every flow) and reading (administrators, and users for
//! their own events).
//!
//! The client address and user agent of an event come from the request's [`ClientContext`],
//! which the web layer makes current for the whole request with [`ClientContext::scope`], so
//! flows do not thread it through every call. An event describing a change is written by the
//! store call that makes the change, in its transaction ([`crate::store`]): no change without its
//! event, no event for a change that did not commit. Events that stand alone (refusals) are
//! appended on their own with [`Auth::record`].

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::domain::audit::{AuditEvent, AuditFilter, NewAuditEvent, Outcome, kind};
use crate::domain::rbac::Permission;
use crate::error::Error;
use crate::service::{Auth, ClientContext, Principal};

tokio::task_local! {
    static REQUEST_CLIENT: Arc<ClientContext>;
}

impl ClientContext {
    /// Runs `f` with this context as the current request's client. Shared, so a request pays
    /// for one context however many readers it has.
    pub async fn scope<F: Future>(self: Arc<Self>, f: F) -> F::Output {
        REQUEST_CLIENT.scope(self, f).await
    }

    /// The current request's client, or an empty context outside a request (CLI, workers).
    #[must_use]
    pub fn current() -> Arc<Self> {
        REQUEST_CLIENT.try_with(Arc::clone).unwrap_or_default()
    }
}

/// Most events one page returns.
pub const MAX_AUDIT_PAGE: u32 = 200;

/// Builds an event about `user_id` happening now, from the current request's client (see
/// [`ClientContext::current`]). `actor` is who acted, kept only when it is someone else (an
/// administrator). Pass it to the store call that makes the change, so both commit together, then
/// hand it to [`committed`].
#[must_use]
pub fn new_event(
    now: chrono::DateTime<chrono::Utc>,
    event_type: &'static str,
    outcome: Outcome,
    user_id: Option<Uuid>,
    actor: Option<&Principal>,
    details: Value,
) -> NewAuditEvent {
    let client = ClientContext::current();
    NewAuditEvent {
        occurred_at: now,
        event_type,
        outcome,
        user_id,
        actor_id: actor.map(|p| p.user_id).filter(|a| Some(*a) != user_id),
        ip_address: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        details,
    }
}

/// The `account.locked` event of a failure that sets a lock (`scope`: `account` or `device`),
/// written by the store only if it does.
#[must_use]
pub(crate) fn lock_event(
    now: chrono::DateTime<chrono::Utc>,
    user_id: Uuid,
    scope: &'static str,
    attempts: i32,
    lock_until: chrono::DateTime<chrono::Utc>,
) -> NewAuditEvent {
    new_event(
        now,
        kind::ACCOUNT_LOCKED,
        Outcome::Success,
        Some(user_id),
        None,
        serde_json::json!({"scope": scope, "failed_attempts": attempts, "locked_until": lock_until}),
    )
}

/// After the events' transaction committed: each goes to the log at info level (inside the
/// request's span, so with its request id: logs and audit can be joined) and to the metrics
/// (`porteiro_security_events_total` and the sign-in, lockout and reuse counters).
pub fn committed(events: &[NewAuditEvent]) {
    for e in events {
        tracing::info!(
            target: "porteiro::audit",
            event_type = e.event_type,
            outcome = e.outcome.as_str(),
            user_id = e.user_id.map(tracing::field::display),
            actor_id = e.actor_id.map(tracing::field::display),
            details = %e.details,
            "security event"
        );
        crate::metrics::security_event(e.event_type, e.outcome.as_str(), &e.details);
    }
}

impl Auth {
    /// [`new_event`] at this service's clock.
    pub(crate) fn event(
        &self,
        event_type: &'static str,
        outcome: Outcome,
        user_id: Option<Uuid>,
        actor: Option<&Principal>,
        details: Value,
    ) -> NewAuditEvent {
        new_event(self.now(), event_type, outcome, user_id, actor, details)
    }

    /// Appends an event that stands alone: a refusal or a request that changed nothing. (An
    /// event describing a change is passed to the store call making it instead.) A failure to
    /// append is logged and does not fail the request.
    pub(crate) async fn record(
        &self,
        event_type: &'static str,
        outcome: Outcome,
        user_id: Option<Uuid>,
        actor: Option<&Principal>,
        details: Value,
    ) {
        self.append_alone(self.event(event_type, outcome, user_id, actor, details))
            .await;
    }

    /// [`Auth::record`] for an event already built.
    pub(crate) async fn append_alone(&self, event: NewAuditEvent) {
        match self.store.append_audit(&event).await {
            Ok(()) => committed(std::slice::from_ref(&event)),
            Err(e) => {
                tracing::error!(event_type = event.event_type, error = %e, "audit event not recorded");
            }
        }
    }

    /// Records the server's start with its security-relevant settings (never secrets).
    pub async fn record_startup(&self, details: Value) {
        self.record(kind::SERVER_STARTED, Outcome::Success, None, None, details)
            .await;
    }

    /// Security events, newest first (administrators).
    ///
    /// # Errors
    /// `Forbidden` for non-administrators; `Validation` for an unknown event type.
    pub async fn audit_events(
        &self,
        principal: &Principal,
        filter: AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, Error> {
        principal.ensure(Permission::AuditRead)?;
        self.read_audit(filter, limit).await
    }

    /// The caller's own security events, newest first.
    ///
    /// # Errors
    /// `Validation` for an unknown event type.
    pub async fn my_events(
        &self,
        principal: &Principal,
        mut filter: AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, Error> {
        filter.user_id = Some(principal.user_id);
        self.read_audit(filter, limit).await
    }

    async fn read_audit(&self, filter: AuditFilter, limit: u32) -> Result<Vec<AuditEvent>, Error> {
        if let Some(t) = &filter.event_type
            && !kind::ALL.contains(&t.as_str())
        {
            return Err(Error::validation(
                "type",
                "invalid_event_type",
                "Unknown event type.",
            ));
        }
        Ok(self
            .store
            .list_audit(&filter, limit.clamp(1, MAX_AUDIT_PAGE))
            .await?)
    }
}
