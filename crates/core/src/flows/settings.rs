//! What users change about their own account (and administrators about others'): password,
//! profile, email address, active flag.

use crate::domain::password::PolicyContext;
use secrecy::SecretString;
use uuid::Uuid;

use serde_json::json;

use crate::domain::audit::{Outcome, kind};
use crate::domain::names::parse_optional_name;
use crate::domain::rbac::Permission;
use crate::domain::{Email, ProfileUpdate, User};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::mail::Locale;
use crate::service::{Auth, Principal};

/// A profile change as received. Absent fields are unchanged.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New first name; empty string clears.
    pub first_name: Option<String>,
    /// New last name; empty string clears.
    pub last_name: Option<String>,
    /// New language tag.
    pub locale: Option<String>,
    /// Enable or disable the account (`users:manage`, never one's own).
    pub is_active: Option<bool>,
    /// A new email address: asks for the change, which happens when the link mailed to it is
    /// used (see [`crate::flows::email_change`]). The current address (in any spelling) is no
    /// change.
    pub email: Option<String>,
    /// The current password, needed to change one's own email address.
    pub password: Option<SecretString>,
    /// Whether sign-ins from new devices mail an alert (see [`crate::flows::sign_in_alerts`]).
    pub login_alerts: Option<bool>,
    /// Whether other accounts may send private messages (see [`crate::flows::messages`]).
    pub accept_messages: Option<bool>,
}

/// What [`Auth::update_user`] did.
#[derive(Debug, Clone)]
pub struct UpdatedProfile {
    /// The account as it is now: its email is still the old one while a change waits for its
    /// link.
    pub user: User,
    /// A change of address was asked for: a link went to the new address.
    pub email_change_requested: bool,
}

impl Auth {
    /// Changes `user_id`'s password. Users must give their current password; administrators
    /// changing someone else's need not. Every other session of the user is revoked at once
    /// (refresh and access tokens alike); the caller's own session survives.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `IncorrectPassword`, `WeakPassword`.
    pub async fn change_password(
        &self,
        principal: &Principal,
        user_id: Uuid,
        current: Option<&SecretString>,
        new: &SecretString,
    ) -> Result<(), Error> {
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        if principal.user_id == user_id {
            self.verify_current_password(&user, current, kind::PASSWORD_CHANGED)
                .await?;
        }
        self.check_password_policy(new, PolicyContext::for_user(&user))?;
        let hash = self.hasher.hash(new).await?;
        let own = principal.user_id == user_id;
        let keep = own.then_some(principal.session_id);
        // A change confirmed with the current password only lands if that password is still the
        // current one: of two concurrent changes with the same current password, one wins.
        let expected = own.then_some(user.credential_epoch);
        let changed = [self.event(
            kind::PASSWORD_CHANGED,
            Outcome::Success,
            Some(user_id),
            Some(principal),
            json!({"by": if own { "self" } else { "admin" }}),
        )];
        let Some(revoked) = self
            .store
            .change_password(user_id, &hash, keep, expected, self.now(), &changed)
            .await?
        else {
            if !own {
                return Err(Error::NotFound);
            }
            self.record(
                kind::PASSWORD_CHANGED,
                Outcome::Failure,
                Some(user_id),
                None,
                json!({"reason": "credential_changed"}),
            )
            .await;
            return Err(Error::IncorrectPassword);
        };
        self.store.forget_devices(user_id).await?;
        self.profile_changed(user_id).await;
        self.sessions_revoked(&revoked).await;
        tracing::info!(%user_id, by = %principal.user_id, revoked_sessions = revoked.len(), "password changed");
        committed(&changed);
        self.notify_password_changed(&user).await;
        Ok(())
    }

