//! What users change about their own account: password and profile.

use secrecy::SecretString;
use uuid::Uuid;

use serde_json::json;

use crate::domain::audit::{Outcome, kind};
use crate::domain::names::parse_optional_name;
use crate::domain::rbac::Permission;
use crate::domain::{ProfileUpdate, User};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::mail::Locale;
use crate::service::{Auth, Principal};

/// A profile change as received.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New first name; empty string clears.
    pub first_name: Option<String>,
    /// New last name; empty string clears.
    pub last_name: Option<String>,
    /// New language tag.
    pub locale: Option<String>,
    /// Enable or disable the account (administrators only).
    pub is_active: Option<bool>,
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
            // The current password is a credential check like sign-in: failures count towards
            // the lock, so a stolen access token is no password-guessing oracle.
            let current = current.ok_or(Error::IncorrectPassword)?;
            let matches = self
                .hasher
                .verify(current, Some(&user.password_hash))
                .await?
                .matches;
            let now = self.now();
            if !matches {
                let (attempts, lock_until) = (
                    self.config.lockout_attempts,
                    now + self.config.lockout_duration,
                );
                let failed = self.event(
                    kind::PASSWORD_CHANGED,
                    Outcome::Failure,
                    Some(user_id),
                    None,
                    json!({"reason": "incorrect_password"}),
                );
                let locked = self.lock_event(user_id, "account", attempts, lock_until);
                let locked_now = self
                    .store
                    .record_failed_login(user_id, now, attempts, lock_until, &failed, &locked)
                    .await?;
                committed(&[failed]);
                if locked_now {
                    self.profile_changed(user_id).await;
                    committed(&[locked]);
                }
                return Err(Error::IncorrectPassword);
            }
            if !self.store.record_successful_login(user_id, now).await? {
                // Locked (by failures that landed meanwhile, or before): refused, nothing changed.
                self.record(
                    kind::PASSWORD_CHANGED,
                    Outcome::Failure,
                    Some(user_id),
                    None,
                    json!({"reason": "incorrect_password"}),
                )
                .await;
                return Err(Error::IncorrectPassword);
            }
        }
        self.check_password_policy(new, Some(&user.username), Some(&user.email))?;
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
        self.check_password_policy(new, Some(&user.username), Some(&user.email))?;
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

    /// Updates a profile. Disabling an account revokes all its sessions.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation`.
    pub async fn update_user(
        &self,
        principal: &Principal,
        user_id: Uuid,
        change: ProfileChange,
    ) -> Result<User, Error> {
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        if change.is_active.is_some() {
            principal.ensure(Permission::UsersManage)?;
            if principal.user_id == user_id && change.is_active == Some(false) {
                return Err(Error::validation(
                    "is_active",
                    "cannot_disable_self",
                    "You cannot disable your own account.",
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
        };
        let now = self.now();
        let mut fields = Vec::new();
        for (name, set) in [
            ("first_name", update.first_name.is_some()),
            ("last_name", update.last_name.is_some()),
            ("locale", update.locale.is_some()),
            ("is_active", update.is_active.is_some()),
        ] {
            if set {
                fields.push(name);
            }
        }
        let updated = [self.event(
            kind::USER_UPDATED,
            Outcome::Success,
            Some(user_id),
            Some(principal),
            json!({"fields": fields, "is_active": change.is_active}),
        )];
        let user = self
            .store
            .update_profile(user_id, &update, now, &updated)
            .await?;
        self.profile_changed(user_id).await;
        if change.is_active == Some(false) {
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
}
