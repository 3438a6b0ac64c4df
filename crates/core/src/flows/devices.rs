//! Sessions as devices (seed 004 `/api/auth/devices`): list, inspect, rename, revoke.
//!
//! Users only ever see and touch their own sessions; a foreign id is answered as not found.
//! Administrators see another account's sessions with `users:read` and end one with
//! `users:manage` over that account ([`Auth::user_devices`], [`Auth::revoke_user_device`]: the
//! admin console).

use uuid::Uuid;

use serde_json::json;

use crate::domain::Session;
use crate::domain::audit::{Outcome, kind};
use crate::domain::rbac::Permission;
use crate::error::Error;
use crate::flows::audit::committed;
use crate::service::{Auth, Principal};

/// A session as shown to its owner.
#[derive(Debug, Clone)]
pub struct Device {
    /// The session.
    pub session: Session,
    /// Whether it is the session making the request.
    pub is_current: bool,
}

impl Auth {
    /// The caller's active sessions.
    ///
    /// # Errors
    /// On store failure.
    pub async fn devices(&self, principal: &Principal) -> Result<Vec<Device>, Error> {
        let sessions = self
            .store
            .list_active_sessions(principal.user_id, self.now())
            .await?;
        Ok(sessions
            .into_iter()
            .map(|s| Device {
                is_current: s.id == principal.session_id,
                session: s,
            })
            .collect())
    }

    /// One of the caller's active sessions.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn device(&self, principal: &Principal, id: Uuid) -> Result<Device, Error> {
        let now = self.now();
        let session = self
            .store
            .session_by_id(id)
            .await?
            .filter(|s| s.user_id == principal.user_id && s.is_active(now))
            .ok_or(Error::NotFound)?;
        Ok(Device {
            is_current: session.id == principal.session_id,
            session,
        })
    }

    /// Another account's active sessions, newest activity first (`users:read`; one's own too).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (no such account).
    pub async fn user_devices(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<Vec<Device>, Error> {
        principal.ensure_self_or(user_id, Permission::UsersRead)?;
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        let sessions = self.store.list_active_sessions(user_id, self.now()).await?;
        Ok(sessions
            .into_iter()
            .map(|s| Device {
                is_current: s.id == principal.session_id,
                session: s,
            })
            .collect())
    }

    /// Ends one session of `user_id`: its holder, or someone with `users:manage` who holds every
    /// permission the account holds (as for [`Auth::revoke_all`]). Recorded like
    /// [`Auth::revoke_device`], with the caller as actor when it is someone else.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (not a live session of that account).
    pub async fn revoke_user_device(
        &self,
        principal: &Principal,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<(), Error> {
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        let revoked = [self.event(
            kind::SESSION_REVOKED,
            Outcome::Success,
            Some(user_id),
            Some(principal),
            json!({"session_id": id, "reason": "device_revoked"}),
        )];
        if !self
            .store
            .revoke_session(user_id, id, self.now(), &revoked)
            .await?
        {
            return Err(Error::NotFound);
        }
        self.sessions_revoked(&[id]).await;
        tracing::info!(%user_id, session_id = %id, by = %principal.user_id, "session revoked");
        committed(&revoked);
        Ok(())
    }

    /// Renames one of the caller's sessions (1–64 printable characters).
    ///
    /// # Errors
    /// `Validation`, `NotFound`.
    pub async fn rename_device(
        &self,
        principal: &Principal,
        id: Uuid,
        name: &str,
    ) -> Result<Device, Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::validation(
                "device_name",
                "invalid_device_name",
                "Device names have 1 to 64 printable characters.",
            ));
        }
        let session = self
            .store
            .rename_session(principal.user_id, id, name, self.now())
            .await?
            .ok_or(Error::NotFound)?;
        Ok(Device {
            is_current: session.id == principal.session_id,
            session,
        })
    }

    /// Revokes one of the caller's sessions.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke_device(&self, principal: &Principal, id: Uuid) -> Result<(), Error> {
        let revoked = [self.event(
            kind::SESSION_REVOKED,
            Outcome::Success,
            Some(principal.user_id),
            None,
            json!({"session_id": id, "reason": "device_revoked"}),
        )];
        if !self
            .store
            .revoke_session(principal.user_id, id, self.now(), &revoked)
            .await?
        {
            return Err(Error::NotFound);
        }
        self.sessions_revoked(&[id]).await;
        tracing::info!(user_id = %principal.user_id, session_id = %id, "session revoked");
        committed(&revoked);
        Ok(())
    }

    /// Revokes every session of `user_id` (the caller's own included): the account holder, or
    /// anyone with `users:manage` (`POST /api/auth/revoke-all/{id}`,
    /// `POST /api/users/{id}/sign-out-all`). Returns how many.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn revoke_all(&self, principal: &Principal, user_id: Uuid) -> Result<usize, Error> {
        self.grants
            .ensure_manages(self.store.as_ref(), principal, user_id)
            .await?;
        self.revoke_all_by(Some(principal), user_id).await
    }

    pub(crate) async fn revoke_all_by(
        &self,
        actor: Option<&Principal>,
        user_id: Uuid,
    ) -> Result<usize, Error> {
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        let details = if actor.is_none() {
            json!({"via": "cli"})
        } else {
            json!({})
        };
        let event = [self.event(
            kind::SESSIONS_REVOKED_ALL,
            Outcome::Success,
            Some(user_id),
            actor,
            details,
        )];
        let revoked = self
            .store
            .revoke_all_sessions(user_id, None, self.now(), &event)
            .await?;
        self.store.forget_devices(user_id).await?;
        self.sessions_revoked(&revoked).await;
        tracing::info!(%user_id, by = ?actor.map(|p| p.user_id), count = revoked.len(), "all sessions revoked");
        committed(&event);
        Ok(revoked.len())
    }
}
