//! Address confirmation at registration (issue 14; seeds 000 and 003), and of a new address
//! (issue 15).
//!
//! Registration mails a link `EMAIL_BASE_URL/ui/verify-email?token=…`. The page it opens asks
//! for a click — a form post with a CSRF token, because mail scanners follow links and a `GET`
//! must change nothing — which calls [`EmailConfirmation::confirm`], as
//! `POST /api/auth/verify-email` does. The token is 24 CSPRNG bytes in base64url (32
//! characters), stored only as its SHA-256, valid 24 hours and single use; a new link spends
//! the older ones. It confirms the address it was mailed to, and only while that is still the
//! account's address. A *change* link, mailed to a new address an account holder (or an
//! administrator) asked for (`flows::email_change`), goes through the same table, route and
//! page, and makes that address the account's when used; its token is hashed under a label of
//! its own ([`change_token_hash`]), so neither kind can be used as the other.
//!
//! [`EmailConfirmation::resend`] answers the same way, at the same speed, for an unknown
//! address, a confirmed account and one waiting for its link: it validates the format and hands
//! the rest to a background task, as `forgot_password` does. At most three links go to one
//! account per hour, registration's included, so nobody can flood a mailbox with them.
//!
//! With `REQUIRE_VERIFIED_EMAIL`, sign-in refuses an unconfirmed account only once its password
//! was found correct ([`Auth::ensure_email_confirmed`]): to anyone without the password the
//! account looks like any other.
//!
//! A service of its own rather than more of [`Auth`]: it needs only the store, the clock, the
//! mail outbox and its settings.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Clock;
use crate::crypto::{random_token, token_hash};
use crate::domain::audit::{NewAuditEvent, Outcome, kind};
use crate::domain::email_confirmation::NewEmailConfirmation;
use crate::domain::{Email, EmailPolicy, User};
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::flows::login::looks_like_token;
use crate::mail::{MailKind, Outbox};
use crate::service::{Auth, in_background};
use crate::store::{Store, StoreError};

/// Confirmation tokens are 24 random bytes, base64url: 32 characters.
pub const CONFIRMATION_TOKEN_LEN: usize = 32;
/// How long a link works, in hours (confirmation and change links alike).
pub const LINK_TTL_HOURS: i64 = 24;
/// Most links (of either kind) one account is mailed per [`MAIL_WINDOW_HOURS`].
pub const MAIL_LIMIT: u32 = 3;
/// The sliding window of [`MAIL_LIMIT`], in hours.
pub const MAIL_WINDOW_HOURS: i64 = 1;

/// Whether `token` has the shape of a confirmation token (says nothing about its validity).
#[must_use]
pub fn confirmation_token_shaped(token: &str) -> bool {
    looks_like_token(token, CONFIRMATION_TOKEN_LEN)
}

/// Settings of [`EmailConfirmation`].
#[derive(Debug, Clone)]
pub struct ConfirmationSettings {
    /// Base of the link (`EMAIL_BASE_URL`), without a trailing slash.
    pub email_base_url: String,
    /// Product name shown in the mail.
    pub product_name: String,
    /// How long a link works.
    pub ttl: Duration,
    /// Most links per account within [`ConfirmationSettings::window`]; further requests are
    /// answered the same way but send nothing.
    pub mail_limit: u32,
    /// The sliding window of [`ConfirmationSettings::mail_limit`].
    pub window: Duration,
}

impl ConfirmationSettings {
    /// Links to `email_base_url`, valid 24 hours, at most three per account per hour.
    #[must_use]
    pub fn new(email_base_url: String, product_name: String) -> Self {
        Self {
            email_base_url,
            product_name,
            ttl: Duration::hours(LINK_TTL_HOURS),
            mail_limit: MAIL_LIMIT,
            window: Duration::hours(MAIL_WINDOW_HOURS),
        }
    }
}

