//! Address-confirmation links (issue 14): what the store keeps of one, and the statements both
//! store backends run for them.
//!
//! A token confirms the address it was mailed to, and only while that is still the account's
//! address: the row keeps that address, and confirming compares it with the account's.
//!
//! A *change* token (issue 15) is mailed to a new address an account holder asked for, and
//! makes it the account's address when used. The two kinds share the table, its per-account
//! limit and "a new token spends the older ones"; they differ in how the flow derives the stored
//! hash from the token (`flows::email_confirmation::change_token_hash`), so a confirmation link
//! mailed to an address the account no longer has never passes for a request to change back to
//! it, and a change token is never taken for a confirmation.

use chrono::{DateTime, Utc};

use crate::domain::UserId;

/// A confirmation link to store (its token arrives hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmailConfirmation {
    /// SHA-256 of the token (hex).
    pub token_hash: String,
    /// The account.
    pub user_id: UserId,
    /// The address the link is mailed to: the account's address when it was issued, or the new
    /// address of a requested change.
    pub email: String,
    /// End of the link's life.
    pub expires_at: DateTime<Utc>,
    /// Issue time.
    pub now: DateTime<Utc>,
}
