//! Password recovery by email link (seed 002 `/forgot-password`, `/reset-password`).
//!
//! `forgot_password` answers the same way, at the same speed, whether or not the address belongs
//! to an account: after validating the format it hands the rest to a background task. The token is
//! 24 CSPRNG bytes in base64url (32 characters), stored only as a SHA-256 hash, valid 30 minutes,
//! single use; a new request replaces older tokens. At most three mails go to one address per 15
//! minutes (no mail bombing); further requests get the same answer and send nothing. A completed
//! reset revokes every session.
//!
//! The address may also be a **verified recovery address** of an account
//! ([`crate::flows::recovery_emails`]): the link then goes to that address only (the one typed,
//! not the account's own). An unverified recovery address is treated as unknown. Every request
//! takes the same path whatever the address is — the answer is given once the format is checked,
//! and the background work makes the same two look-ups (account address, verified recovery
//! address) for an account's address, a verified recovery address, an unverified one and an
//! unknown one — so neither the answer nor its timing tells them apart.

use crate::domain::password::PolicyContext;
use std::sync::Arc;

use secrecy::SecretString;

use serde_json::json;

use crate::crypto::{random_token, token_hash};
use crate::domain::audit::{Outcome, kind};
use crate::domain::{Email, EmailPolicy};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::flows::login::looks_like_token;
use crate::mail::MailKind;
use crate::service::Auth;

/// Reset tokens are 24 random bytes, base64url: 32 characters.
pub const RESET_TOKEN_LEN: usize = 32;

/// Whether `token` has the shape of a reset token (says nothing about its validity).
#[must_use]
pub fn reset_token_shaped(token: &str) -> bool {
    looks_like_token(token, RESET_TOKEN_LEN)
}

impl Auth {
    /// Starts recovery for `email`. Returns once the address is validated; the look-up, token and
    /// mail happen in the background so the response does not depend on the account existing.
    ///
    /// # Errors
    /// `Validation` (`invalid_email`) for a malformed address only.
    pub fn forgot_password(self: &Arc<Self>, email: &str) -> Result<(), Error> {
        // EMAIL_ALLOW_UNICODE governs new addresses; an account may predate it being off.
        let email = Email::parse(
            email,
            EmailPolicy {
                allow_unicode: true,
            },
        )?;
        let this = Arc::clone(self);
        crate::service::in_background(
            &self.recovery_slots,
            "password recovery could not be started",
            async move { this.send_reset_link(&email).await },
        );
        Ok(())
    }

    /// The work behind [`Auth::forgot_password`], awaited directly (CLI and tests).
    ///
    /// # Errors
    /// On store failure.
    pub async fn send_reset_link(&self, email: &Email) -> Result<(), Error> {
        // Both look-ups always run, so every kind of address takes the same path.
        let (primary, recovery) = futures::join!(
            self.store.user_by_email(email.as_str()),
            self.store.verified_recovery_email_owner(email.as_str()),
        );
        let (user, to) = match (primary?, recovery?) {
            (Some(user), _) => (Some(user), None),
            (None, Some(owner)) => (self.store.user_by_id(owner).await?, Some(email.as_str())),
            (None, None) => (None, None),
        };
        let Some(user) = user.filter(|u| u.is_active) else {
            self.record(
                kind::PASSWORD_RESET_REQUESTED,
                Outcome::Failure,
                None,
                None,
                json!({"reason": "unknown_address"}),
            )
            .await;
            return Ok(());
        };
        self.issue_reset_link_to(&user, None, to).await?;
        Ok(())
    }

    /// Stores a reset token for `user` and mails the link, unless the account's limit of
    /// reset mails is reached (then the refusal is recorded and nothing is mailed). `actor`:
    /// an administrator sending it on the account's behalf. Returns whether a link was queued.
    ///
    /// # Errors
    /// On store failure.
    pub(crate) async fn issue_reset_link(
        &self,
        user: &crate::domain::User,
        actor: Option<&crate::service::Principal>,
    ) -> Result<bool, Error> {
        self.issue_reset_link_to(user, actor, None).await
    }

    /// [`Auth::issue_reset_link`], mailed to `to` (a verified recovery address of `user`) when
    /// given instead of the account's own address.
    ///
    /// # Errors
    /// On store failure.
    async fn issue_reset_link_to(
        &self,
        user: &crate::domain::User,
        actor: Option<&crate::service::Principal>,
        to: Option<&str>,
    ) -> Result<bool, Error> {
        let now = self.now();
        let token = random_token::<24>();
        let by = if actor.is_some() { "admin" } else { "self" };
        let mut details = json!({"mail": "queued"});
        if actor.is_some() {
            details["by"] = json!(by);
        }
        if to.is_some() {
            details["via"] = json!("recovery_email");
        }
        let requested = [self.event(
            kind::PASSWORD_RESET_REQUESTED,
            Outcome::Success,
            Some(user.id),
            actor,
            details,
        )];
        let issued = self
            .store
            .replace_reset_token(
                user.id,
                &token_hash(&token),
                now + self.config.reset_ttl,
                now,
                now - self.config.recovery_window,
                self.config.recovery_mail_limit,
                &requested,
            )
            .await?;
        if !issued {
            tracing::info!(user_id = %user.id, "password reset mail suppressed: per-address limit reached");
            self.record(
                kind::PASSWORD_RESET_REQUESTED,
                Outcome::Failure,
                Some(user.id),
                actor,
                json!({"mail": "suppressed", "reason": "mail_limit"}),
            )
            .await;
            return Ok(false);
        }
        committed(&requested);
        let link = format!(
            "{}/ui/reset-password?token={token}",
            self.config.email_base_url
        );
        let kind = MailKind::PasswordReset { link: &link };
        match to {
            Some(to) => {
                let locale = crate::mail::Locale::negotiate(&user.locale);
                let message = crate::mail::render(kind, locale, to, &self.config.product_name)?;
                self.outbox.queue(&message).await?;
            }
            None => {
                self.outbox
                    .queue_for(user, kind, &self.config.product_name)
                    .await?;
            }
        }
        tracing::info!(user_id = %user.id, by, "password reset link queued");
        Ok(true)
    }