    /// Checks the current password an account holder gives to confirm a change of their own
    /// (password, email address, deleting the account). It is a credential check like sign-in:
    /// a wrong one counts towards the lock (and a locked account's right one is refused), so a
    /// stolen access token is no password-guessing oracle. A refusal is recorded as a failed
    /// `event_type` event (`details.reason: incorrect_password`).
    ///
    /// # Errors
    /// `IncorrectPassword` (missing, wrong, or the account is locked).
    pub(crate) async fn verify_current_password(
        &self,
        user: &User,
        current: Option<&SecretString>,
        event_type: &'static str,
    ) -> Result<(), Error> {
        let current = current.ok_or(Error::IncorrectPassword)?;
        // After a "this wasn't me" the password works nowhere until a reset (counted like a
        // wrong one, see `flows::sign_in_alerts`).
        let matches = self
            .hasher
            .verify(current, Some(&user.password_hash))
            .await?
            .matches
            && !user.password_reset_required;
        let now = self.now();
        if !matches {
            let (attempts, lock_until) = (
                self.config.lockout_attempts,
                now + self.config.lockout_duration,
            );
            let failed = self.event(
                event_type,
                Outcome::Failure,
                Some(user.id),
                None,
                json!({"reason": "incorrect_password"}),
            );
            let locked = self.lock_event(user.id, "account", attempts, lock_until);
            let locked_now = self
                .store
                .record_failed_login(user.id, now, attempts, lock_until, &failed, &locked)
                .await?;
            committed(&[failed]);
            if locked_now {
                self.profile_changed(user.id).await;
                committed(&[locked]);
            }
            return Err(Error::IncorrectPassword);
        }
        if !self.store.record_successful_login(user.id, now).await? {
            // Locked (by failures that landed meanwhile, or before): refused, nothing changed.
            self.record(
                event_type,
                Outcome::Failure,
                Some(user.id),
                None,
                json!({"reason": "incorrect_password"}),
            )
            .await;
            return Err(Error::IncorrectPassword);
        }
        Ok(())
    }