/// The address-confirmation service.
pub struct EmailConfirmation {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
    settings: ConfirmationSettings,
    /// Bounds concurrent background resend work (look-up, token, mail) under a flood.
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for EmailConfirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfirmation")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EmailConfirmation {
    /// The service over `store`, queueing its mail in `outbox`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
        settings: ConfirmationSettings,
    ) -> Self {
        Self {
            store,
            clock,
            outbox,
            settings,
            slots: Arc::new(tokio::sync::Semaphore::new(16)),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    fn event(
        &self,
        event_type: &'static str,
        outcome: Outcome,
        user_id: Option<Uuid>,
        details: Value,
    ) -> NewAuditEvent {
        new_event(self.now(), event_type, outcome, user_id, None, details)
    }

    /// Appends an `email.confirmation_sent` event that stands alone (nothing changed).
    async fn record(&self, outcome: Outcome, user_id: Option<Uuid>, details: Value) {
        let event = self.event(kind::EMAIL_CONFIRMATION_SENT, outcome, user_id, details);
        self.append(event).await;
    }

    /// Appends an event that stands alone; a failure is only logged.
    async fn append(&self, event: NewAuditEvent) {
        match self.store.append_audit(&event).await {
            Ok(()) => committed(std::slice::from_ref(&event)),
            Err(e) => tracing::error!(error = %e, "audit event not recorded"),
        }
    }

    /// After a registration: mails the new account its link. A failure is logged and not
    /// returned: the account exists either way, and its holder can ask for another link.
    pub async fn registered(&self, user: &User) {
        if let Err(e) = self.send_link(user, "registration").await {
            tracing::error!(user_id = %user.id, error = %e, "address-confirmation link not queued");
        }
    }

    /// Mails `user` a new link (`reason`, for the audit log: `registration` or `resend`), unless
    /// the address is confirmed already, the account is disabled, or the per-account limit is
    /// reached. Returns whether a link was queued.
    ///
    /// # Errors
    /// On store failure.
    pub async fn send_link(&self, user: &User, reason: &'static str) -> Result<bool, Error> {
        if user.email_verified || !user.is_active {
            return Ok(false);
        }
        let now = self.now();
        let token = random_token::<24>();
        let sent = [self.event(
            kind::EMAIL_CONFIRMATION_SENT,
            Outcome::Success,
            Some(user.id),
            json!({"mail": "queued", "reason": reason}),
        )];
        let link = NewEmailConfirmation {
            token_hash: token_hash(&token),
            user_id: user.id,
            email: user.email.clone(),
            expires_at: now + self.settings.ttl,
            now,
        };
        let issued = self
            .store
            .issue_email_confirmation(
                &link,
                now - self.settings.window,
                self.settings.mail_limit,
                &sent,
            )
            .await?;
        if !issued {
            // The limit, or (rarely) the account changed since it was read.
            tracing::info!(user_id = %user.id, "address-confirmation mail suppressed: per-address limit reached");
            self.record(
                Outcome::Failure,
                Some(user.id),
                json!({"mail": "suppressed", "reason": "mail_limit"}),
            )
            .await;
            return Ok(false);
        }
        committed(&sent);
        let link = format!(
            "{}/ui/verify-email?token={token}",
            self.settings.email_base_url
        );
        let kind = MailKind::EmailConfirmation { link: &link };
        self.outbox
            .queue_for(user, kind, &self.settings.product_name)
            .await?;
        tracing::info!(user_id = %user.id, "address-confirmation link queued");
        Ok(true)
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &ConfirmationSettings {
        &self.settings
    }

    /// Asks for a new link for `email`. Returns once the address is validated; the look-up,
    /// token and mail happen in the background, so the answer is the same, and as fast, for an
    /// unknown address, a confirmed account and one waiting for its link.
    ///
    /// # Errors
    /// `Validation` (`invalid_email`) for a malformed address only.
    pub fn resend(self: &Arc<Self>, email: &str) -> Result<(), Error> {
        // EMAIL_ALLOW_UNICODE governs new addresses; an account may predate it being off.
        let email = Email::parse(
            email,
            EmailPolicy {
                allow_unicode: true,
            },
        )?;
        let this = Arc::clone(self);
        in_background(
            &self.slots,
            "address-confirmation resend failed",
            async move { this.resend_now(&email).await },
        );
        Ok(())
    }

    /// The work behind [`EmailConfirmation::resend`], awaited directly (tests).
    ///
    /// # Errors
    /// On store failure.
    pub async fn resend_now(&self, email: &Email) -> Result<(), Error> {
        let user = self
            .store
            .user_by_email(email.as_str())
            .await?
            .filter(|u| u.is_active);
        let (user_id, reason) = match user {
            Some(u) if !u.email_verified => {
                self.send_link(&u, "resend").await?;
                return Ok(());
            }
            Some(u) => (Some(u.id), "already_confirmed"),
            None => (None, "unknown_address"),
        };
        self.record(
            Outcome::Failure,
            user_id,
            json!({"mail": "suppressed", "reason": reason}),
        )
        .await;
        Ok(())
    }

    /// Uses a link, spending its token: a confirmation link marks the address it was mailed
    /// to confirmed (while that is still the account's address); a change link (see
    /// [`crate::flows::email_change`]) makes the new address it was mailed to the account's,
    /// confirmed. Returns the account as it is now.
    ///
    /// # Errors
    /// `InvalidConfirmationToken` (malformed, unknown, expired, spent, or the account changed
    /// meanwhile; nothing changes); `Conflict { field: "email" }` when the new address of a
    /// change was taken by another account since it was asked for (nothing changes: the link
    /// works again if the address becomes free before it expires); store failures.
    pub async fn confirm(&self, token: &str) -> Result<User, Error> {
        let token = token.trim();
        if !confirmation_token_shaped(token) {
            return Err(Error::InvalidConfirmationToken);
        }
        let now = self.now();
        let hash = token_hash(token);
        if let Some(owner) = self.store.confirmation_token_owner(&hash, now).await? {
            return self.confirm_address(&hash, owner, now).await;
        }
        let hash = change_token_hash(token);
        match self.store.confirmation_token_owner(&hash, now).await? {
            Some(owner) => self.change_address(&hash, owner, now).await,
            None => Err(Error::InvalidConfirmationToken),
        }
    }

    async fn confirm_address(
        &self,
        hash: &str,
        owner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<User, Error> {
        let confirmed = [self.event(
            kind::EMAIL_CONFIRMED,
            Outcome::Success,
            Some(owner),
            json!({}),
        )];
        if !self
            .store
            .confirm_email(hash, owner, now, &confirmed)
            .await?
        {
            return Err(Error::InvalidConfirmationToken);
        }
        committed(&confirmed);
        tracing::info!(user_id = %owner, "email address confirmed");
        self.store
            .user_by_id(owner)
            .await?
            .ok_or(Error::InvalidConfirmationToken)
    }

    async fn change_address(
        &self,
        hash: &str,
        owner: Uuid,
        now: DateTime<Utc>,
    ) -> Result<User, Error> {
        let user = self
            .store
            .user_by_id(owner)
            .await?
            .ok_or(Error::InvalidConfirmationToken)?;
        let changed = [self.event(
            kind::EMAIL_CHANGED,
            Outcome::Success,
            Some(owner),
            json!({}),
        )];
        match self
            .store
            .confirm_email_change(hash, owner, &user.email, now, &changed)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(Error::InvalidConfirmationToken),
            Err(StoreError::Conflict { .. }) => {
                let refused = self.event(
                    kind::EMAIL_CHANGED,
                    Outcome::Failure,
                    Some(owner),
                    json!({"reason": "email_taken"}),
                );
                self.append(refused).await;
                return Err(Error::Conflict { field: "email" });
            }
            Err(e) => return Err(e.into()),
        }
        committed(&changed);
        tracing::info!(user_id = %owner, "email address changed");
        self.store
            .user_by_id(owner)
            .await?
            .ok_or(Error::InvalidConfirmationToken)
    }
}

/// The stored hash of a *change* link's token (see [`crate::flows::email_change`]): the
/// SHA-256 of the token under a label of its own, where a confirmation link's is the token's
/// plain SHA-256. The kind of a link is thereby bound to its token: looking a token up as a
/// confirmation never finds a change, and the other way round, although both kinds share one
/// table (and its per-account limit).
#[must_use]
pub(crate) fn change_token_hash(token: &str) -> String {
    token_hash(&format!("porteiro-email-change:{token}"))
}

impl Auth {
    /// With `REQUIRE_VERIFIED_EMAIL`, refuses an account whose address is unconfirmed. Sign-in
    /// calls it only once the password was found correct and the account active, so the refusal
    /// tells nothing to anyone without the password.
    ///
    /// # Errors
    /// `EmailNotVerified`.
    pub(crate) async fn ensure_email_confirmed(&self, user: &User) -> Result<(), Error> {
        if !self.config.require_verified_email || user.email_verified {
            return Ok(());
        }
        self.record(
            kind::SIGN_IN_FAILED,
            Outcome::Failure,
            Some(user.id),
            None,
            json!({"reason": "email_not_verified"}),
        )
        .await;
        Err(Error::EmailNotVerified)
    }
}
