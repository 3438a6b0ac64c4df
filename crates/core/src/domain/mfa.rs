//! Multi-factor sign-in: authenticator-app credentials, backup codes and the second step of a
//! sign-in (the *challenge* an `mfa_token` names).
//!
//! A sign-in that needs a second step does not open a session: it stores a challenge that
//! remembers what the first step proved (the account, its credential epoch, the client, the
//! methods already used) and hands the client an opaque `mfa_token`. The second step spends the
//! challenge and a factor together, atomically, and only then is the session opened. Every
//! method (an authenticator code, a backup code, an emailed code, later a passkey) is one more
//! [`Method`] and one more [`SpentFactor`]; the state machine stays the same.
//!
//! What the two store backends share is here too: how their rows decode ([`StoredColumns`]) and
//! the order of the steps that end a second step ([`FactorSteps`], [`complete_challenge`]), so
//! that the rules are written once and each backend keeps only its SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::user::UserId;
use super::webhook::StoredColumns;
use crate::crypto::ct_eq;
use crate::store::StoreResult;

/// A way to pass the second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A code from an authenticator app (RFC 6238).
    Totp,
    /// One of the account's single-use backup codes.
    BackupCode,
    /// A code mailed to the account's address.
    Email,
}

impl Method {
    /// The name clients see in `methods`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::BackupCode => "backup_code",
            Self::Email => "email",
        }
    }

    /// Parses a name from [`Method::as_str`].
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "totp" => Some(Self::Totp),
            "backup_code" => Some(Self::BackupCode),
            "email" => Some(Self::Email),
            _ => None,
        }
    }

    /// The RFC 8176 `amr` value this method adds to a session (`otp` for app and backup codes;
    /// RFC 8176 has no value for a mailed code, so `email`).
    #[must_use]
    pub fn amr(self) -> &'static str {
        match self {
            Self::Totp | Self::BackupCode => "otp",
            Self::Email => "email",
        }
    }
}

/// Encodes a list of names as the JSON array the stores keep in a text column.
#[must_use]
pub fn encode_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(names.into_iter().collect::<Vec<_>>()).to_string()
}

/// Decodes a JSON array of names (unknown or malformed content gives an empty list).
#[must_use]
pub fn decode_names(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Encodes offered methods as the JSON array of their names the stores keep.
#[must_use]
pub fn encode_methods(methods: &[Method]) -> String {
    encode_names(methods.iter().map(|m| m.as_str()))
}

/// An account's authenticator-app credential as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCredential {
    /// The account.
    pub user_id: UserId,
    /// The shared secret, encrypted with the account's data key ([`crate::envelope`]).
    pub secret_enc: Vec<u8>,
    /// When a first code proved the app works; `None` while the setup is pending.
    pub enabled_at: Option<DateTime<Utc>>,
    /// The 30-second step of the last code accepted.
    pub last_step: Option<i64>,
    /// Unused backup codes of the account.
    pub backup_codes_remaining: u32,
    /// When the setup started.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for TotpCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpCredential")
            .field("user_id", &self.user_id)
            .field("enabled_at", &self.enabled_at)
            .field("backup_codes_remaining", &self.backup_codes_remaining)
            .finish_non_exhaustive()
    }
}

