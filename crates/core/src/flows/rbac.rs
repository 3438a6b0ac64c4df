//! Roles and permissions: administration and checks (seed 004 `/api/rbac`).
//!
//! Every change needs its permission *and* may not hand out more than the caller holds: a
//! permission can be granted to a role, or taken from one, only by someone who holds it; a role
//! can be given or taken only by someone who holds every permission it grants. Refused
//! escalations are audited as failures. The store keeps the last administrator (see
//! [`crate::store::RbacStore`]). After a change commits, the grants cache is marked stale so the
//! next request on this instance sees it; other instances learn through the store's event feed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::User;
use crate::domain::audit::{NewAuditEvent, Outcome, kind};
use crate::domain::rbac::{
    Grants, Permission, RbacKind, RbacObject, parse_description, parse_name,
};
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::grants::GrantsCache;
use crate::service::{Auth, Principal};
use crate::store::Store;

/// A change to a role or permission as received (absent fields are unchanged).
#[derive(Debug, Clone, Default)]
pub struct RbacChange {
    /// New name.
    pub name: Option<String>,
    /// New description (empty clears it).
    pub description: Option<String>,
}

/// The RBAC service.
pub struct Rbac {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    grants: GrantsCache,
    profiles: moka::future::Cache<Uuid, User>,
}

impl std::fmt::Debug for Rbac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbac").finish_non_exhaustive()
    }
}

/// The permission that manages objects of `kind`.
const fn manager(kind: RbacKind) -> Permission {
    match kind {
        RbacKind::Role => Permission::RolesManage,
        RbacKind::Permission => Permission::PermissionsManage,
    }
}

const fn kinds(kind: RbacKind) -> [&'static str; 3] {
    match kind {
        RbacKind::Role => [kind::ROLE_CREATED, kind::ROLE_UPDATED, kind::ROLE_DELETED],
        RbacKind::Permission => [
            kind::PERMISSION_CREATED,
            kind::PERMISSION_UPDATED,
            kind::PERMISSION_DELETED,
        ],
    }
}

fn describe(kind: RbacKind, o: &RbacObject) -> Value {
    match kind {
        RbacKind::Role => json!({"role_id": o.id, "name": o.name}),
        RbacKind::Permission => json!({"permission_id": o.id, "name": o.name}),
    }
}

impl Rbac {
    /// The service, sharing the sign-in service's store, clock and caches.
    #[must_use]
    pub fn new(auth: &Auth) -> Self {
        Self {
            store: auth.store.clone(),
            clock: auth.clock.clone(),
            grants: auth.grants.clone(),
            profiles: auth.profiles.clone(),
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
        actor: &Principal,
        details: Value,
    ) -> NewAuditEvent {
        // The caller is named even when acting on their own account.
        NewAuditEvent {
            actor_id: Some(actor.user_id),
            ..new_event(
                self.now(),
                event_type,
                outcome,
                user_id,
                Some(actor),
                details,
            )
        }
    }

    /// Refuses (audited) a change to `object` unless the caller holds what it grants: the
    /// permission itself, or every permission of the role. Renaming or deleting something the
    /// caller does not hold would otherwise hand its name — and what services make of it — away.
    async fn ensure_holds(
        &self,
        principal: &Principal,
        kind: RbacKind,
        object: &RbacObject,
        event_type: &'static str,
    ) -> Result<(), Error> {
        let held = self.grants_of(principal.user_id).await?;
        let missing: Vec<String> = match kind {
            RbacKind::Permission => vec![object.name.clone()],
            RbacKind::Role => self
                .role_permissions(object.id)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect(),
        }
        .into_iter()
        .filter(|name| !held.allows(name))
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut details = describe(kind, object);
        details["reason"] = json!("permissions_not_held");
        details["missing"] = json!(missing);
        Err(self
            .refused(self.event(event_type, Outcome::Failure, None, principal, details))
            .await)
    }

    /// A change committed: grants, and the roles shown in profiles, are stale.
    fn changed(&self, events: &[NewAuditEvent]) {
        self.grants.changed();
        self.profiles.invalidate_all();
        committed(events);
    }

    /// Records a refused escalation attempt (a failure to record is logged, not returned).
    async fn refused(&self, event: NewAuditEvent) -> Error {
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::warn!(error = %e, "could not record a refused role change");
        }
        committed(std::slice::from_ref(&event));
        Error::Forbidden
    }