    /// Sets a password without the current one (CLI `user set-password`). Revokes every session.
    ///
    /// # Errors
    /// `NotFound`, `WeakPassword`.
    pub async fn set_password(&self, user_id: Uuid, new: &SecretString) -> Result<(), Error> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        self.check_password_policy(new, PolicyContext::for_user(&user))?;
        let hash = self.hasher.hash(new).await?;
        let changed = [self.event(
            kind::PASSWORD_CHANGED,
            Outcome::Success,
            Some(user_id),
            None,
            json!({"by": "cli"}),
        )];
        let revoked = self
            .store
            .change_password(user_id, &hash, None, None, self.now(), &changed)
            .await?
            .ok_or(Error::NotFound)?;
        self.store.forget_devices(user_id).await?;
        self.profile_changed(user_id).await;
        self.sessions_revoked(&revoked).await;
        committed(&changed);
        Ok(())
    }

    /// The caller's own account.
    ///
    /// # Errors
    /// `InvalidAccessToken` if the account vanished.
    pub async fn me(&self, principal: &Principal) -> Result<User, Error> {
        if let Some(user) = self.profiles.get(&principal.user_id).await {
            return Ok(user);
        }
        let user = self
            .store
            .user_by_id(principal.user_id)
            .await?
            .ok_or(Error::InvalidAccessToken)?;
        self.profiles.insert(user.id, user.clone()).await;
        Ok(user)
    }

    /// One account: the caller's own, or any for an administrator.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn user(&self, principal: &Principal, user_id: Uuid) -> Result<User, Error> {
        principal.ensure_self_or(user_id, Permission::UsersRead)?;
        self.store.user_by_id(user_id).await?.ok_or(Error::NotFound)
    }

    /// Updates a profile: the caller's own, or anyone's with `users:manage`. Enabling or
    /// disabling needs `users:manage` and is never allowed on one's own account; disabling
    /// revokes every session of the account at once, and is refused when it would leave no
    /// active administrator. A new `email` asks for a change of address (one's own needs the
    /// current `password`); the rest of the change is applied only once that request went
    /// through, so a wrong password changes nothing. Everything else in a request body
    /// (roles, flags, ids) is not part of a profile and never reaches this.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` (`invalid_name`, `invalid_email`,
    /// `cannot_disable_self`), `IncorrectPassword`, `RateLimited`,
    /// `Refused("last_admin" | "account_disabled")`.
    pub async fn update_user(
        &self,
        principal: &Principal,
        user_id: Uuid,
        change: ProfileChange,
    ) -> Result<UpdatedProfile, Error> {
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        if change.is_active.is_some() {
            principal.ensure(Permission::UsersManage)?;
            if principal.user_id == user_id {
                return Err(Error::validation(
                    "is_active",
                    "cannot_disable_self",
                    "You cannot disable or enable your own account.",
                ));
            }
        }
        let update = ProfileUpdate {
            first_name: change
                .first_name
                .as_deref()
                .map(|v| parse_optional_name("first_name", Some(v)))
                .transpose()?,
            last_name: change
                .last_name
                .as_deref()
                .map(|v| parse_optional_name("last_name", Some(v)))
                .transpose()?,
            locale: change
                .locale
                .as_deref()
                .map(|tag| Locale::negotiate(tag).tag().to_owned()),
            is_active: change.is_active,
            login_alerts: change.login_alerts,
            accept_messages: change.accept_messages,
        };
        let new_email = change
            .email
            .as_deref()
            .map(|e| Email::parse(e, self.config.email_policy))
            .transpose()?;
        let mut email_change_requested = false;
        if let Some(email) = new_email {
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .ok_or(Error::NotFound)?;
            // The current mailbox, in whatever spelling, is no change.
            if email.as_str() != Email::lookup_key(&user.email) {
                self.request_email_change(principal, &user, &email, change.password.as_ref())
                    .await?;
                email_change_requested = true;
            }
        }
        let mut fields = Vec::new();
        for (name, set) in [
            ("first_name", update.first_name.is_some()),
            ("last_name", update.last_name.is_some()),
            ("locale", update.locale.is_some()),
            ("is_active", update.is_active.is_some()),
            ("login_alerts", update.login_alerts.is_some()),
            ("accept_messages", update.accept_messages.is_some()),
        ] {
            if set {
                fields.push(name);
            }
        }
        if fields.is_empty() && email_change_requested {
            // Only the address: nothing else to write (the request has its own event).
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .ok_or(Error::NotFound)?;
            return Ok(UpdatedProfile {
                user,
                email_change_requested,
            });
        }
        let user = self
            .change_profile(Some(principal), user_id, &update, fields)
            .await?;
        Ok(UpdatedProfile {
            user,
            email_change_requested,
        })
    }

    /// Writes a profile update with its `user.updated` event; disabling also ends every
    /// session of the account. The caller's permissions were checked.
    pub(crate) async fn change_profile(
        &self,
        actor: Option<&Principal>,
        user_id: Uuid,
        update: &ProfileUpdate,
        fields: Vec<&'static str>,
    ) -> Result<User, Error> {
        let now = self.now();
        let mut details = json!({"fields": fields, "is_active": update.is_active});
        if actor.is_none() {
            details["via"] = json!("cli");
        }
        let updated = [self.event(
            kind::USER_UPDATED,
            Outcome::Success,
            Some(user_id),
            actor,
            details,
        )];
        let user = self
            .store
            .update_profile(user_id, update, now, &updated)
            .await?;
        self.profile_changed(user_id).await;
        if update.is_active == Some(false) {
            // Disabling already refuses every session (their owner is checked on each use);
            // this ends them for good and moves the credential epoch.
            let revoked = self
                .store
                .revoke_all_sessions(user_id, None, now, &[])
                .await?;
            self.store.forget_devices(user_id).await?;
            self.sessions_revoked(&revoked).await;
        }
        committed(&updated);
        Ok(user)
    }

    /// Enables or disables another account (`users:manage`; `POST /api/users/{id}/enable`,
    /// `/disable`). Disabling revokes every session at once and is refused when it would leave
    /// no active administrator.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation` (`cannot_disable_self`), `Refused("last_admin")`.
    pub async fn set_active(
        &self,
        principal: &Principal,
        user_id: Uuid,
        active: bool,
    ) -> Result<User, Error> {
        let change = ProfileChange {
            is_active: Some(active),
            ..ProfileChange::default()
        };
        Ok(self.update_user(principal, user_id, change).await?.user)
    }

    /// Enables or disables an account without a caller (CLI `porteiro user enable|disable`),
    /// with the same last-administrator rule.
    ///
    /// # Errors
    /// `NotFound`, `Refused("last_admin")`.
    pub async fn set_active_cli(&self, user_id: Uuid, active: bool) -> Result<User, Error> {
        let update = ProfileUpdate {
            is_active: Some(active),
            ..ProfileUpdate::default()
        };
        self.change_profile(None, user_id, &update, vec!["is_active"])
            .await
    }
}
