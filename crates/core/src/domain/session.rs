//! Sessions: one per sign-in. A session is also what the user sees as a "device".
//!
//! Every session owns exactly one refresh-token family; revoking the session revokes the family
//! and, through the session check on each request, every access token minted for it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::user::{User, UserId};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Identifier (the `sid` claim of access tokens).
    pub id: Uuid,
    /// Owner.
    pub user_id: UserId,
    /// Sign-in time.
    pub created_at: DateTime<Utc>,
    /// Last sign-in or refresh.
    pub last_active_at: DateTime<Utc>,
    /// After this, the session (and its refresh tokens) are dead.
    pub expires_at: DateTime<Utc>,
    /// Set once revoked; never cleared.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Client IP at sign-in (or last refresh).
    pub ip_address: Option<String>,
    /// Raw user agent, truncated.
    pub user_agent: Option<String>,
    /// User-chosen name, or one derived from the user agent.
    pub device_name: String,
    /// `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance` or `unknown`.
    pub device_type: String,
    /// Operating system from the user agent.
    pub os: Option<String>,
    /// Browser from the user agent.
    pub browser: Option<String>,
    /// The RFC 8176 methods the session was opened with (`pwd`, `otp`, …), kept across refreshes.
    pub amr: Vec<String>,
}

impl Session {
    /// Whether the session can still be used at `now`.
    #[must_use]
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What the store needs to create a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Identifier.
    pub id: Uuid,
    /// Owner.
    pub user_id: UserId,
    /// Creation time.
    pub now: DateTime<Utc>,
    /// Absolute expiry (refresh lifetime).
    pub expires_at: DateTime<Utc>,
    /// Client IP.
    pub ip_address: Option<String>,
    /// Raw user agent.
    pub user_agent: Option<String>,
    /// Derived device name.
    pub device_name: String,
    /// Derived device type.
    pub device_type: String,
    /// Derived OS.
    pub os: Option<String>,
    /// Derived browser.
    pub browser: Option<String>,
    /// The RFC 8176 methods the sign-in used (`pwd`, `otp`, …).
    pub amr: Vec<String>,
    /// The owner's credential epoch as read before the credential was verified: the session is
    /// only created if it is still current and the account still active.
    pub credential_epoch: i64,
}

/// What a request needs to know to accept an access token: joined session + user state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAuthState {
    /// Session owner.
    pub user_id: UserId,
    /// Session not revoked and user active.
    pub usable: bool,
    /// Session expiry.
    pub expires_at: DateTime<Utc>,
}

/// A refresh token as the store sees it: only the hash of the secret.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the opaque token, hex.
    pub token_hash: String,
    /// The session (and family) it belongs to.
    pub session_id: Uuid,
    /// Expiry; equal to the session's.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub now: DateTime<Utc>,
}

/// A successful rotation: the session, moved forward, and its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The session the token belonged to.
    pub session: Session,
    /// The session's account.
    pub user: User,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live; it is now spent and the new one stored. Carries the session and its
    /// account as they are after the rotation, read in the same transaction (the caller still
    /// checks that the account is active).
    Rotated(Box<Rotation>),
    /// The token was spent within the grace window, and the successor it was rotated into is
    /// still unspent in a live session: nothing changes; the caller hands that same successor
    /// out again (with a fresh access token). Carries the session and account as read now.
    Replayed(Box<Rotation>),
    /// The token had already been spent: the store revoked its whole session (family).
    ReuseDetected {
        /// The revoked session.
        session_id: Uuid,
        /// Its owner.
        user_id: UserId,
    },
    /// Unknown, expired, or its session is revoked or expired.
    Invalid,
}
