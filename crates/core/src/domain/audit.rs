//! Security events (seeds 000 and 004): an append-only record of who did what, from where.
//!
//! Details never hold a secret: no password, token, code or hash — only ids, reasons and counts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The kinds of event, as stored in `event_type`.
pub mod kind {
    /// A password sign-in succeeded.
    pub const SIGN_IN_SUCCEEDED: &str = "sign_in.succeeded";
    /// A sign-in was refused (`details.reason`).
    pub const SIGN_IN_FAILED: &str = "sign_in.failed";
    /// Consecutive failures locked an account.
    pub const ACCOUNT_LOCKED: &str = "account.locked";
    /// An administrator (or the CLI) lifted a lock.
    pub const ACCOUNT_UNLOCKED: &str = "account.unlocked";
    /// A password was changed by its owner or set by an administrator.
    pub const PASSWORD_CHANGED: &str = "password.changed";
    /// A recovery link was asked for (`details.mail`: `queued` or `suppressed`).
    pub const PASSWORD_RESET_REQUESTED: &str = "password.reset_requested";
    /// A recovery link was used to set a new password.
    pub const PASSWORD_RESET_COMPLETED: &str = "password.reset_completed";
    /// A spent refresh token was presented again; its session was revoked.
    pub const REFRESH_TOKEN_REUSED: &str = "refresh_token.reused";
    /// One session was ended (sign-out, device revoke).
    pub const SESSION_REVOKED: &str = "session.revoked";
    /// Every session of a user was ended.
    pub const SESSIONS_REVOKED_ALL: &str = "sessions.revoked_all";
    /// An account was created.
    pub const USER_REGISTERED: &str = "user.registered";
    /// An account's profile, role or status was changed.
    pub const USER_UPDATED: &str = "user.updated";
    /// An account was deleted.
    pub const USER_DELETED: &str = "user.deleted";
    /// A new token-signing key was made current.
    pub const SIGNING_KEY_ROTATED: &str = "signing_key.rotated";
    /// A token-signing key was retired: it no longer verifies and its private half is erased.
    pub const SIGNING_KEY_RETIRED: &str = "signing_key.retired";
    /// A key-encryption key version was added (`details.version`, `details.via`).
    pub const KEY_ENCRYPTION_KEY_ROTATED: &str = "key_encryption_key.rotated";
    /// A key-encryption key version was retired: no data key refers to it, its private half
    /// is erased (`details.version`).
    pub const KEY_ENCRYPTION_KEY_RETIRED: &str = "key_encryption_key.retired";
    /// The server started (`details` holds the security-relevant configuration).
    pub const SERVER_STARTED: &str = "server.started";
    /// A webhook endpoint was added.
    pub const WEBHOOK_CREATED: &str = "webhook.created";
    /// A webhook endpoint was changed (or enabled, or disabled by an administrator).
    pub const WEBHOOK_UPDATED: &str = "webhook.updated";
    /// A webhook endpoint was deleted.
    pub const WEBHOOK_DELETED: &str = "webhook.deleted";
    /// A webhook endpoint's signing secret was rotated.
    pub const WEBHOOK_SECRET_ROTATED: &str = "webhook.secret_rotated";
    /// The server disabled an endpoint that kept failing.
    pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
    /// Events were queued again for an endpoint.
    pub const WEBHOOK_REPLAYED: &str = "webhook.replayed";
    /// A test event was sent to an endpoint (it is the event delivered).
    pub const WEBHOOK_TESTED: &str = "webhook.tested";
    /// An address-confirmation link was asked for (`details.mail`: `queued` or `suppressed`).
    pub const EMAIL_CONFIRMATION_SENT: &str = "email.confirmation_sent";
    /// An account's address was confirmed with the mailed link.
    pub const EMAIL_CONFIRMED: &str = "email.confirmed";
    /// A change of an account's address was asked for (`details.by`: `self` or `admin`): a link
    /// went to the new address and a notice to the current one (or, on failure, the current
    /// password was wrong or too many links were asked for: `details.reason`).
    pub const EMAIL_CHANGE_REQUESTED: &str = "email.change_requested";
    /// A change of address was confirmed with the link mailed to the new address, which is now
    /// the account's (or, on failure, another account had taken it meanwhile).
    pub const EMAIL_CHANGED: &str = "email.changed";

