//! Multi-factor sign-in: authenticator-app credentials, backup codes and the second step of a
//! sign-in (the *challenge* an `mfa_token` names).
//!
//! A sign-in that needs a second step does not open a session: it stores a challenge that
//! remembers what the first step proved (the account, its credential epoch, the client, the
//! methods already used) and hands the client an opaque `mfa_token`. The second step spends the
//! challenge and a factor together, atomically, and only then is the session opened. Every
//! method (an authenticator code, a backup code, an emailed code, later a passkey) is one more
//! [`Method`] and one more [`SpentFactor`]; the state machine stays the same.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::user::UserId;

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

/// An account's authenticator-app credential as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCredential {
    /// The account.
    pub user_id: UserId,
    /// The shared secret, sealed under the master key with [`totp_secret_context`].
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

/// The associated data a TOTP secret is sealed with: a sealed secret moved to another account
/// does not open.
#[must_use]
pub fn totp_secret_context(user_id: UserId) -> Vec<u8> {
    format!("totp-secret:{user_id}").into_bytes()
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
