//! Recovery addresses (seed 004 `/api/auth/recovery-emails`, issue 16).
//!
//! An account may add up to [`MAX_RECOVERY_EMAILS`] further addresses. Each is verified through
//! a link mailed to it, `EMAIL_BASE_URL/ui/recovery-email?token=…`, whose page — like the
//! registration's confirmation page ([`crate::flows::email_confirmation`]) — asks for a click: a
//! form post with a CSRF token, because mail scanners follow links and a `GET` must change
//! nothing. `POST /api/auth/recovery-emails/verify` takes the same token. The token is 24 CSPRNG
//! bytes in base64url (32 characters), stored only as a SHA-256 under a label of its own (so it
//! is never taken for another kind of token), valid 24 hours and single use; a new one spends the
//! older ones of its address. At most three links go to one address, and ten to one account's
//! addresses together, per hour. Once verified, the address can receive the account's
//! password-reset links (`forgot-password` with that address: see [`crate::flows::recovery`]).
//!
//! **Other accounts' addresses stay private.** An address that another account has as its own
//! address or as a verified recovery address is answered exactly as any other: it is added,
//! unverified, a token is stored (so the limits count it alike), the account's own address gets
//! its notice, and the account's own audit events are the same. Only the mail to the address
//! itself differs, which the requester reads only if the mailbox is theirs: it says the address
//! is in use instead of carrying a link, and the token is never mailed — nor could it be used:
//! verification checks again, and the unique index on verified addresses settles races. A
//! verification that finds the address taken answers like a spent link.
//!
//! The account's own address gets a notice whenever a recovery address is added, verified or
//! removed: whoever holds a stolen access token cannot quietly add a way to reset the password.
//!
//! A service of its own rather than more of [`crate::Auth`]: it needs only the store, the clock,
//! the mail outbox and its settings.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::crypto::{random_token, token_hash};
use crate::domain::audit::{NewAuditEvent, Outcome, kind};
use crate::domain::recovery_email::{
    AddOutcome, IssueLimits, IssueOutcome, MAX_RECOVERY_EMAILS, NewRecoveryEmail,
    NewRecoveryEmailToken, RecoveryEmail, VerifyOutcome,
};
use crate::domain::{Email, EmailPolicy, User};
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::flows::login::looks_like_token;
use crate::mail::{Locale, MailKind, Outbox, render};
use crate::service::Principal;
use crate::store::Store;

/// Verification tokens are 24 random bytes, base64url: 32 characters.
pub const VERIFICATION_TOKEN_LEN: usize = 32;
/// How long a link works, in hours.
pub const LINK_TTL_HOURS: i64 = 24;
/// Most links one address is mailed per [`MAIL_WINDOW_HOURS`].
pub const MAIL_LIMIT_PER_ADDRESS: u32 = 3;
/// Most links one account's addresses are mailed together per [`MAIL_WINDOW_HOURS`].
pub const MAIL_LIMIT_PER_ACCOUNT: u32 = 10;
/// The sliding window of the mail limits, in hours (the maintenance job keeps spent links for
/// as long: they count).
pub const MAIL_WINDOW_HOURS: i64 = 1;
/// The hosted page the link opens.
pub const VERIFY_PAGE: &str = "/ui/recovery-email";

/// Whether `token` has the shape of a verification token (says nothing about its validity).
#[must_use]
pub fn verification_token_shaped(token: &str) -> bool {
    looks_like_token(token, VERIFICATION_TOKEN_LEN)
}

/// The stored hash of a verification token: its SHA-256 under a label of its own.
fn stored_hash(token: &str) -> String {
    token_hash(&format!("porteiro-recovery-email:{token}"))
}

/// Settings of [`RecoveryEmails`].
#[derive(Debug, Clone)]
pub struct RecoveryEmailSettings {
    /// Base of the link (`EMAIL_BASE_URL`), without a trailing slash.
    pub email_base_url: String,
    /// Product name shown in the mail.
    pub product_name: String,
    /// What new addresses may contain (`EMAIL_ALLOW_UNICODE`).
    pub email_policy: EmailPolicy,
    /// How long a link works.
    pub ttl: Duration,
    /// Most addresses per account.
    pub max_addresses: u32,
    /// Most links per address within [`RecoveryEmailSettings::window`].
    pub mail_limit_per_address: u32,
    /// Most links per account within [`RecoveryEmailSettings::window`].
    pub mail_limit_per_account: u32,
    /// The sliding window of the mail limits.
    pub window: Duration,
}