    /// A correct password asked for a second step (`details.methods`); no session yet.
    pub const SIGN_IN_SECOND_STEP: &str = "sign_in.second_step";
    /// An authenticator app was enabled.
    pub const MFA_ENABLED: &str = "mfa.enabled";
    /// The account holder turned two-factor authentication off.
    pub const MFA_DISABLED: &str = "mfa.disabled";
    /// An administrator (or the CLI) removed an account's authenticator app and backup codes.
    pub const MFA_RESET: &str = "mfa.reset";
    /// A new set of backup codes replaced the old one.
    pub const MFA_BACKUP_CODES_REGENERATED: &str = "mfa.backup_codes_regenerated";
    /// A backup code was used (`details.purpose`).
    pub const MFA_BACKUP_CODE_USED: &str = "mfa.backup_code_used";
    /// Re-authentication before a change to the factors failed (`details.reason`).
    pub const MFA_REAUTH_FAILED: &str = "mfa.reauthentication_failed";
    /// A role was created, renamed or re-described, deleted (`details.role_id`, `details.name`).
    pub const ROLE_CREATED: &str = "role.created";
    /// See [`ROLE_CREATED`].
    pub const ROLE_UPDATED: &str = "role.updated";
    /// See [`ROLE_CREATED`].
    pub const ROLE_DELETED: &str = "role.deleted";
    /// A permission was created, renamed or re-described, deleted (`details.permission_id`,
    /// `details.name`).
    pub const PERMISSION_CREATED: &str = "permission.created";
    /// See [`PERMISSION_CREATED`].
    pub const PERMISSION_UPDATED: &str = "permission.updated";
    /// See [`PERMISSION_CREATED`].
    pub const PERMISSION_DELETED: &str = "permission.deleted";
    /// A permission was granted to a role, or taken back (`details.role`, `details.permission`);
    /// outcome `failure` when the caller could not grant what they do not hold.
    pub const ROLE_PERMISSION_GRANTED: &str = "role.permission_granted";
    /// See [`ROLE_PERMISSION_GRANTED`].
    pub const ROLE_PERMISSION_REVOKED: &str = "role.permission_revoked";
    /// A role was given to the event's user, or taken back (`details.role`); outcome `failure`
    /// when the caller could not assign a role whose permissions they do not hold.
    pub const USER_ROLE_ASSIGNED: &str = "user.role_assigned";
    /// See [`USER_ROLE_ASSIGNED`].
    pub const USER_ROLE_REMOVED: &str = "user.role_removed";

    /// An administrator ran a maintenance job (`details.job`, `details.removed`).
    pub const MAINTENANCE_RUN: &str = "maintenance.run";

    /// A recovery address was added to the account, unverified (`details.recovery_email_id`).
    pub const RECOVERY_EMAIL_ADDED: &str = "recovery_email.added";
    /// A recovery address was verified with its mailed link (`details.recovery_email_id`).
    pub const RECOVERY_EMAIL_VERIFIED: &str = "recovery_email.verified";
    /// A recovery address was removed (`details.recovery_email_id`).
    pub const RECOVERY_EMAIL_REMOVED: &str = "recovery_email.removed";
    /// A sign-in came from a device the account had not used before, and its owner was mailed
    /// an alert with a "this wasn't me" link (`details.session_id`, `details.device`).
    pub const LOGIN_NEW_DEVICE: &str = "login.new_device";
    /// The owner said "this wasn't me" about a sign-in: its session was ended and the password
    /// must be reset before it works again (`details.session_id`); the store also ended the device's
    /// other sessions and removed what was set up since that sign-in.
    pub const SESSION_DISOWNED: &str = "session.disowned";
    /// A security question was added to the catalogue (`details.question_id`).
    pub const SECURITY_QUESTION_CREATED: &str = "security_question.created";
    /// A security question's text or state changed (`details.question_id`).
    pub const SECURITY_QUESTION_UPDATED: &str = "security_question.updated";
    /// A security question was deactivated: no longer offered or asked.
    pub const SECURITY_QUESTION_DEACTIVATED: &str = "security_question.deactivated";
    /// A security question was deleted with every answer to it.
    pub const SECURITY_QUESTION_DELETED: &str = "security_question.deleted";
    /// The event's user set (or replaced) the answer to a security question
    /// (`details.question_id`, `details.by`).
    pub const SECURITY_ANSWERS_SET: &str = "security_answers.set";
    /// Answers were removed (`details.question_id`, or `details.all`).
    pub const SECURITY_ANSWERS_REMOVED: &str = "security_answers.removed";
    /// Security answers were checked (`details.purpose`: `recovery` or `check`); outcome
    /// `failure` for wrong answers or a locked account.
    pub const SECURITY_ANSWERS_VERIFIED: &str = "security_answers.verified";
    /// Wrong answers locked question-based recovery of the event's user
    /// (`details.locked_until`).
    pub const RECOVERY_QUESTIONS_LOCKED: &str = "recovery.questions_locked";

