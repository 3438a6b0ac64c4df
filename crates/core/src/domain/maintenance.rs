//! Maintenance jobs: what each one removes, decided here once for both backends.
//!
//! A row goes only when nothing can use it any more, and nothing still counts it:
//!
//! - **Tokens** ([`Job::Tokens`]): refresh tokens that were never spent and have expired (they
//!   can no longer be redeemed); every refresh token of a session that ended before
//!   [`Cutoffs::sessions_ended_before`]; password-reset tokens that are expired or spent *and*
//!   were issued before the issuance window ([`Cutoffs::resets_issued_before`]), because the
//!   limit of three links per window counts the rows of the window, spent or not.
//!   A *spent* refresh token of a session that is still alive is kept, whatever its own expiry:
//!   it is what recognises a replay of a stolen token (reuse detection revokes the session), and
//!   the legitimate client presenting its old token after a thief rotated first is exactly the
//!   case that must end the thief's session.
//! - **Verification codes** ([`Job::VerificationCodes`]): address-confirmation links that are
//!   expired or spent and were issued before their issuance window
//!   ([`Cutoffs::confirmations_issued_before`]), and recovery-address links by the same rule
//!   (their issuance limits use the same one-hour window); second-step challenges (with their
//!   emailed code) that expired, were completed, or died after [`Cutoffs::mfa_max_attempts`] wrong
//!   codes; "this wasn't me" links past their week; recovery proofs (from answered security
//!   questions) that expired or were spent with a reset (no limit counts them).
//! - **Sessions** ([`Job::Sessions`]): sessions revoked or expired before
//!   [`Cutoffs::sessions_ended_before`], with their refresh tokens. The service sets that to one
//!   refresh lifetime ago (see `flows::maintenance`): for that long a replayed refresh token of an
//!   ended session is still recognised as reuse (an audit event and a webhook, a sign of theft)
//!   instead of being merely unknown, and an administrator can still see how it ended. Nothing
//!   else needs an ended session: devices list live sessions only, and the audit log keeps its
//!   own copy of what happened (no foreign key).

use chrono::{DateTime, Utc};

/// One maintenance job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Dead refresh and password-reset tokens.
    Tokens,
    /// Dead address-confirmation links, second-step challenges, "this wasn't me" links and
    /// recovery proofs.
    VerificationCodes,
    /// Sessions that ended long enough ago.
    Sessions,
}

impl Job {
    /// Every job, in the order a scheduled round runs them.
    pub const ALL: [Job; 3] = [Job::Tokens, Job::VerificationCodes, Job::Sessions];

    /// The job's name in audit details and logs (`tokens`, `verification_codes`, `sessions`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::VerificationCodes => "verification_codes",
            Self::Sessions => "sessions",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cut-off times of one run, from the clock and the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// The run's time: what expired at or before it is expired.
    pub now: DateTime<Utc>,
    /// Spent or expired reset tokens issued before this no longer count towards the issuance
    /// limit (now minus the recovery window).
    pub resets_issued_before: DateTime<Utc>,
    /// The same for address-confirmation links (now minus their window).
    pub confirmations_issued_before: DateTime<Utc>,
    /// Sessions revoked or expired before this go, with their refresh tokens.
    pub sessions_ended_before: DateTime<Utc>,
    /// Wrong codes that end a second step.
    pub mfa_max_attempts: i32,
}

/// Makes the audit events of a run from the number of rows it removed; the store writes them
/// with the run's last batch. A scheduled run makes none.
pub type RunEvents<'a> = &'a (dyn Fn(u64) -> Vec<crate::domain::NewAuditEvent> + Send + Sync);