    /// The active account of a live reset token (for the reset page), without spending it.
    ///
    /// # Errors
    /// On store failure.
    pub async fn reset_token_user(
        &self,
        token: &str,
    ) -> Result<Option<crate::domain::User>, Error> {
        let token = token.trim();
        if !looks_like_token(token, RESET_TOKEN_LEN) {
            return Ok(None);
        }
        let Some(owner) = self
            .store
            .reset_token_owner(&token_hash(token), self.now())
            .await?
        else {
            return Ok(None);
        };
        Ok(self.store.user_by_id(owner).await?.filter(|u| u.is_active))
    }

    /// Completes a reset. `email`, when given (compact API), must be the token owner's address
    /// or one of its verified recovery addresses. An
    /// account with security questions (see [`crate::flows::security_questions`]) also needs
    /// `proof`, a recovery proof of the same account: both are spent in one transaction, and
    /// without it the token stays usable.
    ///
    /// # Errors
    /// `InvalidResetToken`, `RecoveryProofRequired`, `InvalidRecoveryProof`, `WeakPassword`,
    /// `Overloaded`.
    pub async fn reset_password(
        &self,
        token: &str,
        email: Option<&str>,
        password: &SecretString,
        proof: Option<&str>,
    ) -> Result<(), Error> {
        let token = token.trim();
        if !looks_like_token(token, RESET_TOKEN_LEN) {
            return Err(Error::InvalidResetToken);
        }
        let hash = token_hash(token);
        let owner = self
            .store
            .reset_token_owner(&hash, self.now())
            .await?
            .ok_or(Error::InvalidResetToken)?;
        let user = self
            .store
            .user_by_id(owner)
            .await?
            .filter(|u| u.is_active)
            .ok_or(Error::InvalidResetToken)?;
        if let Some(email) = email {
            let email = Email::lookup_key(email);
            // The link may have gone to a verified recovery address of the account instead.
            if !crate::crypto::ct_eq(email.as_bytes(), user.email.as_bytes())
                && self.store.verified_recovery_email_owner(&email).await? != Some(owner)
            {
                return Err(Error::InvalidResetToken);
            }
        }
        let proof = proof.map(str::trim).filter(|p| !p.is_empty());
        let proof_hash = match proof {
            Some(proof) => {
                let proof_hash = token_hash(proof);
                let proved = looks_like_token(proof, crate::domain::security_question::PROOF_LEN)
                    && self
                        .store
                        .recovery_proof_owner(&proof_hash, self.now())
                        .await?
                        == Some(owner);
                if !proved {
                    return Err(Error::InvalidRecoveryProof);
                }
                Some(proof_hash)
            }
            None => {
                let answered = self.store.stored_answers(owner).await?.len();
                if answered >= crate::domain::security_question::MIN_ANSWERS {
                    self.record(
                        kind::PASSWORD_RESET_COMPLETED,
                        Outcome::Failure,
                        Some(owner),
                        None,
                        json!({"reason": "recovery_proof_required"}),
                    )
                    .await;
                    return Err(Error::RecoveryProofRequired);
                }
                None
            }
        };
        self.check_password_policy(password, PolicyContext::for_user(&user))?;
        let new_hash = self.hasher.hash(password).await?;
        let completed = [self.event(
            kind::PASSWORD_RESET_COMPLETED,
            Outcome::Success,
            Some(owner),
            None,
            if proof_hash.is_some() {
                json!({"recovery_proof": true})
            } else {
                json!({})
            },
        )];
        let revoked = match &proof_hash {
            Some(proof_hash) => {
                self.store
                    .complete_reset_with_proof(
                        &hash,
                        proof_hash,
                        owner,
                        &new_hash,
                        self.now(),
                        &completed,
                    )
                    .await?
            }
            None => {
                self.store
                    .complete_reset(&hash, owner, &new_hash, self.now(), &completed)
                    .await?
            }
        }
        .ok_or(Error::InvalidResetToken)?;
        self.store.forget_devices(owner).await?;
        self.profile_changed(owner).await;
        self.sessions_revoked(&revoked).await;
        tracing::info!(user_id = %owner, revoked_sessions = revoked.len(), "password reset completed");
        committed(&completed);
        self.notify_password_changed(&user).await;
        Ok(())
    }

    pub(crate) async fn notify_password_changed(&self, user: &crate::domain::User) {
        let queued = self
            .outbox
            .queue_for(user, MailKind::PasswordChanged, &self.config.product_name)
            .await;
        if let Err(e) = queued {
            tracing::warn!(user_id = %user.id, error = %e, "password-change notice not queued");
        }
    }
}