    /// Every kind, for validating filters.
    pub const ALL: &[&str] = &[
        SIGN_IN_SUCCEEDED,
        SIGN_IN_FAILED,
        SIGN_IN_SECOND_STEP,
        MFA_ENABLED,
        MFA_DISABLED,
        MFA_RESET,
        MFA_BACKUP_CODES_REGENERATED,
        MFA_BACKUP_CODE_USED,
        MFA_REAUTH_FAILED,
        ACCOUNT_LOCKED,
        ACCOUNT_UNLOCKED,
        PASSWORD_CHANGED,
        PASSWORD_RESET_REQUESTED,
        PASSWORD_RESET_COMPLETED,
        REFRESH_TOKEN_REUSED,
        SESSION_REVOKED,
        SESSIONS_REVOKED_ALL,
        USER_REGISTERED,
        USER_UPDATED,
        USER_DELETED,
        SIGNING_KEY_ROTATED,
        SIGNING_KEY_RETIRED,
        KEY_ENCRYPTION_KEY_ROTATED,
        KEY_ENCRYPTION_KEY_RETIRED,
        SERVER_STARTED,
        WEBHOOK_CREATED,
        WEBHOOK_UPDATED,
        WEBHOOK_DELETED,
        WEBHOOK_SECRET_ROTATED,
        WEBHOOK_DISABLED,
        WEBHOOK_REPLAYED,
        WEBHOOK_TESTED,
        EMAIL_CONFIRMATION_SENT,
        EMAIL_CONFIRMED,
        ROLE_CREATED,
        ROLE_UPDATED,
        ROLE_DELETED,
        PERMISSION_CREATED,
        PERMISSION_UPDATED,
        PERMISSION_DELETED,
        ROLE_PERMISSION_GRANTED,
        ROLE_PERMISSION_REVOKED,
        USER_ROLE_ASSIGNED,
        USER_ROLE_REMOVED,
        MAINTENANCE_RUN,
        EMAIL_CHANGE_REQUESTED,
        EMAIL_CHANGED,
        RECOVERY_EMAIL_ADDED,
        RECOVERY_EMAIL_VERIFIED,
        RECOVERY_EMAIL_REMOVED,
        LOGIN_NEW_DEVICE,
        SESSION_DISOWNED,
        SECURITY_QUESTION_CREATED,
        SECURITY_QUESTION_UPDATED,
        SECURITY_QUESTION_DEACTIVATED,
        SECURITY_QUESTION_DELETED,
        SECURITY_ANSWERS_SET,
        SECURITY_ANSWERS_REMOVED,
        SECURITY_ANSWERS_VERIFIED,
        RECOVERY_QUESTIONS_LOCKED,
    ];
}

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused.
    Failure,
}

impl Outcome {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// When (UTC).
    pub occurred_at: DateTime<Utc>,
    /// One of [`kind`].
    pub event_type: &'static str,
    /// Success or failure.
    pub outcome: Outcome,
    /// The account concerned, when known.
    pub user_id: Option<Uuid>,
    /// Who acted, when not the account itself (an administrator).
    pub actor_id: Option<Uuid>,
    /// Client address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Secret-free JSON object.
    pub details: serde_json::Value,
}

/// What a failed sign-in writes: `failed` always, and `locked` when this failure set the lock.
#[must_use]
pub fn failure_events(
    failed: &NewAuditEvent,
    locked: &NewAuditEvent,
    locked_now: bool,
) -> Vec<NewAuditEvent> {
    let mut events = vec![failed.clone()];
    if locked_now {
        events.push(locked.clone());
    }
    events
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Increasing id (the pagination cursor).
    pub id: i64,
    /// When (UTC).
    pub occurred_at: DateTime<Utc>,
    /// One of [`kind`].
    pub event_type: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The account concerned.
    pub user_id: Option<Uuid>,
    /// Who acted, when not the account itself.
    pub actor_id: Option<Uuid>,
    /// Client address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Secret-free JSON object.
    pub details: serde_json::Value,
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this account's events.
    pub user_id: Option<Uuid>,
    /// Only this kind.
    pub event_type: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Only events with a smaller id (the cursor of the previous page).
    pub before_id: Option<i64>,
}
