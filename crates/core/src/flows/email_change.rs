//! Changing an account's email address (issue 15): `PUT /api/users/{id}` with `email` (and,
//! for one's own account, the current `password`).
//!
//! The address does not change when asked: a link goes to the new address, through the same
//! token table and `POST /api/auth/verify-email` as the confirmation at registration
//! ([`crate::flows::email_confirmation`]), and a notice to the current one. Only the link, used,
//! makes the new address the account's (confirmed, since whoever used it reads that mailbox).
//! So a stolen access token cannot move an account to the thief's mailbox without the
//! password, and nobody can claim an address they do not read.
//!
//! **Addresses of other accounts stay private.** Registration already tells whether an address
//! has an account (unavoidably, and rate limited); this request must tell no more. Its answer is
//! the same whether or not another account has the new address, and so is everything the
//! requester can observe: a token is stored either way (so the per-account limit counts both
//! alike), the current address gets its notice either way, and the requester's own audit
//! events do not differ. What differs is only the mail to the new address, which the requester
//! reads only if it is theirs: a free address gets the link; a taken one gets a notice that
//! someone tried to use it (the token stored for it is never mailed, and could not be used:
//! the address is checked again when a link is used).

use secrecy::SecretString;
use serde_json::json;

use crate::crypto::random_token;
use crate::domain::audit::{Outcome, kind};
use crate::domain::email_confirmation::NewEmailConfirmation;
use crate::domain::{Email, User};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::flows::email_confirmation::{
    LINK_TTL_HOURS, MAIL_LIMIT, MAIL_WINDOW_HOURS, change_token_hash,
};
use crate::mail::{Locale, MailKind, render};
use crate::service::{Auth, Principal};

impl Auth {
    /// Asks for `user`'s address to become `new` (see the module documentation). The caller
    /// is `user` themselves, who must give their current password (checked like
    /// [`Auth::change_password`] checks it: failures count towards the lock), or someone
    /// allowed to manage `user` (no password). The permission checks are the caller's.
    ///
    /// # Errors
    /// `IncorrectPassword`; `Refused("account_disabled")` for a disabled account;
    /// `RateLimited` when the account was mailed [`MAIL_LIMIT`] links within the last
    /// [`MAIL_WINDOW_HOURS`]; store failures.
    pub(crate) async fn request_email_change(
        &self,
        principal: &Principal,
        user: &User,
        new: &Email,
        password: Option<&SecretString>,
    ) -> Result<(), Error> {
        let own = principal.user_id == user.id;
        if own {
            self.verify_current_password(user, password, kind::EMAIL_CHANGE_REQUESTED)
                .await?;
        }
        if !user.is_active {
            return Err(Error::Refused("account_disabled"));
        }
        let now = self.now();
        let token = random_token::<24>();
        let by = if own { "self" } else { "admin" };
        let requested = [self.event(
            kind::EMAIL_CHANGE_REQUESTED,
            Outcome::Success,
            Some(user.id),
            Some(principal),
            json!({"by": by}),
        )];
        let link = NewEmailConfirmation {
            token_hash: change_token_hash(&token),
            user_id: user.id,
            email: new.as_str().to_owned(),
            expires_at: now + chrono::Duration::hours(LINK_TTL_HOURS),
            now,
        };
        let window = chrono::Duration::hours(MAIL_WINDOW_HOURS);
        let issued = self
            .store
            .issue_email_change(&link, now - window, MAIL_LIMIT, &requested)
            .await?;
        if !issued {
            // The limit (or the account was disabled meanwhile): nothing was mailed.
            self.record(
                kind::EMAIL_CHANGE_REQUESTED,
                Outcome::Failure,
                Some(user.id),
                Some(principal),
                json!({"by": by, "reason": "mail_limit"}),
            )
            .await;
            return Err(Error::RateLimited {
                retry_after_secs: window.num_seconds().unsigned_abs(),
            });
        }
        committed(&requested);
        let taken = self
            .store
            .user_by_email(new.as_str())
            .await?
            .is_some_and(|other| other.id != user.id);
        let product = &self.config.product_name;
        let locale = Locale::negotiate(&user.locale);
        let url = format!(
            "{}/ui/verify-email?token={token}",
            self.config.email_base_url
        );
        let to_new = if taken {
            MailKind::EmailInUse
        } else {
            MailKind::EmailChange { link: &url }
        };
        self.outbox
            .queue(&render(to_new, locale, new.as_str(), product)?)
            .await?;
        self.outbox
            .queue_for(user, MailKind::EmailChangeRequested, product)
            .await?;
        tracing::info!(user_id = %user.id, by = %principal.user_id, "email address change asked for");
        Ok(())
    }
}
