//! The storage contract. One trait per concern, gathered in [`Store`].
//!
//! Each backend crate (`porteiro-store-sqlite`, `porteiro-store-postgres`) implements every trait
//! with its own SQL; `porteiro-store-tests` proves they behave identically. Methods that must be
//! atomic (rotation, password change, reset) are single store calls so that each backend can run
//! them in one transaction. Times are passed in, never read from the database clock, so a fixed
//! test clock works against both backends. All times are stored with millisecond precision.
//!
//! Security events are written in the same transaction as the change they describe: every
//! mutating call that has an event takes it as `events` and writes it (and the webhook
//! deliveries it fans out to, see [`WebhookStore`]) only if, and exactly when, its change
//! commits. A call that changes nothing writes no event. [`AuditStore::append_audit`] is for
//! events that stand alone (a refused request that changes nothing).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use crate::domain::email_confirmation::NewEmailConfirmation;
use crate::domain::maintenance::{Cutoffs, Job, RunEvents};
use crate::domain::mfa::{
    CompleteOutcome, EmailCodeOutcome, MfaChallenge, NewMfaChallenge, SpentFactor, TotpCredential,
};
use crate::domain::rbac::{Grants, RbacKind, RbacObject};
use crate::domain::recovery_email::{
    AddOutcome, IssueLimits, IssueOutcome, NewRecoveryEmail, NewRecoveryEmailToken, RecoveryEmail,
    VerifyOutcome,
};
use crate::domain::security_question::{
    QuestionLock, SecurityAnswer, SecurityQuestion, SetAnswerOutcome, StoredAnswer,
};
use crate::domain::session::{NewRefreshToken, RotateOutcome};
use crate::domain::sign_in_alert::{
    DeviceSighting, DeviceState, Disowned, LoginAttempt, SignInAlert,
};
use crate::domain::webhook::{
    AttemptResult, ClaimedDelivery, NewWebhookEndpoint, Replay, WebhookDelivery, WebhookEndpoint,
    WebhookUpdate,
};
use crate::domain::{
    NewSession, NewUser, ProfileUpdate, Session, SessionAuthState, User, UserId, UserQuery,
};

/// Store-level failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to change does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write. `field` is `username` or `email`.
    #[error("conflict on {field}")]
    Conflict {
        /// The field that collided.
        field: &'static str,
    },
    /// A rule of the data refused the change, which was rolled back: `last_admin` (it would
    /// leave no active holder of the `admin` role or of `roles:manage`), `builtin_protected`
    /// (renaming or deleting a built-in role or permission).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// Anything else from the database driver.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// How the stored password hashes compare with the configured parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashCensus {
    /// Accounts in all.
    pub total: u64,
    /// Accounts whose hash does not start with the configured parameters.
    pub stale: u64,
    /// The first characters (scheme and parameters, then part of the salt) of up to `limit` of
    /// those stale hashes — never a whole hash.
    pub stale_prefixes: Vec<String>,
}

/// Characters of a stale hash that [`UserStore::password_hash_census`] returns: enough for any
/// scheme and parameter string, never the digest.
pub const HASH_PREFIX_CHARS: usize = 48;

/// Accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates an account. `Conflict { field }` when the username key or email exists.
    async fn insert_user(&self, user: &NewUser, events: &[NewAuditEvent]) -> StoreResult<User>;
    /// Looks up by id.
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Looks up by username key or email; `login` is already lower-cased.
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<User>>;
    /// Looks up by (lower-cased) email.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Accounts whose stored email has a character outside printable ASCII: written before
    /// addresses had one canonical form, they may need rewriting to it.
    async fn users_with_non_ascii_email(&self) -> StoreResult<Vec<(UserId, String)>>;
    /// Replaces an account's email if it is still `old`. Returns whether it was replaced;
    /// `Conflict { field: "email" }` when another account has `new`. Only for rewriting an
    /// address to its canonical spelling (same mailbox), so a confirmation stands; links mailed
    /// to the old spelling stop working.
    async fn rewrite_email(
        &self,
        id: UserId,
        old: &str,
        new: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// One page of the users `query` selects, ordered by creation (then id), and how many it
    /// selects in all. A search prefix matches the start of the email or of the username key
    /// (both already in their stored spelling; `%`, `_` and `\` are plain characters), through
    /// an index: the list stays fast on millions of accounts.
    async fn list_users(
        &self,
        query: &UserQuery,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<User>, u64)>;
    /// Number of accounts.
    async fn count_users(&self) -> StoreResult<u64>;
    /// Up to `limit` active administrators, oldest first (who gets operational notices).
    async fn active_administrators(&self, limit: u32) -> StoreResult<Vec<User>>;
    /// Applies a profile update. `NotFound` when the user does not exist. Disabling an account
    /// (`is_active: Some(false)`) runs serialised with the role changes and is refused with
    /// `Refused("last_admin")` when it would leave no active holder of the `admin` role or of
    /// `roles:manage` (see [`RbacStore`]).
    async fn update_profile(
        &self,
        id: UserId,
        update: &ProfileUpdate,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<User>;
    /// Deletes an account and everything it owns. Returns the ids of the sessions it had, or
    /// `None` when there is no such account. Serialised with the role changes, and refused with
    /// `Refused("last_admin")` when it would leave no active holder of the `admin` role or of
    /// `roles:manage`: of two concurrent deletions of the last two administrators, one fails.
    async fn delete_user(
        &self,
        id: UserId,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>>;
    /// Replaces the hash only if it is still `old_hash` (re-hash on sign-in must not undo a
    /// concurrent password change). Returns whether it was replaced.
    async fn upgrade_password_hash(
        &self,
        id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;
    /// Counts the accounts whose password hash does not begin with `current_prefix` (the
    /// configured scheme and parameters), with the first [`HASH_PREFIX_CHARS`] characters of up
    /// to `limit` of them, so the hasher can tell which older parameters are still in use.
    async fn password_hash_census(
        &self,
        current_prefix: &str,
        limit: u32,
    ) -> StoreResult<HashCensus>;
    /// Counts a failed sign-in. When the count reaches `max_attempts` the account is locked until
    /// `lock_until`. Failures while locked neither count nor extend the lock. Returns whether this
    /// failure set the lock. Writes `failed` always and `locked` only when this failure set the
    /// lock.
    async fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        failed: &NewAuditEvent,
        locked: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Counts a failed sign-in for an identifier that matches no account (by the SHA-256 of the
    /// normalised identifier), with the same lock rule as [`UserStore::record_failed_login`], so
    /// an unknown identifier costs one write and locks like an account.
    async fn record_failed_login_unknown(
        &self,
        identifier_hash: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<()>;
    /// Failure state of an unknown identifier: consecutive failures and the end of its lock.
    async fn unknown_login_state(
        &self,
        identifier_hash: &str,
    ) -> StoreResult<Option<(i32, Option<DateTime<Utc>>)>>;
    /// Resets the failure count after a correct password, atomically checking the lock: returns
    /// false (and changes nothing) when the account is locked at `now`, in which case the sign-in
    /// must be refused. Checking here, not on the row read before hashing, is what stops a burst
    /// of concurrent guesses from slipping a right one past a lock set meanwhile.
    async fn record_successful_login(&self, id: UserId, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Clears the lock and the failure count. Returns false for an unknown user.
    async fn unlock_user(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Sets a new password hash, moves the credential epoch forward and revokes every session of
    /// the user except `keep`, atomically. With `expected_epoch` (the epoch read before the
    /// current password was verified) nothing changes unless the epoch is still that one, so of
    /// concurrent changes made with one current password exactly one wins. Returns the revoked
    /// session ids, or `None` when nothing changed (no such user, or the epoch moved).
    async fn change_password(
        &self,
        id: UserId,
        new_hash: &str,
        keep: Option<Uuid>,
        expected_epoch: Option<i64>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>>;
}

/// Sessions and their refresh-token families.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates a session together with the first refresh token of its family — only if the owner
    /// is active and its credential epoch is still `session.credential_epoch`, checked in the
    /// same transaction as the insert (PostgreSQL: under a share lock on the account row), so a
    /// session never outlives a password change, reset, disable or "revoke all" that committed
    /// after its credential was verified. `None` when that check failed.
    async fn create_session(
        &self,
        session: &NewSession,
        refresh: &NewRefreshToken,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Session>>;
    /// Looks up a session, active or not.
    async fn session_by_id(&self, id: Uuid) -> StoreResult<Option<Session>>;
    /// Session and owner state, for checking an access token.
    async fn session_auth_state(&self, id: Uuid) -> StoreResult<Option<SessionAuthState>>;
    /// The user's sessions that are neither revoked nor expired, newest activity first.
    async fn list_active_sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Session>>;
    /// Renames one of the user's sessions. `None` when it is not theirs or not active.
    async fn rename_session(
        &self,
        user_id: UserId,
        id: Uuid,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Session>>;
    /// Revokes one of the user's sessions. Returns false when it was not theirs or already revoked.
    async fn revoke_session(
        &self,
        user_id: UserId,
        id: Uuid,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Revokes every active session of the user except `keep`, moves the user's credential epoch
    /// forward so that no sign-in verified before this call can still open a session, and deletes
    /// outstanding reset tokens. Returns the revoked ids. `events` are written whatever the
    /// count (the epoch moves even with no session to revoke).
    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Vec<Uuid>>;
    /// Spends the refresh token whose hash is `presented_hash` and stores `next_hash` in the same
    /// family, atomically: of concurrent calls with one token exactly one gets `Rotated`. A token
    /// that was already spent revokes its session (`ReuseDetected`). The session's expiry moves to
    /// `next_expires_at`, but never past its creation plus `max_lifetime` (the absolute session
    /// lifetime), and its last activity to `now`; the next token expires with the session.
    /// `Rotated` carries the session and its account as read in the same transaction, so a
    /// refresh needs no second look-up. On `ReuseDetected`, the event `on_reuse(user, session)`
    /// makes is written with the revocation.
    ///
    /// Grace window: when the presented token was spent at or after `reuse_since` and
    /// `next_hash` is an unspent, unexpired token of the same live session (the successor the
    /// caller derives from the presented token), nothing changes and the answer is `Replayed`.
    /// `None` turns the window off.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: &str,
        next_expires_at: DateTime<Utc>,
        max_lifetime: chrono::Duration,
        ip_address: Option<&str>,
        now: DateTime<Utc>,
        reuse_since: Option<DateTime<Utc>>,
        on_reuse: &(dyn Fn(UserId, Uuid) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<RotateOutcome>;
    /// The session of a live (unspent, unexpired) refresh token, if any.
    async fn refresh_token_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Session>>;
}

/// Password-recovery tokens.
#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// Stores a new reset token for the user and invalidates every older one — unless `limit`
    /// tokens were already issued after `window_start`, in which case nothing changes and `false`
    /// is returned. Concurrent calls for one user are serialised, so the limit is exact. Tokens
    /// issued before the window are deleted.
    #[allow(clippy::too_many_arguments)]
    async fn replace_reset_token(
        &self,
        user_id: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// The owner of a live reset token, without spending it.
    async fn reset_token_owner(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>>;
    /// Atomically: spends the token (which must be live and owned by `owner`), sets the new hash,
    /// clears any lock, moves the credential epoch forward and revokes every session. Returns the
    /// revoked session ids, or `None` (and changes nothing) when the token was not live (already
    /// spent by a concurrent call, say) or the account is disabled.
    async fn complete_reset(
        &self,
        token_hash: &str,
        owner: UserId,
        new_hash: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>>;
}

/// Address-confirmation links (see [`crate::flows::email_confirmation`]). Tokens arrive hashed.
#[async_trait]
pub trait EmailConfirmationStore: Send + Sync {
    /// Stores a confirmation token for the account's address `c.email` — only if the account is
    /// active, still has that address, unconfirmed, and was issued fewer than `limit` tokens
    /// after `window_start` — and spends the account's older tokens. Concurrent calls for one
    /// account are serialised, so the limit is exact. Returns whether the token was stored;
    /// `events` are written only then.
    async fn issue_email_confirmation(
        &self,
        c: &NewEmailConfirmation,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// The account of a live (unspent, unexpired) token, without spending it.
    async fn confirmation_token_owner(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>>;
    /// Spends a live token of `owner` and confirms the address it was sent to, if that is still
    /// the account's address and the account is active: sets `email_verified` and
    /// `email_verified_at` (kept when already set) and spends the account's other tokens. Of
    /// concurrent calls with one token exactly one succeeds. Returns whether it did; otherwise
    /// nothing changed and no event was written.
    async fn confirm_email(
        &self,
        token_hash: &str,
        owner: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Stores a token for changing the account's address to `c.email` — only if the account is
    /// active, its address is another one, and it was issued fewer than `limit` tokens (of
    /// either kind) after `window_start` — and spends the account's older tokens. Whether
    /// another account has `c.email` is not looked at: that is decided when the token is used.
    /// Returns whether the token was stored; `events` are written only then. (The flow derives
    /// a change token's hash differently from a confirmation token's, so neither kind can be
    /// used as the other; [`EmailConfirmationStore::confirmation_token_owner`] finds both.)
    async fn issue_email_change(
        &self,
        c: &NewEmailConfirmation,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Spends a live change token of `owner` and makes the address it was mailed to the
    /// account's, confirmed at `now` — if the account is active, its address is still `current`
    /// and that is not the token's address — in one transaction that also spends the account's other tokens and
    /// deletes its password-reset tokens (mailed to the old address). Of concurrent calls with
    /// one token exactly one succeeds. Returns whether it did (otherwise nothing changed and no
    /// event was written); `Conflict { field: "email" }`, changing nothing and leaving the token
    /// live, when another account has the address by now.
    async fn confirm_email_change(
        &self,
        token_hash: &str,
        owner: UserId,
        current: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
}

/// Recovery addresses and their verification tokens (see [`crate::flows::recovery_emails`]).
/// Tokens arrive hashed. Changes to one account's addresses lock the account first, so the
/// per-account limits are exact under concurrent requests.
#[async_trait]
pub trait RecoveryEmailStore: Send + Sync {
    /// The account's recovery addresses, oldest first, each with the expiry of its newest token
    /// live at `now`.
    async fn recovery_emails(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RecoveryEmail>>;
    /// Adds an unverified address with its first token, unless the account has `max` addresses
    /// already (`LimitReached`), has this one (`Duplicate`), or its addresses were issued
    /// `limits.per_account` tokens since `limits.window_start` (`RateLimited`). `events` are
    /// written only when it is added.
    async fn add_recovery_email(
        &self,
        new: &NewRecoveryEmail,
        max: u32,
        limits: IssueLimits,
        events: &[NewAuditEvent],
    ) -> StoreResult<AddOutcome>;
    /// Stores a new token for the account's unverified address `id` and spends its older ones,
    /// within `limits`. `events` are written only when it is stored.
    async fn issue_recovery_email_token(
        &self,
        user_id: UserId,
        id: Uuid,
        token: &NewRecoveryEmailToken,
        limits: IssueLimits,
        events: &[NewAuditEvent],
    ) -> StoreResult<IssueOutcome>;
    /// The address a live (unspent, unexpired) token verifies, without spending it.
    async fn recovery_email_token_address(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RecoveryEmail>>;
    /// Spends the live token `token_hash` of address `address.id` and verifies the address —
    /// unless it is verified already (`Invalid`), or another account has it as its own address
    /// or as a verified recovery address (`Taken`, changing nothing: of concurrent verifications
    /// of one address by two accounts, one gets `Taken`). Spends the address's other tokens.
    /// `events` are written only when it is verified.
    async fn verify_recovery_email(
        &self,
        token_hash: &str,
        address: &RecoveryEmail,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<VerifyOutcome>;
    /// Deletes the account's address `id` with its tokens. Returns it, or `None` when the account
    /// has no such address (then no event is written).
    async fn delete_recovery_email(
        &self,
        user_id: UserId,
        id: Uuid,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<RecoveryEmail>>;
    /// The account that has `email` as a verified recovery address, if any.
    async fn verified_recovery_email_owner(&self, email: &str) -> StoreResult<Option<UserId>>;
    /// Whether an account other than `user_id` has `email` as its own address or as a verified
    /// recovery address.
    async fn recovery_email_taken(&self, user_id: UserId, email: &str) -> StoreResult<bool>;
}

/// A signing key as stored: the private half encrypted under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (`kid` header).
    pub kid: String,
    /// JOSE algorithm name (`EdDSA`).
    pub algorithm: String,
    /// Raw public key.
    pub public_key: Vec<u8>,
    /// AEAD-sealed PKCS#8 private key.
    pub private_key_enc: Vec<u8>,
    /// Creation time; the newest key signs.
    pub created_at: DateTime<Utc>,
    /// Set once retired: the key no longer verifies, is not published, and its private half is
    /// erased.
    pub retired_at: Option<DateTime<Utc>>,
}

/// Token-signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Adds a key. Older keys are kept for verification.
    async fn insert_signing_key(
        &self,
        key: &StoredKey,
        events: &[NewAuditEvent],
    ) -> StoreResult<()>;
    /// Every key, retired ones included, newest first.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Retires a key: marks it retired at `now` and erases its sealed private half. Returns false
    /// when there is no such key or it was already retired.
    async fn retire_signing_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
}

/// A key-encryption key version as stored (envelope encryption, [`crate::envelope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKek {
    /// Version, from 1; the newest unretired version wraps new data keys.
    pub version: i32,
    /// `RSA-3072-OAEP-SHA256`.
    pub algorithm: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// PKCS#8 private key sealed under the master key; `None` once retired.
    pub private_key_enc: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Set once no data key refers to this version any more.
    pub retired_at: Option<DateTime<Utc>>,
}

/// A data key as stored: only wrapped by a key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataKey {
    /// Identifier, carried in every ciphertext it makes.
    pub id: Uuid,
    /// The account it belongs to; `None` for the deployment's own key.
    pub owner_id: Option<Uuid>,
    /// The key-encryption key version that wraps it.
    pub kek_version: i32,
    /// RSA-OAEP ciphertext of the 256-bit key.
    pub wrapped_key: Vec<u8>,
}

/// A column that holds encrypted values, for the online re-encryption of values sealed the
/// old way (directly under the master key) onto data keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedColumn {
    /// `signing_keys.private_key_enc`, keyed by `kid`.
    SigningKey,
    /// `totp_credentials.secret_enc`, keyed by `user_id`.
    TotpSecret,
    /// `mail_outbox.payload`, keyed by `id`.
    QueuedMail,
    /// `webhook_endpoints.secret_enc`, keyed by `id`.
    WebhookSecret,
    /// `webhook_endpoints.previous_secret_enc`, keyed by `id`.
    WebhookPreviousSecret,
}

impl SealedColumn {
    /// Every sealed column.
    pub const ALL: [Self; 5] = [
        Self::SigningKey,
        Self::TotpSecret,
        Self::QueuedMail,
        Self::WebhookSecret,
        Self::WebhookPreviousSecret,
    ];

    /// (table, key column, value column).
    #[must_use]
    pub const fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::SigningKey => ("signing_keys", "kid", "private_key_enc"),
            Self::TotpSecret => ("totp_credentials", "user_id", "secret_enc"),
            Self::QueuedMail => ("mail_outbox", "id", "payload"),
            Self::WebhookSecret => ("webhook_endpoints", "id", "secret_enc"),
            Self::WebhookPreviousSecret => ("webhook_endpoints", "id", "previous_secret_enc"),
        }
    }

    /// Whether the key column is a UUID (else text).
    #[must_use]
    pub const fn uuid_key(self) -> bool {
        !matches!(self, Self::SigningKey)
    }
}

/// One encrypted value and the key of its row (as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// The row's key.
    pub key: String,
    /// The encrypted value.
    pub value: Vec<u8>,
}

/// Key-encryption keys and data keys (envelope encryption).
#[async_trait]
pub trait EnvelopeStore: Send + Sync {
    /// Every key-encryption key version, newest first.
    async fn key_encryption_keys(&self) -> StoreResult<Vec<StoredKek>>;
    /// Adds a version. Returns false when that version exists already (another instance made
    /// it first).
    async fn insert_key_encryption_key(
        &self,
        kek: &StoredKek,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Retires version `version` — marks it and erases its private half — unless it is the
    /// newest version or a data key still refers to it. Returns whether it was retired.
    async fn retire_key_encryption_key(
        &self,
        version: i32,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// The data key of `owner` (`None`: the deployment's own).
    async fn data_key_of(&self, owner: Option<Uuid>) -> StoreResult<Option<StoredDataKey>>;
    /// Adds a data key. Returns false when its owner has one already (or the deployment key
    /// exists) — the caller reads that one instead — or when its key-encryption key version
    /// was retired meanwhile. Serialised with [`EnvelopeStore::retire_key_encryption_key`].
    async fn insert_data_key(&self, key: &StoredDataKey, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Up to `limit` data keys not wrapped by version `current`, oldest version first.
    async fn data_keys_to_rewrap(
        &self,
        current: i32,
        limit: u32,
    ) -> StoreResult<Vec<StoredDataKey>>;
    /// Replaces key `id`'s wrapping if it is still wrapped by `from` and version `to` is not
    /// retired. Returns whether it was. Serialised with retirements.
    async fn rewrap_data_key(
        &self,
        id: Uuid,
        from: i32,
        to: i32,
        wrapped_key: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// How many data keys each key-encryption key version wraps.
    async fn data_key_counts(&self) -> StoreResult<Vec<(i32, u64)>>;
    /// How many data keys were destroyed (crypto-shredded accounts).
    async fn destroyed_data_key_count(&self) -> StoreResult<u64>;
    /// Up to `limit` values of `column` that do not start with `prefix` (values sealed the old
    /// way), in key order after `after`.
    async fn legacy_sealed_values(
        &self,
        column: SealedColumn,
        prefix: &[u8],
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValue>>;
    /// Replaces `column`'s value on row `key` if it is still `old`. Returns whether it was.
    async fn replace_sealed_value(
        &self,
        column: SealedColumn,
        key: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
}

/// A queued outgoing mail; the payload is sealed because it may carry a one-time link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// Identifier.
    pub id: Uuid,
    /// Sealed, serialised message.
    pub payload: Vec<u8>,
    /// Delivery attempts so far, including the current one.
    pub attempts: i32,
}

/// The transactional mail outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues a message for immediate delivery.
    async fn enqueue_mail(&self, id: Uuid, payload: &[u8], now: DateTime<Utc>) -> StoreResult<()>;
    /// Leases up to `limit` due messages until `lease_until` and counts an attempt on each.
    /// A message leased by one worker is not handed to another before its lease ends.
    async fn claim_mail(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<QueuedMail>>;
    /// Marks a message delivered and erases its payload.
    async fn mail_sent(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;
    /// Records a failed attempt; retry at `retry_at`, or give up (and erase the payload) if `None`.
    async fn mail_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Messages not yet delivered or abandoned.
    async fn pending_mail_count(&self) -> StoreResult<u64>;
}

/// Most known devices kept per account.
pub const MAX_KNOWN_DEVICES: i64 = 5;

/// A browser that signed in successfully before (README: the lockout rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDevice {
    /// The account it signed in to.
    pub user_id: UserId,
    /// The address of that sign-in.
    pub ip_address: String,
    /// Consecutive failed sign-ins from this device.
    pub failed_login_attempts: i32,
    /// End of this device's own lock.
    pub locked_until: Option<DateTime<Utc>>,
}

/// What browsers hold: device cookies and session cookies (stored as SHA-256 hashes).
#[async_trait]
pub trait BrowserStore: Send + Sync {
    /// Records (or refreshes) a device after a successful sign-in: its address, and a clean
    /// failure count — unless the device is locked at `now`, in which case nothing changes and
    /// `false` is returned (the sign-in must be refused: failures landed while it was checked).
    /// Keeps the account's [`MAX_KNOWN_DEVICES`] most recently used devices only.
    async fn remember_device(
        &self,
        user_id: UserId,
        device_hash: &str,
        ip_address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Forgets every known device of the account (password changed or reset, all sessions
    /// revoked, account disabled): none keeps an exemption from the account lock.
    async fn forget_devices(&self, user_id: UserId) -> StoreResult<()>;
    /// The account's device with this cookie hash. Sign-in also asks with the nil id when the
    /// account is unknown, so the look-up costs the same either way.
    async fn known_device(
        &self,
        user_id: UserId,
        device_hash: &str,
    ) -> StoreResult<Option<KnownDevice>>;
    /// Counts a failed sign-in from a known device, with the account lock's rule (lock at
    /// `max_attempts`, never extended while locked). Returns whether this failure set the lock.
    /// Writes `failed` always and `locked` only when this failure set the lock.
    #[allow(clippy::too_many_arguments)]
    async fn record_device_failure(
        &self,
        user_id: UserId,
        device_hash: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        failed: &NewAuditEvent,
        locked: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Makes a session reachable by a browser cookie (hash).
    async fn attach_session_cookie(&self, session_id: Uuid, cookie_hash: &str) -> StoreResult<()>;
    /// The session (id, owner) a cookie hash belongs to, whatever its state.
    async fn session_by_cookie(&self, cookie_hash: &str) -> StoreResult<Option<(Uuid, UserId)>>;
}

/// The security event log. Append-only: there is no update or delete, and the schema refuses
/// both.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event.
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()>;
    /// Events matching `filter`, newest first, at most `limit`.
    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

/// Webhook endpoints and the delivery queue. Deliveries are added by the event writes of every
/// other store call (one per enabled endpoint subscribing to the event's type, in the same
/// transaction); this trait manages endpoints and lets workers lease and finish attempts.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Adds an endpoint.
    async fn insert_webhook(
        &self,
        endpoint: &NewWebhookEndpoint,
        events: &[NewAuditEvent],
    ) -> StoreResult<WebhookEndpoint>;
    /// Looks up an endpoint.
    async fn webhook_by_id(&self, id: Uuid) -> StoreResult<Option<WebhookEndpoint>>;
    /// Every endpoint, oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>>;
    /// Applies an update. `None` when there is no such endpoint.
    async fn update_webhook(
        &self,
        id: Uuid,
        update: &WebhookUpdate,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Deletes an endpoint and its deliveries. Returns false when there was none.
    async fn delete_webhook(&self, id: Uuid, events: &[NewAuditEvent]) -> StoreResult<bool>;
    /// Makes `secret_enc` the signing secret; the current one keeps signing until
    /// `previous_until`. `None` when there is no such endpoint.
    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret_enc: &[u8],
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>>;
    /// Enabled endpoints with at least one pending delivery due at `now`.
    async fn endpoints_with_due_deliveries(&self, now: DateTime<Utc>) -> StoreResult<Vec<Uuid>>;
    /// Leases up to `limit` due pending deliveries of an enabled endpoint, oldest first, until
    /// `lease_until` (their `next_attempt_at`), counting an attempt on each. A delivery leased by
    /// one worker is not handed to another before its lease ends (PostgreSQL: `SKIP LOCKED`).
    async fn claim_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records an attempt's result on a pending delivery: delivered, retry at `retry_at`, or dead.
    /// Success clears the endpoint's `failing_since`; a failure sets it if unset. Returns the
    /// endpoint's `failing_since` after the update (`None` after a success or when the delivery is
    /// gone).
    async fn finish_webhook_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
    ) -> StoreResult<Option<DateTime<Utc>>>;
    /// An endpoint's deliveries, newest first, with ids below `before_id` when given.
    async fn list_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Dead letters of every endpoint, newest first, with ids below `before_id` when given.
    async fn dead_letters(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Queues events again for one endpoint (new deliveries, due at `now`; the `webhook-id` is the
    /// event's, so receivers can recognise a replay). A range takes only subscribed types
    /// (webhook administration events excluded), at most `MAX_REPLAY_EVENTS`. Returns how many
    /// were queued; 0 when there is no such endpoint or event.
    async fn replay_webhook_events(
        &self,
        endpoint_id: Uuid,
        replay: Replay,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64>;
    /// Appends `event` (a `webhook.tested` event) and queues it for this endpoint only, enabled
    /// or not. Returns the delivery id, or `None` when there is no such endpoint.
    async fn queue_test_event(
        &self,
        endpoint_id: Uuid,
        event: &NewAuditEvent,
    ) -> StoreResult<Option<i64>>;
    /// Pending deliveries of enabled endpoints.
    async fn webhook_backlog(&self) -> StoreResult<u64>;
    /// Deletes delivered and dead deliveries completed before `before`. Returns how many.
    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// Multi-factor sign-in: authenticator-app credentials, backup codes and second steps in progress
/// (see [`crate::domain::mfa`]). Codes and tokens arrive hashed (backup and emailed codes with a
/// key the store never sees); the TOTP secret arrives sealed.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// The account's authenticator-app credential, pending or enabled, with its count of unused
    /// backup codes.
    async fn totp_credential(&self, user_id: UserId) -> StoreResult<Option<TotpCredential>>;
    /// Starts (or restarts) a setup: stores `secret_enc` as the account's pending secret and
    /// `code_hashes` as its backup codes, replacing a pending setup and its codes. Returns false,
    /// changing nothing, when the account has TOTP enabled already or does not exist.
    async fn begin_totp_setup(
        &self,
        user_id: UserId,
        secret_enc: &[u8],
        code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Enables the pending setup whose sealed secret is `secret_enc` (a setup restarted
    /// meanwhile makes this fail), recording `step` as the last step used. Returns false,
    /// changing nothing, when there is no such pending setup.
    async fn enable_totp(
        &self,
        user_id: UserId,
        secret_enc: &[u8],
        step: i64,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Deletes the account's TOTP credential (pending or enabled) and backup codes. Returns
    /// whether an enabled credential was deleted; `events` are written only then.
    async fn disable_totp(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Replaces the backup codes of an account whose TOTP is enabled (the old set stops working).
    /// Returns false, changing nothing, when TOTP is not enabled.
    async fn replace_backup_codes(
        &self,
        user_id: UserId,
        code_hashes: &[String],
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Spends a factor outside a sign-in (re-authentication before disabling or regenerating):
    /// a TOTP step later than the last one used, or an unused backup code, of an account whose
    /// TOTP is enabled. Of concurrent calls with one code exactly one gets true. An emailed code
    /// is never accepted here.
    async fn spend_factor(
        &self,
        user_id: UserId,
        factor: &SpentFactor,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Stores a second step (with its first emailed code, if any, which counts as the first
    /// code mailed for it). Stores nothing and writes no event when the account does not exist
    /// (deleted meanwhile).
    async fn insert_mfa_challenge(
        &self,
        challenge: &NewMfaChallenge,
        events: &[NewAuditEvent],
    ) -> StoreResult<()>;
    /// The challenge whose token hash is `token_hash` if it is live at `now`: not spent, not
    /// expired, and with fewer than `max_attempts` wrong codes.
    async fn mfa_challenge(
        &self,
        token_hash: &str,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Counts a wrong code on a live challenge, atomically. Returns the count after this one, or
    /// `None` when the challenge was no longer live. At `max_attempts` the challenge is dead.
    async fn fail_mfa_challenge(
        &self,
        id: Uuid,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i32>>;
    /// Ends a second step, atomically: the challenge must still be live, the factor is spent
    /// (see [`SpentFactor`]), the challenge is marked spent and — unless it came from a known
    /// device — the account's failure count is reset, which a lock at `now` refuses. Of
    /// concurrent calls for one challenge, or with one code, exactly one completes. Nothing
    /// changes and no event is written unless the outcome is `Completed`.
    async fn complete_mfa_challenge(
        &self,
        id: Uuid,
        factor: &SpentFactor,
        max_attempts: i32,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<CompleteOutcome>;
    /// Replaces a live challenge's emailed code (its wrong attempts still count) unless the
    /// last code was mailed after `not_since`, or `max_sends` codes were mailed for it already.
    /// One conditional write, so concurrent requests cannot mail more than `max_sends` codes.
    /// A refusal names the first reason that holds: `ChallengeGone`, then `LimitReached` (which
    /// waiting does not lift), then `TooSoon`.
    #[allow(clippy::too_many_arguments)]
    async fn set_mfa_email_code(
        &self,
        id: Uuid,
        code_hash: &str,
        code_expires_at: DateTime<Utc>,
        not_since: DateTime<Utc>,
        max_sends: i32,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<EmailCodeOutcome>;
}

/// Roles and permissions (see [`crate::domain::rbac`]). Every change writes its audit events in
/// its transaction and tells other instances that grants changed (the event feed); every change
/// that could remove a holder of the `admin` role or of `roles:manage` runs serialised with the
/// others and is refused with [`StoreError::Refused`]`("last_admin")` when it would leave none
/// (counting active accounts; a deployment that had none is left alone).
#[async_trait]
pub trait RbacStore: Send + Sync {
    /// Stores a new role or permission (grants change: `admin` holds a new permission at once).
    /// `Conflict { field: "name" }` when the name is taken.
    async fn create_rbac_object(
        &self,
        kind: RbacKind,
        object: &RbacObject,
        events: &[NewAuditEvent],
    ) -> StoreResult<RbacObject>;
    /// Every role or permission, by name.
    async fn rbac_objects(&self, kind: RbacKind) -> StoreResult<Vec<RbacObject>>;
    /// One role or permission by id.
    async fn rbac_object(&self, kind: RbacKind, id: Uuid) -> StoreResult<Option<RbacObject>>;
    /// One role or permission by name.
    async fn rbac_object_by_name(
        &self,
        kind: RbacKind,
        name: &str,
    ) -> StoreResult<Option<RbacObject>>;
    /// Renames and/or re-describes. `NotFound`; `Conflict { field: "name" }`;
    /// `Refused("builtin_protected")` for a built-in.
    async fn update_rbac_object(
        &self,
        kind: RbacKind,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<RbacObject>;
    /// Deletes a role or permission with its links. `NotFound`; `Refused("builtin_protected")`;
    /// `Refused("last_admin")`. Returns the deleted object.
    async fn delete_rbac_object(
        &self,
        kind: RbacKind,
        id: Uuid,
        events: &[NewAuditEvent],
    ) -> StoreResult<RbacObject>;
    /// Grants a permission to a role; false (and no event) when it already had it. `NotFound`
    /// for an unknown role or permission; `Refused("builtin_protected")` for the `admin` role,
    /// which holds everything implicitly.
    async fn grant_permission(
        &self,
        role_id: Uuid,
        permission_id: Uuid,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Takes a permission from a role; false (and no event) when it did not have it. `NotFound`;
    /// `Refused("builtin_protected")` for the `admin` role; `Refused("last_admin")`.
    async fn revoke_permission(
        &self,
        role_id: Uuid,
        permission_id: Uuid,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// The permissions of a role, by name (for `admin`, all of them); `None` for an unknown role.
    async fn role_permissions(&self, role_id: Uuid) -> StoreResult<Option<Vec<RbacObject>>>;
    /// Gives a role to a user; false (and no event) when they had it. `NotFound` for an unknown
    /// user or role.
    async fn assign_role(
        &self,
        user_id: UserId,
        role_id: Uuid,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// Takes a role from a user; false (and no event) when they did not have it. `NotFound`;
    /// `Refused("builtin_protected")` for the `user` role; `Refused("last_admin")`.
    async fn unassign_role(
        &self,
        user_id: UserId,
        role_id: Uuid,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// A user's roles, by name; `None` for an unknown user.
    async fn user_roles(&self, user_id: UserId) -> StoreResult<Option<Vec<RbacObject>>>;
    /// What a user holds: role names and permission names, sorted (empty for an unknown user).
    async fn user_grants(&self, user_id: UserId) -> StoreResult<Grants>;
}

/// Security questions (see [`crate::domain::security_question`] and
/// [`crate::flows::security_questions`]): the catalogue, users' answers (hashed by the flow),
/// the question lock and recovery proofs (hashed). Every change that alters how an account is
/// recovered (setting or removing answers) also spends the account's outstanding recovery proofs.
#[async_trait]
pub trait SecurityQuestionStore: Send + Sync {
    /// Adds a question. `Conflict { field: "text" }` when the same text exists.
    async fn create_security_question(
        &self,
        question: &SecurityQuestion,
        events: &[NewAuditEvent],
    ) -> StoreResult<SecurityQuestion>;
    /// The catalogue ordered by text; only active questions when `active_only`.
    async fn security_questions(&self, active_only: bool) -> StoreResult<Vec<SecurityQuestion>>;
    /// One question.
    async fn security_question(&self, id: Uuid) -> StoreResult<Option<SecurityQuestion>>;
    /// Changes a question's text and/or state (absent: unchanged). `NotFound`;
    /// `Conflict { field: "text" }`. Events are written only when something changed.
    async fn update_security_question(
        &self,
        id: Uuid,
        text: Option<&str>,
        active: Option<bool>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<SecurityQuestion>;
    /// Deletes a question and every answer to it. `NotFound`. Returns the deleted question.
    async fn delete_security_question(
        &self,
        id: Uuid,
        events: &[NewAuditEvent],
    ) -> StoreResult<SecurityQuestion>;
    /// Sets (or replaces) `user_id`'s answer to an active question, keeping at most
    /// `max_answers` answers, and spends the account's outstanding recovery proofs, in one
    /// transaction (the account locked first, so concurrent calls count each other). `events`
    /// are written only when the answer was stored.
    async fn set_security_answer(
        &self,
        user_id: UserId,
        question_id: Uuid,
        answer_hash: &str,
        max_answers: usize,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<SetAnswerOutcome>;
    /// The account's answers (never their hashes), ordered by question id.
    async fn security_answers(&self, user_id: UserId) -> StoreResult<Vec<SecurityAnswer>>;
    /// The account's answers to active questions with their hashes, ordered by question id:
    /// what recovery asks.
    async fn stored_answers(&self, user_id: UserId) -> StoreResult<Vec<StoredAnswer>>;
    /// Deletes one answer (`question_id`) or all, and spends the account's outstanding
    /// recovery proofs. Returns how many answers went; `events` are written only when some did.
    async fn delete_security_answers(
        &self,
        user_id: UserId,
        question_id: Option<Uuid>,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64>;
    /// The account's question lock (default for an unknown account).
    async fn question_lock(&self, user_id: UserId) -> StoreResult<QuestionLock>;
    /// Counts wrong answers. When the count reaches `max_attempts` question-based recovery is
    /// locked until `lock_until`; failures while locked neither count nor extend it. Writes
    /// `failed` always and `locked` only when this failure set the lock; returns whether it did.
    async fn record_failed_answers(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        failed: &NewAuditEvent,
        locked: &NewAuditEvent,
    ) -> StoreResult<bool>;
    /// After every question was answered correctly: unless question-based recovery is locked at
    /// `now` (checked here, atomically), clears the failure count, spends the account's older
    /// proofs and stores the new one. Returns false, changing nothing, when locked.
    async fn issue_recovery_proof(
        &self,
        user_id: UserId,
        proof_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool>;
    /// The account of a live (unspent, unexpired) recovery proof.
    async fn recovery_proof_owner(
        &self,
        proof_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>>;
    /// [`RecoveryStore::complete_reset`] that also spends the live recovery proof `proof_hash`
    /// of `owner`, in the same transaction: both or neither are spent. (`complete_reset`
    /// without a proof refuses an account with at least
    /// [`crate::domain::security_question::MIN_ANSWERS`] answers to active questions.) The
    /// question failure count is cleared too.
    async fn complete_reset_with_proof(
        &self,
        token_hash: &str,
        proof_hash: &str,
        owner: UserId,
        new_hash: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>>;
}

/// Maintenance jobs (see [`crate::domain::maintenance`] for what each removes).
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Runs `job` with `cut`: finds at most `batch` dead rows outside any write transaction and
    /// deletes them by key in a short transaction of their own, repeating until fewer are found,
    /// so that sign-ins waiting for the same tables (SQLite's single writer, PostgreSQL's row
    /// locks) wait for one batch of deletes at most. Returns how many rows the job removed (for [`Job::Sessions`], sessions: their refresh
    /// tokens go with them uncounted). `events(removed)` are written in the last batch's
    /// transaction. Concurrent runs are safe: each row is removed once.
    async fn run_maintenance(
        &self,
        job: Job,
        cut: &Cutoffs,
        batch: u32,
        events: RunEvents<'_>,
    ) -> StoreResult<u64>;
    /// Takes the maintenance lock without waiting: `None` when another holder has it
    /// (PostgreSQL: a session-level advisory lock on a connection of its own, so it is held by
    /// one instance at a time and freed if that instance dies; SQLite: one holder per store).
    async fn try_maintenance_lock(&self) -> StoreResult<Option<Box<dyn MaintenanceLock>>>;
}

/// The held maintenance lock ([`MaintenanceStore::try_maintenance_lock`]).
#[async_trait]
pub trait MaintenanceLock: Send {
    /// Releases the lock. (Dropping it releases it too, but on PostgreSQL only once the server
    /// notices its connection closed.)
    async fn release(self: Box<Self>) -> StoreResult<()>;
}

/// Bulk loading, for seeding benchmarks and imports: many rows per statement or transaction,
/// no per-row round trip. Rows must be valid already (passwords hashed, names parsed).
#[async_trait]
pub trait BulkStore: Send + Sync {
    /// Inserts accounts; returns how many. A duplicate username or email fails the whole batch.
    async fn insert_users_bulk(&self, users: &[NewUser]) -> StoreResult<u64>;
    /// Appends audit events; returns how many.
    async fn append_audit_bulk(&self, events: &[NewAuditEvent]) -> StoreResult<u64>;
}

/// New-device sign-in alerts and their "this wasn't me" links (see
/// [`crate::domain::sign_in_alert`]). Device keys and link tokens arrive hashed.
#[async_trait]
pub trait SignInAlertStore: Send + Sync {
    /// Whether the account signed in before from the device `device_key`, and from any device.
    async fn sign_in_device_state(
        &self,
        user_id: UserId,
        device_key: &str,
    ) -> StoreResult<DeviceState>;
    /// [`SessionStore::create_session`] (same checks, and the account must not be waiting for
    /// a password reset after a "this wasn't me") that also records the device in the same
    /// transaction: `sighting.device_key` and `also_keys` are marked seen at `now`. When
    /// `sighting.alert` is given, the device key was not seen before, the account had signed
    /// in before from another device and still wants alerts, the alert's link is stored for
    /// the new session, its mail queued in the outbox and its event written — all in that
    /// transaction. Returns the session and whether the alert was stored; `None` as
    /// `create_session`.
    async fn create_session_noting_device(
        &self,
        session: &NewSession,
        refresh: &NewRefreshToken,
        sighting: &DeviceSighting,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<(Session, bool)>>;
    /// The live (unspent, unexpired) link whose token hash is `token_hash`.
    async fn sign_in_alert(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SignInAlert>>;
    /// Uses a live link, atomically: spends it, revokes the session it names (if still live;
    /// the account's other sessions stay) and marks the account as needing a password reset.
    /// Of concurrent calls exactly one succeeds; `None` (nothing changed, no event) for a link
    /// that is not live. `events` are written on success.
    async fn disown_sign_in(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Disowned>>;
    /// The account's sign-in attempts (`sign_in.succeeded` and `sign_in.failed` events), newest
    /// first, with ids below `before_id` when given, at most `limit`.
    async fn login_history(
        &self,
        user_id: UserId,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LoginAttempt>>;
}

/// Private messages (see [`crate::flows::messages`]): rows of ciphertext, one wrapped copy of
/// the message key per party. Every call names the account it acts for, and only rows where
/// that account holds a copy are seen or changed.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message. `false` (nothing stored) when the sender's account is gone. A
    /// recipient whose account is gone by then gets no copy (stored as not delivered).
    async fn insert_message(
        &self,
        message: &crate::domain::message::NewMessage,
    ) -> StoreResult<bool>;
    /// A page of `user_id`'s folder, newest first, and how many the folder holds.
    async fn messages(
        &self,
        user_id: UserId,
        folder: crate::domain::message::MessageBox,
        limit: u32,
        offset: u64,
    ) -> StoreResult<crate::domain::message::MessagePage>;
    /// Message `id` if `user_id` holds a copy of it (as sender or recipient).
    async fn message(
        &self,
        user_id: UserId,
        id: Uuid,
    ) -> StoreResult<Option<crate::domain::message::StoredMessage>>;
    /// Marks message `id` read at `now` if `user_id` holds the recipient's copy and it was
    /// unread. Returns whether it changed.
    async fn mark_message_read(
        &self,
        user_id: UserId,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Drops `user_id`'s copies of message `id` (the recipient's, the sender's, or both for a
    /// message to oneself); the row goes when no party holds a copy any more. Returns whether
    /// `user_id` held one.
    async fn delete_message(&self, user_id: UserId, id: Uuid) -> StoreResult<bool>;
}

/// A change another instance made that local caches must learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// These sessions were revoked.
    SessionsRevoked(Vec<Uuid>),
    /// A signing key was added.
    KeysChanged,
    /// Roles, permissions or their assignments changed: cached grants are stale.
    GrantsChanged,
    /// Events may have been missed (listener reconnected): drop every cached state.
    Resync,
}

/// The whole storage contract.
#[async_trait]
pub trait Store:
    UserStore
    + SessionStore
    + RecoveryStore
    + EmailConfirmationStore
    + RecoveryEmailStore
    + KeyStore
    + OutboxStore
    + AuditStore
    + BrowserStore
    + BulkStore
    + WebhookStore
    + MfaStore
    + RbacStore
    + MaintenanceStore
    + SignInAlertStore
    + SecurityQuestionStore
    + EnvelopeStore
    + MessageStore
{
    /// Short backend name for logs and health (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Checks the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Maintenance: deletes failure counters of unknown identifiers idle and unlocked since
    /// before `before`, and known devices unused since `devices_before`. Returns how many rows
    /// went. (Tokens, codes and sessions are [`MaintenanceStore`]'s jobs.)
    async fn purge_expired(
        &self,
        before: DateTime<Utc>,
        devices_before: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Changes made by other instances, when the backend can tell (PostgreSQL LISTEN/NOTIFY).
    /// `None` when this backend has no cross-instance feed.
    async fn subscribe(&self) -> StoreResult<Option<BoxStream<'static, StoreEvent>>>;
    /// Connection pools and their use, for the metrics (none by default).
    fn pool_stats(&self) -> Vec<PoolStats> {
        Vec::new()
    }
}

/// One connection pool's use at a moment, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool (`main`; SQLite has `writer` and `reader`): a fixed name, used as a label.
    pub pool: &'static str,
    /// Connections open.
    pub open: u32,
    /// Of those, idle.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}