/// A second step to store.
#[derive(Clone)]
pub struct NewMfaChallenge {
    /// Identifier.
    pub id: Uuid,
    /// SHA-256 of the `mfa_token`, hex.
    pub token_hash: String,
    /// The account whose password was verified.
    pub user_id: UserId,
    /// The account's credential epoch as read before the password was verified.
    pub credential_epoch: i64,
    /// Keyed hash of the client (address and user agent) the first step came from.
    pub client_hash: String,
    /// Hash of the device cookie the first step came with, if any.
    pub device_hash: Option<String>,
    /// Whether that device is one the account signed in from before (its own lock applies, not
    /// the account's).
    pub known_device: bool,
    /// The methods offered for the second step.
    pub methods: Vec<Method>,
    /// RFC 8176 values of the methods already used (`pwd`).
    pub amr: Vec<String>,
    /// A code mailed at once (keyed hash, expiry), for a second step by email.
    pub email_code: Option<(String, DateTime<Utc>)>,
    /// Creation time.
    pub now: DateTime<Utc>,
    /// End of the challenge's life.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewMfaChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMfaChallenge")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// A live second step, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    /// Identifier.
    pub id: Uuid,
    /// The account.
    pub user_id: UserId,
    /// See [`NewMfaChallenge::credential_epoch`].
    pub credential_epoch: i64,
    /// See [`NewMfaChallenge::client_hash`].
    pub client_hash: String,
    /// See [`NewMfaChallenge::device_hash`].
    pub device_hash: Option<String>,
    /// See [`NewMfaChallenge::known_device`].
    pub known_device: bool,
    /// The methods offered (names the store does not know are dropped).
    pub methods: Vec<Method>,
    /// Methods already used.
    pub amr: Vec<String>,
    /// Wrong codes so far.
    pub failed_attempts: i32,
    /// Keyed hash of the current emailed code.
    pub email_code_hash: Option<String>,
    /// Its expiry.
    pub email_code_expires_at: Option<DateTime<Utc>>,
    /// Codes mailed so far for this challenge.
    pub email_codes_sent: i32,
    /// When the last one was mailed.
    pub email_last_sent_at: Option<DateTime<Utc>>,
    /// End of the challenge's life.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for MfaChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaChallenge")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("methods", &self.methods)
            .field("failed_attempts", &self.failed_attempts)
            .finish_non_exhaustive()
    }
}

/// The factor a second step (or a re-authentication) spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpentFactor {
    /// An authenticator code of this 30-second step: accepted only if the account's enabled
    /// credential has not accepted this or a later step.
    TotpStep(i64),
    /// A backup code by keyed hash: accepted only if it is one of the account's unused codes.
    BackupCode(String),
    /// An emailed code by keyed hash: accepted only if it is still the challenge's current code
    /// and unexpired.
    EmailCode(String),
}

/// How completing a second step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// The challenge and the factor are spent and the account's failure count is reset: open
    /// the session.
    Completed,
    /// The challenge is no longer live (spent, expired, or dead after too many wrong codes).
    ChallengeGone,
    /// The factor was not accepted (a code already used, a replaced or expired emailed code).
    FactorRejected,
    /// The account is locked (challenges from a known device are exempt: the device's own lock
    /// is checked when the device is remembered).
    AccountLocked,
}

/// How a request to mail a second-step code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailCodeOutcome {
    /// The new code replaced the previous one (its attempts still count).
    Stored,
    /// The previous code was mailed less than the minimum interval ago.
    TooSoon,
    /// The challenge has had as many codes as it may.
    LimitReached,
    /// The challenge is no longer live.
    ChallengeGone,
}

impl EmailCodeOutcome {
    /// Why a new code was refused, when the conditional update that stores it changed nothing:
    /// `codes_sent` is the count of the challenge if it is still live.
    #[must_use]
    pub fn refusal(codes_sent: Option<i32>, max_sends: i32) -> Self {
        match codes_sent {
            None => Self::ChallengeGone,
            Some(sent) if sent >= max_sends => Self::LimitReached,
            Some(_) => Self::TooSoon,
        }
    }
}

impl MfaChallenge {
    /// Whether `code_hash` is this challenge's current emailed code, unexpired at `now`.
    #[must_use]
    pub fn email_code_accepts(&self, code_hash: &str, now: DateTime<Utc>) -> bool {
        match (&self.email_code_hash, self.email_code_expires_at) {
            (Some(stored), Some(expires_at)) => {
                expires_at > now && ct_eq(stored.as_bytes(), code_hash.as_bytes())
            }
            _ => false,
        }
    }
}

/// The columns [`challenge_from_columns`] reads, as a literal for `concat!` in a store's SQL.
#[macro_export]
macro_rules! mfa_challenge_columns {
    () => {
        "id, user_id, credential_epoch, client_hash, device_hash, known_device, methods, amr, \
         failed_attempts, email_code_hash, email_code_expires_at, email_codes_sent, \
         email_last_sent_at, expires_at, created_at"
    };
}