    /// What `user_id` holds now.
    ///
    /// # Errors
    /// On store failure.
    pub async fn grants_of(&self, user_id: Uuid) -> Result<Arc<Grants>, Error> {
        self.grants.get(self.store.as_ref(), user_id).await
    }

    /// Every role or permission, by name.
    ///
    /// # Errors
    /// On store failure.
    pub async fn list(&self, kind: RbacKind) -> Result<Vec<RbacObject>, Error> {
        Ok(self.store.rbac_objects(kind).await?)
    }

    /// One role or permission by id.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get(&self, kind: RbacKind, id: Uuid) -> Result<RbacObject, Error> {
        self.store
            .rbac_object(kind, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// One role or permission by name (a name that cannot exist is not found either).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_by_name(&self, kind: RbacKind, name: &str) -> Result<RbacObject, Error> {
        let name = parse_name(kind, name).map_err(|_| Error::NotFound)?;
        self.store
            .rbac_object_by_name(kind, &name)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Creates a role (`roles:manage`) or permission (`permissions:manage`).
    ///
    /// # Errors
    /// `Forbidden`, `Validation` (`invalid_name`, `invalid_description`), `Conflict`.
    pub async fn create(
        &self,
        principal: &Principal,
        kind: RbacKind,
        name: &str,
        description: Option<&str>,
    ) -> Result<RbacObject, Error> {
        principal.ensure(manager(kind))?;
        let now = self.now();
        let object = RbacObject {
            id: Uuid::new_v4(),
            name: parse_name(kind, name)?,
            description: parse_description(description)?,
            builtin: false,
            created_at: now,
            updated_at: now,
        };
        let events = [self.event(
            kinds(kind)[0],
            Outcome::Success,
            None,
            principal,
            describe(kind, &object),
        )];
        let created = self
            .store
            .create_rbac_object(kind, &object, &events)
            .await?;
        // A new permission is the admin role's from now on.
        self.changed(&events);
        Ok(created)
    }

    /// Renames or re-describes a role or permission (built-ins keep their names).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation`, `Conflict`, `Refused("builtin_protected")`.
    pub async fn update(
        &self,
        principal: &Principal,
        kind: RbacKind,
        id: Uuid,
        change: RbacChange,
    ) -> Result<RbacObject, Error> {
        principal.ensure(manager(kind))?;
        let name = change
            .name
            .as_deref()
            .map(|n| parse_name(kind, n))
            .transpose()?;
        let description = change
            .description
            .as_deref()
            .map(|d| parse_description(Some(d)))
            .transpose()?;
        let old = self.get(kind, id).await?;
        if old.builtin {
            return Err(Error::Refused("builtin_protected"));
        }
        self.ensure_holds(principal, kind, &old, kinds(kind)[1])
            .await?;
        let mut details = describe(kind, &old);
        if let Some(name) = &name {
            details["new_name"] = json!(name);
        }
        let events = [self.event(kinds(kind)[1], Outcome::Success, None, principal, details)];
        let updated = self
            .store
            .update_rbac_object(
                kind,
                id,
                name.as_deref(),
                description.as_deref(),
                self.now(),
                &events,
            )
            .await?;
        self.changed(&events);
        Ok(updated)
    }

    /// Deletes a role or permission and its links (never a built-in).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Refused` (`builtin_protected`, `last_admin`).
    pub async fn delete(
        &self,
        principal: &Principal,
        kind: RbacKind,
        id: Uuid,
    ) -> Result<RbacObject, Error> {
        principal.ensure(manager(kind))?;
        let old = self.get(kind, id).await?;
        if old.builtin {
            return Err(Error::Refused("builtin_protected"));
        }
        self.ensure_holds(principal, kind, &old, kinds(kind)[2])
            .await?;
        let events = [self.event(
            kinds(kind)[2],
            Outcome::Success,
            None,
            principal,
            describe(kind, &old),
        )];
        let deleted = self.store.delete_rbac_object(kind, id, &events).await?;
        self.changed(&events);
        Ok(deleted)
    }

    /// The permissions a role grants.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn role_permissions(&self, role_id: Uuid) -> Result<Vec<RbacObject>, Error> {
        self.store
            .role_permissions(role_id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Grants (`grant`) or takes back a permission of a role: `roles:assign-permission`, and the
    /// caller must hold the permission. Returns whether anything changed.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Refused` (`builtin_protected`, `last_admin`).
    pub async fn link_permission(
        &self,
        principal: &Principal,
        role_id: Uuid,
        permission_id: Uuid,
        grant: bool,
    ) -> Result<bool, Error> {
        principal.ensure(Permission::RolesAssignPermission)?;
        let role = self.get(RbacKind::Role, role_id).await?;
        let permission = self.get(RbacKind::Permission, permission_id).await?;
        let event_type = if grant {
            kind::ROLE_PERMISSION_GRANTED
        } else {
            kind::ROLE_PERMISSION_REVOKED
        };
        let details = json!({
            "role_id": role.id, "role": role.name,
            "permission_id": permission.id, "permission": permission.name,
        });
        if !self
            .grants_of(principal.user_id)
            .await?
            .allows(&permission.name)
        {
            let mut details = details;
            details["reason"] = json!("permission_not_held");
            return Err(self
                .refused(self.event(event_type, Outcome::Failure, None, principal, details))
                .await);
        }
        let events = [self.event(event_type, Outcome::Success, None, principal, details)];
        let changed = if grant {
            self.store
                .grant_permission(role_id, permission_id, self.now(), &events)
                .await?
        } else {
            self.store
                .revoke_permission(role_id, permission_id, &events)
                .await?
        };
        if changed {
            self.changed(&events);
        }
        Ok(changed)
    }

    /// Gives (`assign`) or takes back a role of a user: `users:assign-role`, and the caller must
    /// hold every permission the role grants. Returns whether anything changed.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Refused("last_admin")`.
    pub async fn link_role(
        &self,
        principal: &Principal,
        user_id: Uuid,
        role_id: Uuid,
        assign: bool,
    ) -> Result<bool, Error> {
        principal.ensure(Permission::UsersAssignRole)?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let role = self.get(RbacKind::Role, role_id).await?;
        let event_type = if assign {
            kind::USER_ROLE_ASSIGNED
        } else {
            kind::USER_ROLE_REMOVED
        };
        let details = json!({"role_id": role.id, "role": role.name});
        let held = self.grants_of(principal.user_id).await?;
        let missing: Vec<String> = self
            .role_permissions(role_id)
            .await?
            .into_iter()
            .filter(|p| !held.allows(&p.name))
            .map(|p| p.name)
            .collect();
        if !missing.is_empty() {
            let mut details = details;
            details["reason"] = json!("permissions_not_held");
            details["missing"] = json!(missing);
            return Err(self
                .refused(self.event(
                    event_type,
                    Outcome::Failure,
                    Some(user_id),
                    principal,
                    details,
                ))
                .await);
        }
        let events = [self.event(
            event_type,
            Outcome::Success,
            Some(user_id),
            principal,
            details,
        )];
        let changed = if assign {
            self.store
                .assign_role(user_id, role_id, self.now(), &events)
                .await?
        } else {
            self.store.unassign_role(user_id, role_id, &events).await?
        };
        if changed {
            self.changed(&events);
        }
        Ok(changed)
    }

    /// A user's roles: one's own, or anyone's with `users:read`.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn user_roles(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<Vec<RbacObject>, Error> {
        principal.ensure_self_or(user_id, Permission::UsersRead)?;
        self.store.user_roles(user_id).await?.ok_or(Error::NotFound)
    }

    /// Whether `user_id` holds the permission `name` (an unknown permission is simply not held):
    /// one's own, or anyone's with `users:read`.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (unknown user).
    pub async fn check(
        &self,
        principal: &Principal,
        user_id: Uuid,
        name: &str,
    ) -> Result<bool, Error> {
        principal.ensure_self_or(user_id, Permission::UsersRead)?;
        if user_id != principal.user_id && self.store.user_by_id(user_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        Ok(self.grants_of(user_id).await?.allows(name))
    }
}
