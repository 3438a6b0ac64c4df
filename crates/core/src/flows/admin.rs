//! Administration: listing users, unlocking, deleting, and the first administrator.

use secrecy::SecretString;
use uuid::Uuid;

use serde_json::json;

use crate::domain::User;
use crate::domain::audit::{Outcome, kind};
use crate::domain::rbac::Permission;
use crate::error::Error;
use crate::flows::audit::committed;
use crate::flows::registration::Registration;
use crate::service::{Auth, Principal};

/// A page of users.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// Users on this page.
    pub users: Vec<User>,
    /// Total number of users.
    pub total: u64,
    /// 1-based page number.
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

/// The largest page an administrator may request.
pub const MAX_PER_PAGE: u64 = 100;

impl Auth {
    /// Lists users (administrators only).
    ///
    /// # Errors
    /// `Forbidden`, `Validation`.
    pub async fn list_users(
        &self,
        principal: &Principal,
        page: u64,
        per_page: u64,
    ) -> Result<UserPage, Error> {
        principal.ensure(Permission::UsersRead)?;
        self.users_page(page, per_page).await
    }

    /// Lists users without a caller (CLI).
    ///
    /// # Errors
    /// `Validation` for an out-of-range page.
    pub async fn users_page(&self, page: u64, per_page: u64) -> Result<UserPage, Error> {
        if page == 0 || !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(Error::validation(
                "page",
                "invalid_pagination",
                "page starts at 1; per_page is 1 to 100.",
            ));
        }
        let offset = (page - 1).saturating_mul(per_page);
        let (users, total) = self.store.list_users(offset, per_page).await?;
        Ok(UserPage {
            users,
            total,
            page,
            per_page,
        })
    }

    /// Deletes an account (administrators only; not oneself).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation`.
    pub async fn delete_user(&self, principal: &Principal, user_id: Uuid) -> Result<(), Error> {
        principal.ensure(Permission::UsersManage)?;
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        if principal.user_id == user_id {
            return Err(Error::validation(
                "id",
                "cannot_delete_self",
                "You cannot delete your own account.",
            ));
        }
        // The count of sessions ended is only known inside the deletion; the event names the
        // account and who deleted it, which is what a receiver acts on.
        let deleted = [self.event(
            kind::USER_DELETED,
            Outcome::Success,
            Some(user_id),
            Some(principal),
            json!({}),
        )];
        let sessions = self
            .store
            .delete_user(user_id, &deleted)
            .await?
            .ok_or(Error::NotFound)?;
        self.sessions_revoked(&sessions).await;
        self.profile_changed(user_id).await;
        tracing::info!(%user_id, by = %principal.user_id, revoked_sessions = sessions.len(), "account deleted");
        committed(&deleted);
        Ok(())
    }

    /// Clears the lock of an account found by id, username or email.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn unlock(&self, identifier: &str) -> Result<User, Error> {
        self.unlock_by(identifier, None).await
    }

    async fn unlock_by(&self, identifier: &str, actor: Option<&Principal>) -> Result<User, Error> {
        let user = self.find_user(identifier).await?.ok_or(Error::NotFound)?;
        if let Some(actor) = actor {
            self.grants
                .ensure_manages(self.store.as_ref(), actor, user.id)
                .await?;
        }
        let via = if actor.is_some() { "api" } else { "cli" };
        let unlocked = [self.event(
            kind::ACCOUNT_UNLOCKED,
            Outcome::Success,
            Some(user.id),
            actor,
            json!({"via": via, "was_locked": user.is_locked(self.now())}),
        )];
        if !self
            .store
            .unlock_user(user.id, self.now(), &unlocked)
            .await?
        {
            return Err(Error::NotFound);
        }
        self.profile_changed(user.id).await;
        tracing::info!(user_id = %user.id, "account unlocked");
        committed(&unlocked);
        self.store.user_by_id(user.id).await?.ok_or(Error::NotFound)
    }

    /// Unlocks as an administrator.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn unlock_as(&self, principal: &Principal, identifier: &str) -> Result<User, Error> {
        principal.ensure(Permission::UsersManage)?;
        self.unlock_by(identifier, Some(principal)).await
    }

    /// Finds a user by id, username or email.
    ///
    /// # Errors
    /// On store failure.
    pub async fn find_user(&self, identifier: &str) -> Result<Option<User>, Error> {
        let identifier = identifier.trim();
        if identifier.is_empty()
            || identifier.len() > 254
            || identifier.chars().any(char::is_control)
        {
            return Ok(None);
        }
        if let Ok(id) = Uuid::parse_str(identifier) {
            return Ok(self.store.user_by_id(id).await?);
        }
        Ok(self
            .store
            .user_by_login(&crate::domain::login_key(identifier))
            .await?)
    }

    /// Rewrites emails stored before addresses had one canonical form (NFC, lower case, IDNA
    /// A-label domain) into it, so those accounts are found under either spelling. When the
    /// canonical form is another account's email (one mailbox, two accounts) both are left as they
    /// are and a warning names them: an administrator must decide. Run once at start-up. Returns
    /// how many were rewritten and how many collided.
    ///
    /// # Errors
    /// On store failure.
    pub async fn canonicalize_stored_emails(&self) -> Result<(usize, usize), Error> {
        let (mut rewritten, mut collided) = (0, 0);
        for (id, stored) in self.store.users_with_non_ascii_email().await? {
            let canonical = crate::domain::Email::lookup_key(&stored);
            if canonical == stored {
                continue;
            }
            let updated = [self.event(
                kind::USER_UPDATED,
                Outcome::Success,
                Some(id),
                None,
                json!({"fields": ["email"], "reason": "canonical_form"}),
            )];
            match self
                .store
                .rewrite_email(id, &stored, &canonical, self.now(), &updated)
                .await
            {
                Ok(true) => {
                    rewritten += 1;
                    self.profile_changed(id).await;
                    committed(&updated);
                }
                Ok(false) => {}
                Err(crate::store::StoreError::Conflict { .. }) => {
                    collided += 1;
                    let other = self.store.user_by_email(&canonical).await?.map(|u| u.id);
                    tracing::warn!(user_id = %id, other_user_id = ?other, "two accounts have one mailbox once their emails are in canonical form; left unchanged: merge or change one of them");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if rewritten > 0 {
            tracing::info!(rewritten, "stored emails rewritten to their canonical form");
        }
        Ok((rewritten, collided))
    }

    /// Creates the first administrator when the database has no users. Returns the password when
    /// it was generated (to be printed once), `None` when one was given or users already exist.
    ///
    /// # Errors
    /// `Validation`/`WeakPassword` for bad `ADMIN_*` values.
    pub async fn ensure_first_admin(
        &self,
        email: &str,
        username: &str,
        password: Option<SecretString>,
        name: Option<&str>,
    ) -> Result<Option<(User, Option<String>)>, Error> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p, None),
            None => {
                // 18 random bytes → 24 base64url characters; make sure letters and digits appear.
                let pw = format!("{}-7a", crate::crypto::random_token::<18>());
                (SecretString::from(pw.clone()), Some(pw))
            }
        };
        let (first_name, last_name) = match name.map(str::trim).and_then(|n| n.split_once(' ')) {
            Some((f, l)) => (Some(f.to_owned()), Some(l.trim().to_owned())),
            None => (name.map(ToOwned::to_owned), None),
        };
        let user = self
            .register(Registration {
                username: username.to_owned(),
                email: email.to_owned(),
                password,
                confirm_password: None,
                first_name,
                last_name,
                locale: None,
                is_admin: true,
                // Configured by the operator: no link to follow before the first sign-in.
                email_verified: true,
            })
            .await?;
        Ok(Some((user, generated)))
    }
}
