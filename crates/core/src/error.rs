//! The domain error: outcomes a caller must handle, not implementation details.
//!
//! Each variant is a *domain outcome*. The web layer maps them to HTTP in exactly one place
//! (`porteiro_web::error`). Unknown user and wrong password are the same variant on purpose.

use crate::domain::password::PasswordIssue;
use crate::store::StoreError;

/// Result alias for the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A field-level validation failure with a stable machine code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field at fault (`email`, `username`, ...).
    pub field: &'static str,
    /// Stable snake_case code (`invalid_email`, `invalid_username`, ...).
    pub code: &'static str,
    /// Human-readable explanation, in English.
    pub message: String,
}

/// Everything that can go wrong in a flow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown identifier, wrong password, locked or disabled account: indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The credential verified for a sign-in stopped being current before its session was
    /// created (changed, reset, disabled or all sessions revoked meanwhile). Answered like
    /// [`Error::InvalidCredentials`].
    #[error("credential changed during sign-in")]
    CredentialChanged,
    /// The current password given to confirm a change is wrong.
    #[error("current password is incorrect")]
    IncorrectPassword,
    /// Password was right but the account is disabled by an administrator.
    #[error("account disabled")]
    AccountDisabled,
    /// A bearer access token is missing, malformed, expired, revoked or not ours.
    #[error("invalid or expired access token")]
    InvalidAccessToken,
    /// A refresh token is unknown, expired, spent or revoked.
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    /// A password-reset token is unknown, expired, spent or for someone else.
    #[error("invalid or expired reset token")]
    InvalidResetToken,
    /// For an account with security questions, a password reset needs a recovery proof as well
    /// as the emailed token; none was given. The token stays usable.
    #[error("a recovery proof is required")]
    RecoveryProofRequired,
    /// A recovery proof is malformed, unknown, expired, spent or for another account.
    #[error("invalid or expired recovery proof")]
    InvalidRecoveryProof,
    /// Security answers are wrong, incomplete, for other questions, or question-based recovery
    /// is locked: indistinguishable.
    #[error("invalid answers")]
    InvalidAnswers,
    /// Right password, but the account's address is unconfirmed and `REQUIRE_VERIFIED_EMAIL`
    /// is on. Only ever answered after a correct password.
    #[error("email address not confirmed")]
    EmailNotVerified,
    /// An address-confirmation token is malformed, unknown, expired, spent, or for an address
    /// the account no longer has.
    #[error("invalid or expired confirmation token")]
    InvalidConfirmationToken,
    /// An `mfa_token` is unknown, expired, spent, dead after too many wrong codes, or presented
    /// by another client.
    #[error("invalid or expired mfa_token")]
    InvalidMfaToken,
    /// A second-step or re-authentication code is wrong, expired or already used.
    #[error("invalid code")]
    InvalidCode,
    /// A code confirming a change to the account's factors (enable, disable, new backup codes)
    /// is wrong or already used.
    #[error("incorrect code")]
    IncorrectCode,
    /// The compact API's sign-in needs a second factor (`otp`) for this account.
    #[error("a second factor is required")]
    MfaRequired,
    /// The account's two-factor state does not allow this (`code`: `mfa_already_enabled`,
    /// `mfa_not_enabled`, `mfa_setup_required`, `mfa_method_not_allowed`, `reauthentication_required`).
    #[error("{message}")]
    MfaState {
        /// Stable snake_case code.
        code: &'static str,
        /// Human-readable explanation, in English.
        message: &'static str,
    },
    /// Too many requests of this kind for this object; retry after the given seconds.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// Input failed validation.
    #[error("{}", .0.message)]
    Validation(FieldError),
    /// The new password does not meet the policy.
    #[error("password does not meet the policy")]
    WeakPassword(Vec<PasswordIssue>),
    /// A unique field is already taken.
    #[error("{field} is already taken")]
    Conflict {
        /// `username` or `email`.
        field: &'static str,
    },
    /// The data's rules refuse the change (`last_admin`, `builtin_protected`); nothing changed.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// The caller is authenticated but not allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// The target does not exist (or is not visible to the caller).
    #[error("not found")]
    NotFound,
    /// The password-hashing pool is saturated; retry shortly.
    #[error("server busy")]
    Overloaded,
    /// An encrypted value could not be decrypted (altered, moved to another row, or its data
    /// key destroyed). Logged at warn with the record; answered as a detail-free `500`
    /// `data_unreadable`.
    #[error("encrypted data could not be read")]
    DataUnreadable,
    /// Anything unexpected. Details are logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// Shorthand for a validation error.
    #[must_use]
    pub fn validation(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(FieldError {
            field,
            code,
            message: message.into(),
        })
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict { field } => Self::Conflict { field },
            StoreError::Refused(code) => Self::Refused(code),
            StoreError::Backend(e) => Self::Internal(e),
        }
    }
}
