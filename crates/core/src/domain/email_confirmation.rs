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

/// The statements of [`crate::store::EmailConfirmationStore`], written once for both backends:
/// `$n` placeholders work on SQLite as on PostgreSQL, and nothing here depends on how either
/// stores ids, times or flags. Each backend binds its own representation of the values; `core`
/// never runs them.
pub mod sql {
    /// Stores a token (`$1` hash, `$2` account, `$3` address, `$4` expiry, `$5` now) if the
    /// account is active, still has address `$3`, unconfirmed, and was issued fewer than `$7`
    /// tokens after `$6`. Affects one row or none.
    pub const ISSUE: &str = "insert into email_confirmation_tokens \
           (token_hash, user_id, email, expires_at, created_at) \
         select $1, id, email, $4, $5 from users \
         where id = $2 and email = $3 and is_active and not email_verified \
           and (select count(*) from email_confirmation_tokens t \
                where t.user_id = $2 and t.created_at > $6) < $7";

    /// Spends every live token of account `$1` at `$2` except the one whose hash is `$3`.
    pub const RETIRE_OTHERS: &str = "update email_confirmation_tokens set used_at = $2 \
         where user_id = $1 and used_at is null and token_hash <> $3";

    /// The account of the live token `$1` at `$2`.
    pub const OWNER: &str = "select user_id from email_confirmation_tokens \
         where token_hash = $1 and used_at is null and expires_at > $2";

    /// Spends the live token `$1` of account `$3` at `$2`, returning the address it was sent to.
    pub const SPEND: &str = "update email_confirmation_tokens set used_at = $2 \
         where token_hash = $1 and user_id = $3 and used_at is null and expires_at > $2 \
         returning email";

    /// Confirms account `$1`'s address at `$3` if it is still `$2` and the account is active
    /// (an address confirmed already keeps its time).
    pub const CONFIRM: &str = "update users set email_verified = true, \
           email_verified_at = coalesce(email_verified_at, $3), updated_at = $3 \
         where id = $1 and email = $2 and is_active";

    /// Stores a change token (`$1` hash, `$2` account, `$3` the new address, `$4` expiry, `$5`
    /// now) if the account is active, its address is not `$3` already, and it was issued fewer
    /// than `$7` tokens after `$6` (links of either kind count). Affects one row or none.
    pub const ISSUE_CHANGE: &str = "insert into email_confirmation_tokens \
           (token_hash, user_id, email, expires_at, created_at) \
         select $1, id, $3, $4, $5 from users \
         where id = $2 and email <> $3 and is_active \
           and (select count(*) from email_confirmation_tokens t \
                where t.user_id = $2 and t.created_at > $6) < $7";

    /// Makes `$2` account `$1`'s address, confirmed at `$3`, if its address is still `$4` (not
    /// `$2`) and it is active. A unique violation means another account has `$2`.
    pub const CHANGE: &str = "update users set email = $2, email_verified = true, \
           email_verified_at = $3, updated_at = $3 \
         where id = $1 and email = $4 and email <> $2 and is_active";

    /// Deletes account `$1`'s password-reset tokens: links mailed to an address it no longer has.
    pub const FORGET_RESET_LINKS: &str = "delete from password_reset_tokens where user_id = $1";
}