impl RecoveryEmailSettings {
    /// Links to `email_base_url`, valid 24 hours, within the limits above.
    #[must_use]
    pub fn new(email_base_url: String, product_name: String, email_policy: EmailPolicy) -> Self {
        Self {
            email_base_url,
            product_name,
            email_policy,
            ttl: Duration::hours(LINK_TTL_HOURS),
            max_addresses: MAX_RECOVERY_EMAILS,
            mail_limit_per_address: MAIL_LIMIT_PER_ADDRESS,
            mail_limit_per_account: MAIL_LIMIT_PER_ACCOUNT,
            window: Duration::hours(MAIL_WINDOW_HOURS),
        }
    }
}

/// The recovery-address service.
pub struct RecoveryEmails {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
    settings: RecoveryEmailSettings,
}

impl std::fmt::Debug for RecoveryEmails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryEmails")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RecoveryEmails {
    /// The service over `store`, queueing its mail in `outbox`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
        settings: RecoveryEmailSettings,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            settings,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &RecoveryEmailSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    fn event(
        &self,
        event_type: &'static str,
        user_id: Uuid,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        new_event(
            self.now(),
            event_type,
            Outcome::Success,
            Some(user_id),
            None,
            details,
        )
    }

    fn limits(&self, now: DateTime<Utc>) -> IssueLimits {
        IssueLimits {
            window_start: now - self.settings.window,
            per_address: self.settings.mail_limit_per_address,
            per_account: self.settings.mail_limit_per_account,
        }
    }

    /// A fresh token: the one to mail, and what the store keeps.
    fn token(&self, now: DateTime<Utc>) -> (String, NewRecoveryEmailToken) {
        let token = random_token::<24>();
        let stored = NewRecoveryEmailToken {
            token_hash: stored_hash(&token),
            expires_at: now + self.settings.ttl,
            now,
        };
        (token, stored)
    }

    async fn account(&self, p: &Principal) -> Result<User, Error> {
        self.store
            .user_by_id(p.user_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(Error::InvalidAccessToken)
    }

    /// The caller's recovery addresses, oldest first.
    ///
    /// # Errors
    /// On store failure.
    pub async fn list(&self, p: &Principal) -> Result<Vec<RecoveryEmail>, Error> {
        Ok(self.store.recovery_emails(p.user_id, self.now()).await?)
    }

    /// Adds `email` to the caller's recovery addresses, unverified, and mails it its link (see
    /// the module documentation for an address another account has).
    ///
    /// # Errors
    /// `Validation` (`invalid_email`; `recovery_email_is_primary` for the account's own
    /// address); `Refused("recovery_email_exists")`; `Refused("recovery_email_limit")` when the
    /// account has the most addresses already; `RateLimited`; store failures.
    pub async fn add(&self, p: &Principal, email: &str) -> Result<RecoveryEmail, Error> {
        let email = Email::parse(email, self.settings.email_policy)?;
        let user = self.account(p).await?;
        if email.as_str() == user.email {
            return Err(Error::validation(
                "email",
                "recovery_email_is_primary",
                "This is the account's own address: a recovery address must be another one.",
            ));
        }
        let taken = self
            .store
            .recovery_email_taken(user.id, email.as_str())
            .await?;
        let now = self.now();
        let (token, stored) = self.token(now);
        let id = Uuid::now_v7();
        let added = [self.event(
            kind::RECOVERY_EMAIL_ADDED,
            user.id,
            json!({"recovery_email_id": id}),
        )];
        let new = NewRecoveryEmail {
            id,
            user_id: user.id,
            email: email.as_str().to_owned(),
            token: stored,
        };
        let outcome = self
            .store
            .add_recovery_email(&new, self.settings.max_addresses, self.limits(now), &added)
            .await?;
        let address = match outcome {
            AddOutcome::Added(address) => address,
            AddOutcome::Duplicate => return Err(Error::Refused("recovery_email_exists")),
            AddOutcome::LimitReached => return Err(Error::Refused("recovery_email_limit")),
            AddOutcome::RateLimited => return Err(self.rate_limited()),
        };
        committed(&added);
        tracing::info!(user_id = %user.id, recovery_email_id = %id, "recovery address added");
        self.mail_link(&user, &address, &token, taken).await;
        self.notify(&user, MailKind::RecoveryEmailAdded).await;
        Ok(address)
    }

    fn rate_limited(&self) -> Error {
        Error::RateLimited {
            retry_after_secs: self.settings.window.num_seconds().unsigned_abs(),
        }
    }

    /// Mails a new link to the caller's unverified address `id`, spending its older links.
    ///
    /// # Errors
    /// `NotFound` (not the caller's); `Refused("recovery_email_verified")`; `RateLimited`;
    /// store failures.
    pub async fn resend(&self, p: &Principal, id: Uuid) -> Result<RecoveryEmail, Error> {
        let user = self.account(p).await?;
        let now = self.now();
        let (token, stored) = self.token(now);
        let outcome = self
            .store
            .issue_recovery_email_token(user.id, id, &stored, self.limits(now), &[])
            .await?;
        let address = match outcome {
            IssueOutcome::Issued(address) => address,
            IssueOutcome::NotFound => return Err(Error::NotFound),
            IssueOutcome::AlreadyVerified => return Err(Error::Refused("recovery_email_verified")),
            IssueOutcome::RateLimited => return Err(self.rate_limited()),
        };
        let taken = self
            .store
            .recovery_email_taken(user.id, &address.email)
            .await?;
        self.mail_link(&user, &address, &token, taken).await;
        tracing::info!(user_id = %user.id, recovery_email_id = %id, "recovery address link sent again");
        Ok(address)
    }

    /// Removes the caller's address `id` (verified or not) and its links.
    ///
    /// # Errors
    /// `NotFound` (not the caller's); store failures.
    pub async fn remove(&self, p: &Principal, id: Uuid) -> Result<(), Error> {
        let user = self.account(p).await?;
        let removed = [self.event(
            kind::RECOVERY_EMAIL_REMOVED,
            user.id,
            json!({"recovery_email_id": id}),
        )];
        let Some(gone) = self
            .store
            .delete_recovery_email(user.id, id, &removed)
            .await?
        else {
            return Err(Error::NotFound);
        };
        committed(&removed);
        tracing::info!(user_id = %user.id, recovery_email_id = %id, was_verified = gone.is_verified(), "recovery address removed");
        self.notify(&user, MailKind::RecoveryEmailRemoved).await;
        Ok(())
    }

    /// Verifies the address a mailed link was sent to, spending the token. `caller`: the
    /// signed-in account using `POST /api/auth/recovery-emails/verify`, whose address the token
    /// must be; the hosted page passes `None` (the mailbox may be read on another device, where
    /// nobody is signed in — the token alone proves it is read).
    ///
    /// # Errors
    /// `InvalidConfirmationToken` (malformed, unknown, expired, spent, another account's, for
    /// an address verified already, or for an address another account has: all alike; nothing
    /// changes); store failures.
    pub async fn verify(
        &self,
        token: &str,
        caller: Option<&Principal>,
    ) -> Result<RecoveryEmail, Error> {
        let token = token.trim();
        if !verification_token_shaped(token) {
            return Err(Error::InvalidConfirmationToken);
        }
        let now = self.now();
        let hash = stored_hash(token);
        let address = self
            .store
            .recovery_email_token_address(&hash, now)
            .await?
            .filter(|a| caller.is_none_or(|p| p.user_id == a.user_id))
            .ok_or(Error::InvalidConfirmationToken)?;
        let verified = [self.event(
            kind::RECOVERY_EMAIL_VERIFIED,
            address.user_id,
            json!({"recovery_email_id": address.id}),
        )];
        match self
            .store
            .verify_recovery_email(&hash, &address, now, &verified)
            .await?
        {
            VerifyOutcome::Verified(address) => {
                committed(&verified);
                tracing::info!(user_id = %address.user_id, recovery_email_id = %address.id, "recovery address verified");
                if let Some(user) = self.store.user_by_id(address.user_id).await? {
                    self.notify(&user, MailKind::RecoveryEmailVerified).await;
                }
                Ok(address)
            }
            VerifyOutcome::Taken => {
                tracing::info!(user_id = %address.user_id, recovery_email_id = %address.id, "recovery address not verified: another account has it");
                Err(Error::InvalidConfirmationToken)
            }
            VerifyOutcome::Invalid => Err(Error::InvalidConfirmationToken),
        }
    }

    /// Mails `address` its link, or, when another account has it (`taken`), a notice that it is
    /// in use (the token is then never mailed). A failure is logged: the address is stored
    /// either way, and a new link can be asked for.
    async fn mail_link(&self, user: &User, address: &RecoveryEmail, token: &str, taken: bool) {
        let link = format!(
            "{}{VERIFY_PAGE}?token={token}",
            self.settings.email_base_url
        );
        let kind = if taken {
            MailKind::RecoveryEmailInUse
        } else {
            MailKind::RecoveryEmailVerification { link: &link }
        };
        let locale = Locale::negotiate(&user.locale);
        let queued = match render(kind, locale, &address.email, &self.settings.product_name) {
            Ok(message) => self.outbox.queue(&message).await,
            Err(e) => Err(e),
        };
        if let Err(e) = queued {
            tracing::error!(user_id = %user.id, error = %e, "recovery address link not queued");
        }
    }

    /// Mails the account's own address a notice; a failure is only logged.
    async fn notify(&self, user: &User, kind: MailKind<'_>) {
        if let Err(e) = self
            .outbox
            .queue_for(user, kind, &self.settings.product_name)
            .await
        {
            tracing::warn!(user_id = %user.id, error = %e, "recovery address notice not queued");
        }
    }
}
