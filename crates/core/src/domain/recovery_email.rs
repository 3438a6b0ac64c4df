//! Recovery addresses (seed 004 `RecoveryEmail`, issue 16): further addresses of an account that,
//! once verified through a mailed link, can receive its password-reset links.
//!
//! An account has at most [`MAX_RECOVERY_EMAILS`] of them; a verified address belongs to one
//! account only (the unique partial index `recovery_emails_verified` of migration 0010 says so
//! to both backends, whatever the requests racing for it). Verification tokens are stored hashed,
//! live 24 hours and are spent once; a new one spends the older ones of its address.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;

/// Most recovery addresses one account may have.
pub const MAX_RECOVERY_EMAILS: u32 = 5;

/// A recovery address as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryEmail {
    /// Its id.
    pub id: Uuid,
    /// The account.
    pub user_id: UserId,
    /// The address, normalised (trimmed, lower-case domain as [`crate::domain::Email`] makes it).
    pub email: String,
    /// When its link was used; `None` while unverified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When the newest live verification token expires, if one is live (listings only).
    pub verification_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl RecoveryEmail {
    /// Whether the address was verified.
    #[must_use]
    pub const fn is_verified(&self) -> bool {
        self.verified_at.is_some()
    }
}

/// A recovery address to add, unverified, with its first verification token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecoveryEmail {
    /// Its new id.
    pub id: Uuid,
    /// The account.
    pub user_id: UserId,
    /// The address, normalised.
    pub email: String,
    /// The first token.
    pub token: NewRecoveryEmailToken,
}

/// A verification token to store (it arrives hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecoveryEmailToken {
    /// The token's hash.
    pub token_hash: String,
    /// End of its life.
    pub expires_at: DateTime<Utc>,
    /// Issue time.
    pub now: DateTime<Utc>,
}

/// Limits applied when a token is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueLimits {
    /// Tokens issued after this count towards the limits.
    pub window_start: DateTime<Utc>,
    /// Most tokens one address may be issued within the window.
    pub per_address: u32,
    /// Most tokens the account's addresses may be issued together within the window.
    pub per_account: u32,
}

/// What adding a recovery address did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Stored, unverified, with its token.
    Added(RecoveryEmail),
    /// The account has [`MAX_RECOVERY_EMAILS`] addresses (or the given limit) already.
    LimitReached,
    /// The account has this address already.
    Duplicate,
    /// The account's addresses were issued too many tokens within the window.
    RateLimited,
}

/// What issuing a new token for an address did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Stored; the address's older tokens are spent.
    Issued(RecoveryEmail),
    /// The account has no such address.
    NotFound,
    /// The address is verified already.
    AlreadyVerified,
    /// Too many tokens within the window.
    RateLimited,
}

/// What using a verification token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The address is verified now; the token and the address's other tokens are spent.
    Verified(RecoveryEmail),
    /// The token is not live, or its address is verified already; nothing changed.
    Invalid,
    /// Another account has the address as its own or as a verified recovery address; nothing
    /// changed (the token stays live: it could never succeed while that lasts).
    Taken,
}
