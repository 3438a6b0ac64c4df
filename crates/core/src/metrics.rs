//! Metrics the domain records: security events and what they imply (sign-ins, lockouts, refresh
//! token reuse), refresh rotations, and the gauges of the domain's own machinery (hashing pool,
//! mail backlog, session cache, database pools) read at scrape time.
//!
//! This module speaks only to the `metrics` facade: which exporter (if any) collects the numbers
//! is the server's choice, and without one every call here is a no-op.
//!
//! Labels never carry user data or unbounded values. Every label value is a `&'static str`
//! picked from a fixed list below ([`kind::ALL`] for event types, allow-lists for methods,
//! reasons and scopes); whatever is not on a list is counted as `other`. A caller passing a
//! user id, an address or a path cannot make it a label.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
use serde_json::Value;

use crate::domain::audit::kind;
use crate::service::Auth;

/// Metric names, so tests and documentation use the same strings as the code.
pub mod name {
    /// Counter `{type, outcome}`: security events, by event type and outcome.
    pub const SECURITY_EVENTS: &str = "porteiro_security_events_total";
    /// Counter `{result, method}` (and `reason` when `result="failure"`): sign-ins.
    pub const SIGN_INS: &str = "porteiro_sign_ins_total";
    /// Counter `{scope}`: accounts or devices locked after repeated failures.
    pub const LOCKOUTS: &str = "porteiro_lockouts_total";
    /// Counter: spent refresh tokens presented again (their session is revoked).
    pub const REFRESH_TOKEN_REUSE: &str = "porteiro_refresh_token_reuse_total";
    /// Counter: refresh tokens rotated.
    pub const REFRESH_ROTATIONS: &str = "porteiro_refresh_rotations_total";
    /// Gauge: password-hashing threads.
    pub const HASH_POOL_WORKERS: &str = "porteiro_hash_pool_workers";
    /// Gauge: password-hashing threads at work.
    pub const HASH_POOL_BUSY: &str = "porteiro_hash_pool_busy";
    /// Gauge: password hashes waiting for a thread.
    pub const HASH_POOL_QUEUED: &str = "porteiro_hash_pool_queued";
    /// Gauge: mail in the outbox, not yet delivered or abandoned.
    pub const MAIL_BACKLOG: &str = "porteiro_mail_outbox_backlog";
    /// Gauge: webhook deliveries of enabled endpoints waiting for an attempt.
    pub const WEBHOOK_BACKLOG: &str = "porteiro_webhook_backlog";
    /// Counter: webhook delivery attempts by result (`delivered`, `failed`, `dead`).
    pub const WEBHOOK_DELIVERIES: &str = "porteiro_webhook_deliveries_total";
    /// Histogram: webhook delivery attempt duration in seconds.
    pub const WEBHOOK_DELIVERY_SECONDS: &str = "porteiro_webhook_delivery_seconds";
    /// Gauge: session states held by the session cache.
    pub const SESSION_CACHE_ENTRIES: &str = "porteiro_session_cache_entries";
    /// Counter: session-state look-ups answered by the cache.
    pub const SESSION_CACHE_HITS: &str = "porteiro_session_cache_hits_total";
    /// Counter: session-state look-ups that asked the database.
    pub const SESSION_CACHE_MISSES: &str = "porteiro_session_cache_misses_total";
    /// Gauge: hits / (hits + misses) since start-up (0 before the first look-up).
    pub const SESSION_CACHE_HIT_RATIO: &str = "porteiro_session_cache_hit_ratio";
    /// Gauge `{pool, state}`: database connections `in_use` or `idle`.
    pub const DB_POOL_CONNECTIONS: &str = "porteiro_db_pool_connections";
    /// Gauge `{pool}`: the most connections a database pool opens.
    pub const DB_POOL_MAX: &str = "porteiro_db_pool_max_connections";
}

/// Sign-in methods that may appear as a label (`details.method` of `sign_in.*`).
pub const SIGN_IN_METHODS: &[&str] = &[
    "password",
    "passkey",
    "totp",
    "recovery_code",
    "oidc",
    "magic_link",
];

