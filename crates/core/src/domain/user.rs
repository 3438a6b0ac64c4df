//! User accounts.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A user's identifier.
pub type UserId = Uuid;

/// A stored account. `password_hash` never leaves the domain: web views are built without it.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Display form of the username (unique case-insensitively).
    pub username: String,
    /// Lower-cased email (unique).
    pub email: String,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// PHC string (Argon2id) or bcrypt `$2b$` string.
    pub password_hash: String,
    /// False when an administrator disabled the account.
    pub is_active: bool,
    /// Names of the roles the account holds, sorted (see [`crate::domain::rbac`]).
    pub roles: Vec<String>,
    /// Whether the primary email has been verified.
    pub email_verified: bool,
    /// When the current address was confirmed (`None` while it is not).
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Consecutive failed sign-ins since the last success or unlock.
    pub failed_login_attempts: i32,
    /// While in the future, sign-in is refused.
    pub locked_until: Option<DateTime<Utc>>,
    /// Preferred language for mail (`en` or `pt-BR`).
    pub locale: String,
    /// Moves forward, in the same transaction, with every change that must end all sessions
    /// (password change or reset, disabling, "revoke all"). A session is only created while the
    /// epoch still equals the one read before the credential was verified.
    pub credential_epoch: i64,
    /// Whether a sign-in from a new device mails the owner an alert.
    pub login_alerts: bool,
    /// Set when the owner said "this wasn't me" about a sign-in: the password is refused (as
    /// a wrong one) until it is reset.
    pub password_reset_required: bool,
    /// Whether other accounts may send this account private messages (see
    /// [`crate::flows::messages`]).
    pub accept_messages: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last modification time.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// Whether the account is locked at `now`.
    #[must_use]
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out of logs and panics.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the store needs to create an account.
#[derive(Clone)]
pub struct NewUser {
    /// Identifier, chosen by the caller.
    pub id: UserId,
    /// Validated username.
    pub username: String,
    /// Case-folded username for uniqueness.
    pub username_key: String,
    /// Validated, lower-cased email.
    pub email: String,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Already-hashed password.
    pub password_hash: String,
    /// Also give the account the `admin` role (every account gets the `user` role).
    pub is_admin: bool,
    /// Preferred language.
    pub locale: String,
    /// Creation time.
    pub now: DateTime<Utc>,
    /// The address is confirmed from the start (at `now`): accounts an administrator creates.
    /// Bulk loads ([`crate::store::BulkStore`]) ignore it and create unconfirmed accounts.
    pub email_verified: bool,
}

/// Profile fields a user may change about themselves.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// New first name (`Some(None)` clears it).
    pub first_name: Option<Option<String>>,
    /// New last name (`Some(None)` clears it).
    pub last_name: Option<Option<String>>,
    /// New preferred language.
    pub locale: Option<String>,
    /// New active flag (administrators only).
    pub is_active: Option<bool>,
    /// Whether sign-ins from new devices mail an alert.
    pub login_alerts: Option<bool>,
    /// Whether other accounts may send private messages.
    pub accept_messages: Option<bool>,
}

/// Longest search term accepted (the longest address).
pub const MAX_SEARCH_LEN: usize = 254;

/// Which accounts a user list shows, as the store runs it: the search term in the spelling of
/// the stored columns, the role resolved to its id, and the time a lock is judged at. Built by
/// `Auth::list_users` from a `flows::admin::UserFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// Only accounts whose email or username key starts with this.
    pub prefix: Option<SearchPrefix>,
    /// Only active (`true`) or disabled (`false`) accounts.
    pub active: Option<bool>,
    /// Only accounts locked (`true`) or not locked (`false`) at `now`.
    pub locked: Option<bool>,
    /// Only holders of this role.
    pub role_id: Option<Uuid>,
    /// When a lock is judged.
    pub now: DateTime<Utc>,
}

impl UserQuery {
    /// Every account.
    #[must_use]
    pub const fn all(now: DateTime<Utc>) -> Self {
        Self {
            prefix: None,
            active: None,
            locked: None,
            role_id: None,
            now,
        }
    }
}

/// A case-insensitive search term, spelled as the stored columns are, so that a prefix match
/// on them is an index range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPrefix {
    /// Prefix of `users.email` (NFC, lower case: the stored spelling).
    pub email: String,
    /// Prefix of `users.username_key` (ASCII lower case); `None` when the term has a character
    /// no username has, so only the email can match.
    pub username_key: Option<String>,
}

impl SearchPrefix {
    /// Parses a search term: trimmed; `None` when empty.
    ///
    /// # Errors
    /// `Validation` (`invalid_query`, field `q`) for a term longer than [`MAX_SEARCH_LEN`]
    /// characters or with a control character.
    pub fn parse(q: &str) -> Result<Option<Self>, crate::error::Error> {
        let q = q.trim();
        if q.chars().count() > MAX_SEARCH_LEN || q.chars().any(char::is_control) {
            return Err(crate::error::Error::validation(
                "q",
                "invalid_query",
                "The search term has at most 254 printable characters.",
            ));
        }
        if q.is_empty() {
            return Ok(None);
        }
        let username_key = q
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .then(|| q.to_ascii_lowercase());
        Ok(Some(Self {
            email: crate::domain::email::canonical_case(q),
            username_key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn search_terms_take_the_stored_spelling() {
        let p = SearchPrefix::parse("  Ana.S ").unwrap().unwrap();
        assert_eq!(p.email, "ana.s");
        assert_eq!(p.username_key.as_deref(), Some("ana.s"));
        let p = SearchPrefix::parse("ANA@Ex").unwrap().unwrap();
        assert_eq!((p.email.as_str(), p.username_key), ("ana@ex", None));
        let p = SearchPrefix::parse("JOSÉ").unwrap().unwrap();
        assert_eq!((p.email.as_str(), p.username_key), ("josé", None));
        assert_eq!(SearchPrefix::parse("   ").unwrap(), None);
        assert!(SearchPrefix::parse("a\u{0}b").is_err());
        assert!(SearchPrefix::parse(&"a".repeat(255)).is_err());
        assert!(SearchPrefix::parse(&"a".repeat(254)).unwrap().is_some());
    }
}