/// Decodes an `mfa_challenges` row (the columns of [`crate::mfa_challenge_columns!`]).
///
/// # Errors
/// When a column is missing or malformed.
pub fn challenge_from_columns(r: &impl StoredColumns) -> StoreResult<MfaChallenge> {
    Ok(MfaChallenge {
        id: r.uuid("id")?,
        user_id: r.uuid("user_id")?,
        credential_epoch: r.big("credential_epoch")?,
        client_hash: r.text("client_hash")?,
        device_hash: r.opt_text("device_hash")?,
        known_device: r.flag("known_device")?,
        methods: decode_names(&r.text("methods")?)
            .iter()
            .filter_map(|name| Method::parse(name))
            .collect(),
        amr: decode_names(&r.text("amr")?),
        failed_attempts: r.int("failed_attempts")?,
        email_code_hash: r.opt_text("email_code_hash")?,
        email_code_expires_at: r.opt_time("email_code_expires_at")?,
        email_codes_sent: r.int("email_codes_sent")?,
        email_last_sent_at: r.opt_time("email_last_sent_at")?,
        expires_at: r.time("expires_at")?,
        created_at: r.time("created_at")?,
    })
}

/// The columns [`totp_credential_from_columns`] reads from `totp_credentials t`, with the count
/// of the account's unused backup codes, as a literal for `concat!` in a store's SQL.
#[macro_export]
macro_rules! totp_credential_columns {
    () => {
        "t.user_id, t.secret_enc, t.enabled_at, t.last_step, t.created_at, \
         (select count(*) from backup_codes b where b.user_id = t.user_id and b.used_at is null) \
         as backup_codes_remaining"
    };
}

/// Decodes a `totp_credentials` row (the columns of [`crate::totp_credential_columns!`]).
///
/// # Errors
/// When a column is missing or malformed.
pub fn totp_credential_from_columns(r: &impl StoredColumns) -> StoreResult<TotpCredential> {
    Ok(TotpCredential {
        user_id: r.uuid("user_id")?,
        secret_enc: r.bytes("secret_enc")?,
        enabled_at: r.opt_time("enabled_at")?,
        last_step: r.opt_big("last_step")?,
        backup_codes_remaining: u32::try_from(r.big("backup_codes_remaining")?).unwrap_or(0),
        created_at: r.time("created_at")?,
    })
}