/// Sign-in failure reasons that may appear as a label (`details.reason` of `sign_in.failed`).
pub const SIGN_IN_FAILURE_REASONS: &[&str] = &[
    "unknown_account",
    "wrong_password",
    "locked",
    "device_locked",
    "disabled",
    "credential_changed",
    "mfa_failed",
    "email_not_verified",
];

/// Lock scopes that may appear as a label (`details.scope` of `account.locked`).
pub const LOCKOUT_SCOPES: &[&str] = &["account", "device"];

/// The label for anything not on an allow-list.
pub const OTHER: &str = "other";

/// The entry of `allowed` equal to `value`, else [`OTHER`]: label values only ever come from
/// the lists, never from the caller's string.
fn allowed(value: Option<&str>, allowed: &[&'static str]) -> &'static str {
    value
        .and_then(|v| allowed.iter().copied().find(|a| *a == v))
        .unwrap_or(OTHER)
}

/// Counts one security event, and what it implies:
///
/// - `porteiro_security_events_total{type, outcome}` for every event;
/// - `sign_in.succeeded`: `porteiro_sign_ins_total{result="success", method}`;
/// - `sign_in.failed`: `porteiro_sign_ins_total{result="failure", method, reason}`;
/// - `account.locked`: `porteiro_lockouts_total{scope}`;
/// - `refresh_token.reused`: `porteiro_refresh_token_reuse_total`.
///
/// `method` comes from `details.method` (a sign-in event without one is a password sign-in,
/// the only kind recorded so far without it), `reason` from `details.reason` and `scope` from
/// `details.scope`, each restricted to its allow-list ([`SIGN_IN_METHODS`],
/// [`SIGN_IN_FAILURE_REASONS`], [`LOCKOUT_SCOPES`]); an event type not in [`kind::ALL`] and an
/// outcome other than `success`/`failure` count as `other`.
pub fn security_event(event_type: &'static str, outcome: &'static str, details: &Value) {
    let event_type = allowed(Some(event_type), kind::ALL);
    let outcome = allowed(Some(outcome), &["success", "failure"]);
    counter!(name::SECURITY_EVENTS, "type" => event_type, "outcome" => outcome).increment(1);
    let text = |field: &str| details.get(field).and_then(Value::as_str);
    let method = || allowed(Some(text("method").unwrap_or("password")), SIGN_IN_METHODS);
    match event_type {
        kind::SIGN_IN_SUCCEEDED => {
            counter!(name::SIGN_INS, "result" => "success", "method" => method()).increment(1);
        }
        kind::SIGN_IN_FAILED => {
            let reason = allowed(text("reason"), SIGN_IN_FAILURE_REASONS);
            counter!(
                name::SIGN_INS,
                "result" => "failure",
                "method" => method(),
                "reason" => reason
            )
            .increment(1);
        }
        kind::ACCOUNT_LOCKED => {
            let scope = allowed(text("scope"), LOCKOUT_SCOPES);
            counter!(name::LOCKOUTS, "scope" => scope).increment(1);
        }
        kind::REFRESH_TOKEN_REUSED => counter!(name::REFRESH_TOKEN_REUSE).increment(1),
        _ => {}
    }
}

/// Counts one successful refresh-token rotation.
pub fn refresh_rotated() {
    counter!(name::REFRESH_ROTATIONS).increment(1);
}

/// Describes this module's metrics (the `# HELP` lines) and makes the unlabelled counters and
/// the lockout scopes exist at zero, so that alerts on them work before their first event. Call
/// once, after installing a recorder.
pub fn describe() {
    counter!(name::REFRESH_ROTATIONS).absolute(0);
    counter!(name::REFRESH_TOKEN_REUSE).absolute(0);
    for scope in LOCKOUT_SCOPES {
        counter!(name::LOCKOUTS, "scope" => *scope).absolute(0);
    }
    describe_counter!(
        name::SECURITY_EVENTS,
        "Security events recorded, by event type and outcome."
    );
    describe_counter!(
        name::SIGN_INS,
        "Sign-ins by result and method; failures also by reason."
    );
    describe_counter!(
        name::LOCKOUTS,
        "Accounts or devices locked after repeated failed sign-ins, by scope."
    );
    describe_counter!(
        name::REFRESH_TOKEN_REUSE,
        "Spent refresh tokens presented again (the session is revoked)."
    );
    describe_counter!(name::REFRESH_ROTATIONS, "Refresh tokens rotated.");
    describe_gauge!(name::HASH_POOL_WORKERS, "Password-hashing threads.");
    describe_gauge!(name::HASH_POOL_BUSY, "Password-hashing threads at work.");
    describe_gauge!(
        name::HASH_POOL_QUEUED,
        "Password hashes waiting for a thread."
    );
    describe_gauge!(
        name::MAIL_BACKLOG,
        "Mail in the outbox not yet delivered or abandoned."
    );
    describe_gauge!(
        name::WEBHOOK_BACKLOG,
        "Webhook deliveries of enabled endpoints waiting for an attempt."
    );
    describe_counter!(
        name::WEBHOOK_DELIVERIES,
        "Webhook delivery attempts by result (delivered, failed, dead)."
    );
    describe_histogram!(
        name::WEBHOOK_DELIVERY_SECONDS,
        "Webhook delivery attempt duration in seconds."
    );
    describe_gauge!(
        name::SESSION_CACHE_ENTRIES,
        "Session states held by the session cache."
    );
    describe_counter!(
        name::SESSION_CACHE_HITS,
        "Session-state look-ups answered by the cache."
    );
    describe_counter!(
        name::SESSION_CACHE_MISSES,
        "Session-state look-ups that asked the database."
    );
    describe_gauge!(
        name::SESSION_CACHE_HIT_RATIO,
        "Session cache hits / look-ups since start-up."
    );
    describe_gauge!(
        name::DB_POOL_CONNECTIONS,
        "Database connections, by pool and state (in_use, idle)."
    );
    describe_gauge!(
        name::DB_POOL_MAX,
        "The most connections a database pool opens."
    );
}

impl Auth {
    /// Sets the gauges of the domain's machinery to their current values: hashing pool,
    /// mail backlog (one count query), session cache, database pools. Called at scrape time.
    pub async fn record_gauges(&self) {
        let hashing = self.hasher.stats();
        gauge!(name::HASH_POOL_WORKERS).set(as_f64(hashing.workers as u64));
        gauge!(name::HASH_POOL_BUSY).set(as_f64(hashing.busy as u64));
        gauge!(name::HASH_POOL_QUEUED).set(as_f64(hashing.queued as u64));
        match self.store.pending_mail_count().await {
            Ok(n) => gauge!(name::MAIL_BACKLOG).set(as_f64(n)),
            Err(e) => tracing::warn!(error = %e, "metrics: counting the mail backlog failed"),
        }
        match self.store.webhook_backlog().await {
            Ok(n) => gauge!(name::WEBHOOK_BACKLOG).set(as_f64(n)),
            Err(e) => tracing::warn!(error = %e, "metrics: counting the webhook backlog failed"),
        }
        let cache = self.cache.stats();
        gauge!(name::SESSION_CACHE_ENTRIES).set(as_f64(cache.entries));
        counter!(name::SESSION_CACHE_HITS).absolute(cache.hits);
        counter!(name::SESSION_CACHE_MISSES).absolute(cache.misses);
        let lookups = cache.hits.saturating_add(cache.misses);
        let ratio = if lookups == 0 {
            0.0
        } else {
            as_f64(cache.hits) / as_f64(lookups)
        };
        gauge!(name::SESSION_CACHE_HIT_RATIO).set(ratio);
        for pool in self.store.pool_stats() {
            let in_use = pool.open.saturating_sub(pool.idle);
            gauge!(name::DB_POOL_CONNECTIONS, "pool" => pool.pool, "state" => "in_use")
                .set(f64::from(in_use));
            gauge!(name::DB_POOL_CONNECTIONS, "pool" => pool.pool, "state" => "idle")
                .set(f64::from(pool.idle));
            gauge!(name::DB_POOL_MAX, "pool" => pool.pool).set(f64::from(pool.max));
        }
    }
}

/// A count as a gauge value (exact below 2^53, which every count here is).
#[allow(clippy::cast_precision_loss)]
fn as_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use serde_json::json;

    use super::*;

    /// A counter as `(name, sorted labels, value)`.
    type Count = (String, Vec<(String, String)>, u64);

    /// Runs `f` under a fresh recorder and returns every counter.
    fn counters(f: impl FnOnce()) -> Vec<Count> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, f);
        let mut out: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => {
                    let key = key.key();
                    let mut labels: Vec<_> = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    labels.sort();
                    Some((key.name().to_owned(), labels, n))
                }
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sign_ins_are_counted_by_result_method_and_reason() {
        let got = counters(|| {
            security_event(
                kind::SIGN_IN_SUCCEEDED,
                "success",
                &json!({"method": "password", "session_id": "0190-…"}),
            );
            security_event(
                kind::SIGN_IN_FAILED,
                "failure",
                &json!({"reason": "wrong_password"}),
            );
            security_event(
                kind::SIGN_IN_FAILED,
                "failure",
                &json!({"reason": "wrong_password"}),
            );
        });
        assert!(got.contains(&(
            name::SIGN_INS.to_owned(),
            labels(&[("result", "success"), ("method", "password")]),
            1
        )));
        assert!(got.contains(&(
            name::SIGN_INS.to_owned(),
            labels(&[
                ("result", "failure"),
                ("method", "password"),
                ("reason", "wrong_password")
            ]),
            2
        )));
        assert!(got.contains(&(
            name::SECURITY_EVENTS.to_owned(),
            labels(&[("type", "sign_in.failed"), ("outcome", "failure")]),
            2
        )));
    }

    #[test]
    fn lockouts_and_reuse_are_derived() {
        let got = counters(|| {
            security_event(
                kind::ACCOUNT_LOCKED,
                "success",
                &json!({"scope": "device", "failed_attempts": 5}),
            );
            security_event(
                kind::REFRESH_TOKEN_REUSED,
                "failure",
                &json!({"session_id": "x"}),
            );
            refresh_rotated();
        });
        assert!(got.contains(&(name::LOCKOUTS.to_owned(), labels(&[("scope", "device")]), 1)));
        assert!(got.contains(&(name::REFRESH_TOKEN_REUSE.to_owned(), vec![], 1)));
        assert!(got.contains(&(name::REFRESH_ROTATIONS.to_owned(), vec![], 1)));
    }

    #[test]
    fn labels_come_only_from_fixed_lists_whatever_the_details_say() {
        // Arrange: details full of user data and unbounded values.
        let hostile = json!({
            "method": "password\"} 1\nporteiro_pwned 1",
            "reason": "user 7f9c0b9e-1234 from 203.0.113.9",
            "scope": "/api/users/7f9c0b9e",
            "user_id": "7f9c0b9e-1234",
        });
        // Act
        let got = counters(|| {
            for event_type in kind::ALL {
                security_event(event_type, "success", &hostile);
                security_event(event_type, "failure", &hostile);
            }
            security_event("not.a.kind", "maybe", &hostile);
        });
        // Assert: every label value is on a list (or `other`).
        let mut permitted: Vec<&str> = kind::ALL.to_vec();
        permitted.extend(SIGN_IN_METHODS);
        permitted.extend(SIGN_IN_FAILURE_REASONS);
        permitted.extend(LOCKOUT_SCOPES);
        permitted.extend(["success", "failure", OTHER]);
        assert!(!got.is_empty());
        for (name, labels, _) in &got {
            for (key, value) in labels {
                assert!(
                    permitted.contains(&value.as_str()),
                    "{name}{{{key}={value:?}}} is not from a fixed list"
                );
            }
        }
        assert!(
            got.iter()
                .any(|(_, l, _)| l.contains(&("type".to_owned(), OTHER.to_owned())))
        );
    }
}
