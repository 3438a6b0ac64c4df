//! New-device sign-in alerts and their "this wasn't me" links (migration 0010), and the sign-in
//! history read back from the audit log.
//!
//! A device is identified by a keyed hash (never the raw cookie or user agent): of the device
//! cookie a browser presents, or — for a client without one — of its user agent and network
//! (IPv4 /24, IPv6 /64). These rows only decide whether to alert; the lockout exemption of known
//! devices is a different table (`known_devices`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;
use crate::domain::audit::NewAuditEvent;

/// How long a "this wasn't me" link works.
pub const ALERT_LINK_DAYS: i64 = 7;

/// A successful sign-in's device, recorded in the transaction that opens its session.
#[derive(Debug, Clone)]
pub struct DeviceSighting {
    /// The account.
    pub user_id: UserId,
    /// The key the device presented this time (what "known" is judged by).
    pub device_key: String,
    /// Keys the same device will present from now on (the hash of a device cookie issued with
    /// this sign-in), recorded as seen too.
    pub also_keys: Vec<String>,
    /// When.
    pub now: DateTime<Utc>,
    /// The alert to store, if this turns out to be a new device of an account that signed in
    /// before from elsewhere and wants alerts.
    pub alert: Option<NewSignInAlert>,
}

/// An alert prepared before the transaction that may store it.
#[derive(Debug, Clone)]
pub struct NewSignInAlert {
    /// SHA-256 of the link's token.
    pub token_hash: String,
    /// Until when the link works.
    pub expires_at: DateTime<Utc>,
    /// The mail: outbox id and sealed payload, queued in the same transaction.
    pub mail_id: Uuid,
    /// Sealed payload.
    pub mail: Vec<u8>,
    /// The `login.new_device` event, written only if the alert is stored.
    pub event: NewAuditEvent,
}

/// What the store knows of a device before a sign-in opens its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// This device signed in to the account before.
    pub known: bool,
    /// The account signed in before from some device.
    pub any: bool,
}

/// A live "this wasn't me" link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInAlert {
    /// The account.
    pub user_id: UserId,
    /// The session the link ends.
    pub session_id: Uuid,
    /// Until when it works.
    pub expires_at: DateTime<Utc>,
}

/// What confirming a link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disowned {
    /// The account.
    pub user_id: UserId,
    /// The session named by the link.
    pub session_id: Uuid,
    /// Whether that session was still live and is now revoked.
    pub session_revoked: bool,
}

/// One sign-in attempt of the account, as the audit log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginAttempt {
    /// The audit event's id (the pagination cursor).
    pub id: i64,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Client address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The event's details (method, second factor, reason).
    pub details: serde_json::Value,
}

impl LoginAttempt {
    /// The method the attempt used: the second factor when there was one (`totp`,
    /// `backup_code`, `email`), else the first (`password`).
    #[must_use]
    pub fn method(&self) -> String {
        let field = |name: &str| {
            self.details
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        field("second_factor")
            .or_else(|| field("method"))
            .unwrap_or_else(|| "password".to_owned())
    }
}