/// The statements that spend a challenge or a factor, each run by a store inside the one
/// transaction of its call. [`complete_challenge`] and [`reauthenticate`] put them in order, so
/// what is checked, in which order, and what a known device is exempt from, is the same on every
/// backend. Every step is a conditional write that reports whether it changed a row: of
/// concurrent transactions spending one thing, exactly one sees its row change. The store
/// commits only on success and rolls back otherwise, so a refused call changes nothing.
#[async_trait]
pub trait FactorSteps: Send {
    /// Marks the challenge spent if it is live at `now` (not spent, not expired, fewer than
    /// `max_attempts` wrong codes) and returns it as it was; `None` when it was not live.
    async fn consume_challenge(
        &mut self,
        id: Uuid,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<MfaChallenge>>;
    /// Makes `step` the last step of the account's enabled TOTP credential if it is later than
    /// the last one used. Returns whether it did.
    async fn spend_totp_step(
        &mut self,
        user_id: UserId,
        step: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Marks the backup code used if it is one of the account's unused codes and the account's
    /// TOTP is enabled. Returns whether it did.
    async fn spend_backup_code(
        &mut self,
        user_id: UserId,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Resets the account's failure count unless the account is locked at `now` (as a correct
    /// password does). Returns false, changing nothing, when it is locked.
    async fn clear_failures(&mut self, user_id: UserId, now: DateTime<Utc>) -> StoreResult<bool>;
}

/// Ends a second step (see [`crate::store::MfaStore::complete_mfa_challenge`]) with the steps of
/// one transaction; the caller commits only on [`CompleteOutcome::Completed`].
///
/// # Errors
/// Store failures.
pub async fn complete_challenge<S: FactorSteps>(
    steps: &mut S,
    id: Uuid,
    factor: &SpentFactor,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> StoreResult<CompleteOutcome> {
    let Some(challenge) = steps.consume_challenge(id, max_attempts, now).await? else {
        return Ok(CompleteOutcome::ChallengeGone);
    };
    if !spend(steps, challenge.user_id, factor, Some(&challenge), now).await? {
        return Ok(CompleteOutcome::FactorRejected);
    }
    // A known device is exempt from the account lock (its own lock was checked when the first
    // step remembered it); for any other client the lock applies to the second step as to a
    // password, and checking it here, in the transaction, is what a lock set meanwhile needs.
    if !challenge.known_device && !steps.clear_failures(challenge.user_id, now).await? {
        return Ok(CompleteOutcome::AccountLocked);
    }
    Ok(CompleteOutcome::Completed)
}

/// Spends a factor outside a sign-in (see [`crate::store::MfaStore::spend_factor`]) with the
/// steps of one transaction; the caller commits only when it returns true.
///
/// # Errors
/// Store failures.
pub async fn reauthenticate<S: FactorSteps>(
    steps: &mut S,
    user_id: UserId,
    factor: &SpentFactor,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    spend(steps, user_id, factor, None, now).await
}

async fn spend<S: FactorSteps>(
    steps: &mut S,
    user_id: UserId,
    factor: &SpentFactor,
    challenge: Option<&MfaChallenge>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    match factor {
        SpentFactor::TotpStep(step) => steps.spend_totp_step(user_id, *step, now).await,
        SpentFactor::BackupCode(code_hash) => {
            steps.spend_backup_code(user_id, code_hash, now).await
        }
        // An emailed code belongs to its challenge: it never re-authenticates.
        SpentFactor::EmailCode(code_hash) => {
            Ok(challenge.is_some_and(|c| c.email_code_accepts(code_hash, now)))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_refused_code_names_the_first_reason_that_holds() {
        assert_eq!(
            EmailCodeOutcome::refusal(None, 3),
            EmailCodeOutcome::ChallengeGone
        );
        assert_eq!(
            EmailCodeOutcome::refusal(Some(3), 3),
            EmailCodeOutcome::LimitReached
        );
        assert_eq!(
            EmailCodeOutcome::refusal(Some(1), 3),
            EmailCodeOutcome::TooSoon
        );
    }

    #[test]
    fn an_emailed_code_is_accepted_only_while_current_and_unexpired() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let challenge = MfaChallenge {
            id: Uuid::nil(),
            user_id: Uuid::nil(),
            credential_epoch: 0,
            client_hash: String::new(),
            device_hash: None,
            known_device: false,
            methods: vec![Method::Email],
            amr: vec!["pwd".to_owned()],
            failed_attempts: 0,
            email_code_hash: Some("h1".to_owned()),
            email_code_expires_at: Some(now + chrono::Duration::minutes(1)),
            email_codes_sent: 1,
            email_last_sent_at: Some(now),
            expires_at: now + chrono::Duration::minutes(5),
            created_at: now,
        };
        assert!(challenge.email_code_accepts("h1", now));
        assert!(!challenge.email_code_accepts("h2", now));
        assert!(!challenge.email_code_accepts("h1", now + chrono::Duration::minutes(1)));
        let none = MfaChallenge {
            email_code_hash: None,
            ..challenge
        };
        assert!(!none.email_code_accepts("h1", now));
    }

    #[test]
    fn methods_are_stored_as_a_json_array_of_names() {
        let stored = encode_methods(&[Method::Totp, Method::BackupCode, Method::Email]);
        assert_eq!(stored, r#"["totp","backup_code","email"]"#);
        let names = decode_names(&stored);
        assert_eq!(
            names
                .iter()
                .filter_map(|n| Method::parse(n))
                .collect::<Vec<_>>(),
            [Method::Totp, Method::BackupCode, Method::Email]
        );
        assert!(decode_names("not json").is_empty());
    }
}
