//! Roles, permissions and their assignments ([`RbacStore`]), for both backends.
//!
//! Changes that can remove a holder of the `admin` role or of `roles:manage` (taking a role from
//! a user, a permission from a role, deleting a role; and, in the backends, deleting or
//! disabling an account) run in serialised transactions and compare [`admins_present`] before
//! and after the change: the transaction is rolled back with `Refused("last_admin")` when it
//! would leave none. Serialisation is what makes two concurrent removals of the last two
//! administrators leave one.

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::rbac::{
    ADMIN_ROLE, ADMIN_ROLE_ID, Grants, Permission, RbacKind, RbacObject, USER_ROLE, USER_ROLE_ID,
};
use porteiro_core::store::{StoreError, StoreResult};
use uuid::Uuid;

use crate::{Arg, Row, SqlDb, SqlTx, UNIQUE_VIOLATION, commit_if};

fn columns(prefix: &str) -> String {
    [
        "id",
        "name",
        "description",
        "builtin",
        "created_at",
        "updated_at",
    ]
    .map(|c| format!("{prefix}{c}"))
    .join(", ")
}

fn object(r: &Row) -> StoreResult<RbacObject> {
    Ok(RbacObject {
        id: r.uuid("id")?,
        name: r.text("name")?,
        description: r.text("description")?,
        builtin: r.flag("builtin")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn objects(rows: &[Row]) -> StoreResult<Vec<RbacObject>> {
    rows.iter().map(object).collect()
}

fn name_taken(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict {
            field: UNIQUE_VIOLATION,
        } => StoreError::Conflict { field: "name" },
        other => other,
    }
}

/// Whether an active account holds the `admin` role, and whether one holds `roles:manage`
/// (through any role), as the transaction sees it.
///
/// # Errors
/// On store failure.
pub async fn admins_present(tx: &mut (dyn SqlTx + '_)) -> StoreResult<(bool, bool)> {
    let rows = tx
        .fetch(
            "select \
               exists (select 1 from user_roles ur join users u on u.id = ur.user_id \
                       where ur.role_id = $1 and u.is_active) as admins, \
               exists (select 1 from user_roles ur join users u on u.id = ur.user_id \
                       where u.is_active and (ur.role_id = $1 or ur.role_id in \
                         (select rp.role_id from role_permissions rp where rp.permission_id = $2))) as managers",
            &[
                Arg::Uuid(ADMIN_ROLE_ID),
                Arg::Uuid(Permission::RolesManage.id()),
            ],
        )
        .await?;
    let row = rows.first().ok_or(StoreError::NotFound)?;
    Ok((row.flag("admins")?, row.flag("managers")?))
}

/// Refuses with `last_admin` when `before` had an administrator (or a holder of
/// `roles:manage`) that the transaction's changes leave without one.
///
/// # Errors
/// `Refused("last_admin")`; on store failure.
pub async fn still_administered(
    tx: &mut (dyn SqlTx + '_),
    before: (bool, bool),
) -> StoreResult<()> {
    let after = admins_present(tx).await?;
    if (before.0 && !after.0) || (before.1 && !after.1) {
        return Err(StoreError::Refused("last_admin"));
    }
    Ok(())
}

async fn exists(tx: &mut (dyn SqlTx + '_), table: &str, id: Uuid) -> StoreResult<bool> {
    let sql = format!("select id from {table} where id = $1");
    Ok(!tx.fetch(&sql, &[Arg::Uuid(id)]).await?.is_empty())
}

async fn finish(
    mut tx: Box<dyn SqlTx + '_>,
    changed: bool,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    if changed {
        tx.notify_grants_changed().await?;
    }
    commit_if(tx, changed, events).await
}

/// Gives a new account its roles, in the transaction that creates it: `user`, and `admin` when
/// `admin`. Returns their names, sorted.
///
/// # Errors
/// On store failure.
pub async fn give_initial_roles(
    tx: &mut (dyn SqlTx + '_),
    user_id: UserId,
    admin: bool,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut roles = vec![(USER_ROLE_ID, USER_ROLE)];
    if admin {
        roles.insert(0, (ADMIN_ROLE_ID, ADMIN_ROLE));
    }
    for (role_id, _) in &roles {
        tx.execute(
            "insert into user_roles (user_id, role_id, created_at) values ($1, $2, $3)",
            &[Arg::Uuid(user_id), Arg::Uuid(*role_id), Arg::Time(now)],
        )
        .await?;
    }
    Ok(roles.into_iter().map(|(_, name)| name.to_owned()).collect())
}

/// [`porteiro_core::store::RbacStore::create_rbac_object`].
///
/// # Errors
/// `Conflict { field: "name" }`; on store failure.
pub async fn create(
    db: &dyn SqlDb,
    kind: RbacKind,
    o: &RbacObject,
    events: &[NewAuditEvent],
) -> StoreResult<RbacObject> {
    let mut tx = db.begin(false).await?;
    let sql = format!(
        "insert into {} (id, name, description, builtin, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $5) returning {}",
        kind.table(),
        columns("")
    );
    let rows = tx
        .fetch(
            &sql,
            &[
                Arg::Uuid(o.id),
                Arg::Text(&o.name),
                Arg::Text(&o.description),
                Arg::Bool(false),
                Arg::Time(o.created_at),
            ],
        )
        .await
        .map_err(name_taken)?;
    let created = object(rows.first().ok_or(StoreError::NotFound)?)?;
    // A new permission is the admin role's at once: grants changed.
    finish(tx, true, events).await?;
    Ok(created)
}

/// [`porteiro_core::store::RbacStore::rbac_objects`].
///
/// # Errors
/// On store failure.
pub async fn list(db: &dyn SqlDb, kind: RbacKind) -> StoreResult<Vec<RbacObject>> {
    let sql = format!("select {} from {} order by name", columns(""), kind.table());
    objects(&db.read(&sql, &[]).await?)
}

/// [`porteiro_core::store::RbacStore::rbac_object`] and `rbac_object_by_name`.
///
/// # Errors
/// On store failure.
pub async fn find(db: &dyn SqlDb, kind: RbacKind, key: Arg<'_>) -> StoreResult<Option<RbacObject>> {
    let column = if matches!(key, Arg::Uuid(_)) {
        "id"
    } else {
        "name"
    };
    let sql = format!(
        "select {} from {} where {column} = $1",
        columns(""),
        kind.table()
    );
    db.read(&sql, &[key]).await?.first().map(object).transpose()
}

async fn current(tx: &mut (dyn SqlTx + '_), kind: RbacKind, id: Uuid) -> StoreResult<RbacObject> {
    let sql = format!("select {} from {} where id = $1", columns(""), kind.table());
    let rows = tx.fetch(&sql, &[Arg::Uuid(id)]).await?;
    rows.first()
        .map(object)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

/// [`porteiro_core::store::RbacStore::update_rbac_object`].
///
/// # Errors
/// `NotFound`, `Conflict`, `Refused("builtin_protected")`; on store failure.
pub async fn update(
    db: &dyn SqlDb,
    kind: RbacKind,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
    now: DateTime<Utc>,
    events: &[NewAuditEvent],
) -> StoreResult<RbacObject> {
    let mut tx = db.begin(false).await?;
    let old = current(tx.as_mut(), kind, id).await?;
    if old.builtin {
        return Err(StoreError::Refused("builtin_protected"));
    }
    let name = name.unwrap_or(&old.name);
    let sql = format!(
        "update {} set name = $2, description = $3, updated_at = $4 where id = $1 returning {}",
        kind.table(),
        columns("")
    );
    let rows = tx
        .fetch(
            &sql,
            &[
                Arg::Uuid(id),
                Arg::Text(name),
                Arg::Text(description.unwrap_or(&old.description)),
                Arg::Time(now),
            ],
        )
        .await
        .map_err(name_taken)?;
    let updated = object(rows.first().ok_or(StoreError::NotFound)?)?;
    finish(tx, true, events).await?;
    Ok(updated)
}

/// [`porteiro_core::store::RbacStore::delete_rbac_object`].
///
/// # Errors
/// `NotFound`, `Refused`; on store failure.
pub async fn delete(
    db: &dyn SqlDb,
    kind: RbacKind,
    id: Uuid,
    events: &[NewAuditEvent],
) -> StoreResult<RbacObject> {
    let mut tx = db.begin(true).await?;
    let old = current(tx.as_mut(), kind, id).await?;
    if old.builtin {
        return Err(StoreError::Refused("builtin_protected"));
    }
    let before = admins_present(tx.as_mut()).await?;
    let sql = format!("delete from {} where id = $1", kind.table());
    tx.execute(&sql, &[Arg::Uuid(id)]).await?;
    still_administered(tx.as_mut(), before).await?;
    finish(tx, true, events).await?;
    Ok(old)
}

/// One side of a link row: its column in the link table, the table it refers to, the id.
type End = (&'static str, &'static str, Uuid);

/// Adds (`add` = creation time) or removes the link row `(a, b)` of `table`. Both ends must
/// exist; a removal runs serialised and keeps an administrator.
async fn link(
    db: &dyn SqlDb,
    table: &str,
    a: End,
    b: End,
    add: Option<DateTime<Utc>>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let mut tx = db.begin(add.is_none()).await?;
    if !exists(tx.as_mut(), a.1, a.2).await? || !exists(tx.as_mut(), b.1, b.2).await? {
        return Err(StoreError::NotFound);
    }
    if b.1 == "permissions" && a.2 == ADMIN_ROLE_ID {
        // The admin role holds every permission implicitly; its grants are not rows.
        return Err(StoreError::Refused("builtin_protected"));
    }
    if add.is_none() && b.1 == "roles" && b.2 == USER_ROLE_ID {
        // Every account holds `user`.
        return Err(StoreError::Refused("builtin_protected"));
    }
    let changed = if let Some(now) = add {
        let sql = format!(
            "insert into {table} ({}, {}, created_at) values ($1, $2, $3) on conflict do nothing",
            a.0, b.0
        );
        tx.execute(&sql, &[Arg::Uuid(a.2), Arg::Uuid(b.2), Arg::Time(now)])
            .await?
            == 1
    } else {
        let before = admins_present(tx.as_mut()).await?;
        let sql = format!("delete from {table} where {} = $1 and {} = $2", a.0, b.0);
        let n = tx.execute(&sql, &[Arg::Uuid(a.2), Arg::Uuid(b.2)]).await?;
        still_administered(tx.as_mut(), before).await?;
        n == 1
    };
    finish(tx, changed, events).await
}

/// [`porteiro_core::store::RbacStore::grant_permission`] and `revoke_permission`.
///
/// # Errors
/// `NotFound`, `Refused`; on store failure.
pub async fn link_permission(
    db: &dyn SqlDb,
    role_id: Uuid,
    permission_id: Uuid,
    grant: Option<DateTime<Utc>>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let role = ("role_id", "roles", role_id);
    let permission = ("permission_id", "permissions", permission_id);
    link(db, "role_permissions", role, permission, grant, events).await
}

/// [`porteiro_core::store::RbacStore::assign_role`] and `unassign_role`.
///
/// # Errors
/// `NotFound`, `Refused`; on store failure.
pub async fn link_role(
    db: &dyn SqlDb,
    user_id: UserId,
    role_id: Uuid,
    assign: Option<DateTime<Utc>>,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    let user = ("user_id", "users", user_id);
    let role = ("role_id", "roles", role_id);
    link(db, "user_roles", user, role, assign, events).await
}

/// [`porteiro_core::store::RbacStore::role_permissions`].
///
/// # Errors
/// On store failure.
pub async fn role_permissions(
    db: &dyn SqlDb,
    role_id: Uuid,
) -> StoreResult<Option<Vec<RbacObject>>> {
    if find(db, RbacKind::Role, Arg::Uuid(role_id))
        .await?
        .is_none()
    {
        return Ok(None);
    }
    if role_id == ADMIN_ROLE_ID {
        return list(db, RbacKind::Permission).await.map(Some);
    }
    let sql = format!(
        "select {} from permissions p join role_permissions rp on rp.permission_id = p.id \
         where rp.role_id = $1 order by p.name",
        columns("p.")
    );
    objects(&db.read(&sql, &[Arg::Uuid(role_id)]).await?).map(Some)
}

/// [`porteiro_core::store::RbacStore::user_roles`].
///
/// # Errors
/// On store failure.
pub async fn user_roles(db: &dyn SqlDb, user_id: UserId) -> StoreResult<Option<Vec<RbacObject>>> {
    if db
        .read("select id from users where id = $1", &[Arg::Uuid(user_id)])
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let sql = format!(
        "select {} from roles r join user_roles ur on ur.role_id = r.id \
         where ur.user_id = $1 order by r.name",
        columns("r.")
    );
    objects(&db.read(&sql, &[Arg::Uuid(user_id)]).await?).map(Some)
}

/// [`porteiro_core::store::RbacStore::user_grants`]: one query.
///
/// # Errors
/// On store failure.
pub async fn user_grants(db: &dyn SqlDb, user_id: UserId) -> StoreResult<Grants> {
    let rows = db
        .read(
            "select 'r' as kind, r.name as name from user_roles ur join roles r on r.id = ur.role_id \
               where ur.user_id = $1 \
             union all \
             select 'p', p.name from permissions p \
               where exists (select 1 from user_roles ur where ur.user_id = $1 and ur.role_id = $2) \
             union all \
             select 'p', p.name from user_roles ur \
               join role_permissions rp on rp.role_id = ur.role_id \
               join permissions p on p.id = rp.permission_id \
               where ur.user_id = $1",
            &[Arg::Uuid(user_id), Arg::Uuid(ADMIN_ROLE_ID)],
        )
        .await?;
    let mut grants = Grants::default();
    for row in &rows {
        let name = row.text("name")?;
        if row.text("kind")? == "r" {
            grants.roles.push(name);
        } else {
            grants.permissions.push(name);
        }
    }
    grants.roles.sort_unstable();
    grants.roles.dedup();
    grants.permissions.sort_unstable();
    grants.permissions.dedup();
    Ok(grants)
}

/// Implements [`porteiro_core::store::RbacStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb).
#[macro_export]
macro_rules! impl_rbac_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::RbacStore for $store {
            async fn create_rbac_object(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
                object: &::porteiro_core::domain::rbac::RbacObject,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<::porteiro_core::domain::rbac::RbacObject>
            {
                $crate::rbac::create(self, kind, object, events).await
            }
            async fn rbac_objects(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
            ) -> ::porteiro_core::store::StoreResult<Vec<::porteiro_core::domain::rbac::RbacObject>>
            {
                $crate::rbac::list(self, kind).await
            }
            async fn rbac_object(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
                id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::rbac::RbacObject>,
            > {
                $crate::rbac::find(self, kind, $crate::Arg::Uuid(id)).await
            }
            async fn rbac_object_by_name(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
                name: &str,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::rbac::RbacObject>,
            > {
                $crate::rbac::find(self, kind, $crate::Arg::Text(name)).await
            }
            async fn update_rbac_object(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
                id: ::uuid::Uuid,
                name: Option<&str>,
                description: Option<&str>,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<::porteiro_core::domain::rbac::RbacObject>
            {
                $crate::rbac::update(self, kind, id, name, description, now, events).await
            }
            async fn delete_rbac_object(
                &self,
                kind: ::porteiro_core::domain::rbac::RbacKind,
                id: ::uuid::Uuid,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<::porteiro_core::domain::rbac::RbacObject>
            {
                $crate::rbac::delete(self, kind, id, events).await
            }
            async fn grant_permission(
                &self,
                role_id: ::uuid::Uuid,
                permission_id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::rbac::link_permission(self, role_id, permission_id, Some(now), events).await
            }
            async fn revoke_permission(
                &self,
                role_id: ::uuid::Uuid,
                permission_id: ::uuid::Uuid,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::rbac::link_permission(self, role_id, permission_id, None, events).await
            }
            async fn role_permissions(
                &self,
                role_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Option<Vec<::porteiro_core::domain::rbac::RbacObject>>,
            > {
                $crate::rbac::role_permissions(self, role_id).await
            }
            async fn assign_role(
                &self,
                user_id: ::uuid::Uuid,
                role_id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::rbac::link_role(self, user_id, role_id, Some(now), events).await
            }
            async fn unassign_role(
                &self,
                user_id: ::uuid::Uuid,
                role_id: ::uuid::Uuid,
                events: &[::porteiro_core::domain::audit::NewAuditEvent],
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::rbac::link_role(self, user_id, role_id, None, events).await
            }
            async fn user_roles(
                &self,
                user_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Option<Vec<::porteiro_core::domain::rbac::RbacObject>>,
            > {
                $crate::rbac::user_roles(self, user_id).await
            }
            async fn user_grants(
                &self,
                user_id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<::porteiro_core::domain::rbac::Grants> {
                $crate::rbac::user_grants(self, user_id).await
            }
        }
    };
}
