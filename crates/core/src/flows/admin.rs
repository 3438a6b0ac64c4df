//! Administration: listing and searching users, deleting, unlocking, password-reset links on
//! an administrator's behalf, and the first administrator.

use secrecy::SecretString;
use uuid::Uuid;

use serde_json::json;

use crate::domain::audit::{Outcome, kind};
use crate::domain::rbac::{Permission, RbacKind};
use crate::domain::{SearchPrefix, User, UserQuery};
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

/// Which users a list shows (`GET /api/users`, `porteiro user list`, the admin console). Every
/// field is optional; together they narrow the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Case-insensitive prefix of the email or the username (trimmed; empty means none).
    pub q: Option<String>,
    /// Only active (`true`) or disabled (`false`) accounts.
    pub active: Option<bool>,
    /// Only accounts locked by failed sign-ins right now (`true`), or not locked (`false`).
    pub locked: Option<bool>,
    /// Only holders of the role of this name (empty means none). An unknown role selects
    /// nobody: an empty page, not an error.
    pub role: Option<String>,
}

impl Auth {
    /// One page of the users `filter` selects, in creation order, with their total (callers
    /// with `users:read`).
    ///
    /// # Errors
    /// `Forbidden`; `Validation` (`invalid_pagination`: `page` from 1, `per_page` 1 to 100;
    /// `invalid_query`: a search term over 254 characters or with control characters).
    pub async fn list_users(
        &self,
        principal: &Principal,
        filter: &UserFilter,
        page: u64,
        per_page: u64,
    ) -> Result<UserPage, Error> {
        principal.ensure(Permission::UsersRead)?;
        self.users_page(filter, page, per_page).await
    }

    /// [`Auth::list_users`] without a caller (CLI).
    ///
    /// # Errors
    /// `Validation`, as [`Auth::list_users`].
    pub async fn users_page(
        &self,
        filter: &UserFilter,
        page: u64,
        per_page: u64,
    ) -> Result<UserPage, Error> {
        if page == 0 || !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(Error::validation(
                "page",
                "invalid_pagination",
                "page starts at 1; per_page is 1 to 100.",
            ));
        }
        let empty = UserPage {
            users: Vec::new(),
            total: 0,
            page,
            per_page,
        };
        let mut query = UserQuery::all(self.now());
        query.prefix = filter
            .q
            .as_deref()
            .map(SearchPrefix::parse)
            .transpose()?
            .flatten();
        query.active = filter.active;
        query.locked = filter.locked;
        let role = filter
            .role
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(name) = role {
            let name = name.to_ascii_lowercase();
            match self
                .store
                .rbac_object_by_name(RbacKind::Role, &name)
                .await?
            {
                Some(role) => query.role_id = Some(role.id),
                None => return Ok(empty),
            }
        }
        // A page past what the database can count to is simply empty.
        let Some(offset) = (page - 1)
            .checked_mul(per_page)
            .filter(|o| i64::try_from(*o).is_ok())
        else {
            let (_, total) = self.store.list_users(&query, 0, 1).await?;
            return Ok(UserPage { total, ..empty });
        };
        let (users, total) = self.store.list_users(&query, offset, per_page).await?;
        Ok(UserPage {
            users,
            total,
            page,
            per_page,
        })
    }

    /// Deletes an account and everything it owns (sessions, tokens, factors, roles: the
    /// database cascades), ending its sessions at once. Someone else's needs `users:manage`;
    /// one's own needs the current `password` (checked like [`Auth::change_password`] checks
    /// it). Refused when it would leave no active administrator.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `IncorrectPassword`, `Refused("last_admin")`.
    pub async fn delete_user(
        &self,
        principal: &Principal,
        user_id: Uuid,
        password: Option<&SecretString>,
    ) -> Result<(), Error> {
        let own = principal.user_id == user_id;
        if own {
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .ok_or(Error::NotFound)?;
            self.verify_current_password(&user, password, kind::USER_DELETED)
                .await?;
        } else {
            self.grants
                .ensure_manages(self.store.as_ref(), principal, user_id)
                .await?;
        }
        self.remove_user(Some(principal), user_id).await
    }

    /// Deletes an account without a caller (CLI), with the same last-administrator rule.
    ///
    /// # Errors
    /// `NotFound`, `Refused("last_admin")`.
    pub async fn delete_user_cli(&self, user_id: Uuid) -> Result<(), Error> {
        self.remove_user(None, user_id).await
    }

    async fn remove_user(&self, actor: Option<&Principal>, user_id: Uuid) -> Result<(), Error> {
        let by = match actor {
            None => "cli",
            Some(p) if p.user_id == user_id => "self",
            Some(_) => "admin",
        };
        // The count of sessions ended is only known inside the deletion; the event names the
        // account and who deleted it, which is what a receiver acts on.
        let deleted = [self.event(
            kind::USER_DELETED,
            Outcome::Success,
            Some(user_id),
            actor,
            json!({"by": by}),
        )];
        let sessions = self
            .store
            .delete_user(user_id, &deleted)
            .await?
            .ok_or(Error::NotFound)?;
        self.sessions_revoked(&sessions).await;
        self.profile_changed(user_id).await;
        // Its data key is destroyed (and recorded) with the account: drop the unwrapped copy.
        self.envelope.forget(user_id).await;
        tracing::info!(%user_id, by, revoked_sessions = sessions.len(), "account deleted");
        committed(&deleted);
        Ok(())
    }

    /// Mails `user_id` a password-reset link, as if they had asked for one (`users:manage`, over
    /// an account holding nothing the caller lacks; `POST /api/users/{id}/send-password-reset`).
    /// Recorded with the caller as actor.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Refused("account_disabled")`, `RateLimited` (the account's
    /// limit of reset mails is reached).
    pub async fn send_password_reset(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<(), Error> {
        principal.ensure(Permission::UsersManage)?;
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        self.send_password_reset_by(Some(principal), user_id).await
    }

    /// [`Auth::send_password_reset`] without a caller (CLI).
    ///
    /// # Errors
    /// `NotFound`, `Refused("account_disabled")`, `RateLimited`.
    pub async fn send_password_reset_cli(&self, user_id: Uuid) -> Result<(), Error> {
        self.send_password_reset_by(None, user_id).await
    }

    async fn send_password_reset_by(
        &self,
        actor: Option<&Principal>,
        user_id: Uuid,
    ) -> Result<(), Error> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        if !user.is_active {
            // A disabled account cannot complete a reset: no link that cannot work.
            return Err(Error::Refused("account_disabled"));
        }
        if !self.issue_reset_link(&user, actor).await? {
            return Err(Error::RateLimited {
                retry_after_secs: self.config.recovery_window.num_seconds().unsigned_abs(),
            });
        }
        Ok(())
    }

    /// Ends every session of an account without a caller (CLI `porteiro user sign-out-all`).
    /// Returns how many were ended.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn sign_out_everywhere_cli(&self, user_id: Uuid) -> Result<usize, Error> {
        self.revoke_all_by(None, user_id).await
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
        let given = generated.is_none();
        let user = self
            .create_account(
                Registration {
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
                },
                given,
            )
            .await?;
        Ok(Some((user, generated)))
    }
}
