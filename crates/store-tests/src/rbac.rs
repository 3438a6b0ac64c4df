//! The contract of roles and permissions: built-ins from the migration, unique names, protected
//! built-ins, links that change once, implicit `admin` grants, and the last administrator kept
//! even against concurrent removals.

use std::sync::Arc;

use chrono::Duration;
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::rbac::{ADMIN_ROLE_ID, Permission, RbacKind, RbacObject, USER_ROLE_ID};
use porteiro_core::domain::{NewAuditEvent, NewUser, ProfileUpdate};
use porteiro_core::store::{Store, StoreError};
use uuid::Uuid;

use crate::{ev, new_user, t0, user};

fn object(name: &str) -> RbacObject {
    RbacObject {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        description: "test".to_owned(),
        builtin: false,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn event(event_type: &'static str) -> NewAuditEvent {
    NewAuditEvent { event_type, ..ev() }
}

async fn admin(store: &Arc<dyn Store>, name: &str) -> Uuid {
    store
        .insert_user(
            &NewUser {
                is_admin: true,
                ..new_user(name)
            },
            &[],
        )
        .await
        .unwrap()
        .id
}

pub async fn builtins_exist_with_fixed_ids(store: Arc<dyn Store>) {
    let perms = store.rbac_objects(RbacKind::Permission).await.unwrap();
    for p in Permission::ALL {
        let found = perms.iter().find(|o| o.name == p.name()).unwrap();
        assert_eq!(found.id, p.id(), "{p}");
        assert!(found.builtin);
    }
    let roles = store.rbac_objects(RbacKind::Role).await.unwrap();
    let names: Vec<_> = roles
        .iter()
        .map(|r| (r.id, r.name.as_str(), r.builtin))
        .collect();
    assert_eq!(
        names,
        [(ADMIN_ROLE_ID, "admin", true), (USER_ROLE_ID, "user", true)]
    );
    // New accounts hold `user`; administrators `admin` too.
    let plain = user(&store, "plain").await;
    assert_eq!(plain.roles, ["user"]);
    let boss = admin(&store, "boss").await;
    let grants = store.user_grants(boss).await.unwrap();
    assert_eq!(grants.roles, ["admin", "user"]);
    assert_eq!(grants.permissions.len(), perms.len());
    assert_eq!(
        store.user_by_id(boss).await.unwrap().unwrap().roles,
        ["admin", "user"]
    );
    assert!(
        store
            .user_grants(plain.id)
            .await
            .unwrap()
            .permissions
            .is_empty()
    );
    assert_eq!(
        store.user_grants(Uuid::new_v4()).await.unwrap(),
        Default::default()
    );
}

pub async fn rbac_objects_are_unique_and_built_ins_protected(store: Arc<dyn Store>) {
    for kind in [RbacKind::Role, RbacKind::Permission] {
        let name = if kind == RbacKind::Role {
            "support"
        } else {
            "reports:read"
        };
        let created = store
            .create_rbac_object(kind, &object(name), &[event(kind::ROLE_CREATED)])
            .await
            .unwrap();
        assert_eq!((created.name.as_str(), created.builtin), (name, false));
        let err = store
            .create_rbac_object(kind, &object(name), &[event(kind::ROLE_CREATED)])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "name" }),
            "{err:?}"
        );
        assert_eq!(
            store.rbac_object_by_name(kind, name).await.unwrap(),
            Some(created.clone())
        );
        let later = t0() + Duration::minutes(1);
        let renamed = store
            .update_rbac_object(
                kind,
                created.id,
                Some(&format!("{name}2")),
                Some("new"),
                later,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (renamed.description.as_str(), renamed.updated_at),
            ("new", later)
        );
        assert_eq!(
            store.rbac_object(kind, created.id).await.unwrap(),
            Some(renamed)
        );
        // A name taken by another object.
        let other = store
            .create_rbac_object(kind, &object(name), &[])
            .await
            .unwrap();
        let err = store
            .update_rbac_object(kind, other.id, Some(&format!("{name}2")), None, later, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { field: "name" }),
            "{err:?}"
        );
        let deleted = store
            .delete_rbac_object(kind, created.id, &[])
            .await
            .unwrap();
        assert_eq!(deleted.id, created.id);
        assert_eq!(store.rbac_object(kind, created.id).await.unwrap(), None);
        assert!(matches!(
            store.delete_rbac_object(kind, created.id, &[]).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store
                .update_rbac_object(kind, Uuid::new_v4(), None, None, later, &[])
                .await,
            Err(StoreError::NotFound)
        ));
    }
    let users_read = Permission::UsersRead.id();
    for (kind, id) in [
        (RbacKind::Role, ADMIN_ROLE_ID),
        (RbacKind::Role, USER_ROLE_ID),
        (RbacKind::Permission, users_read),
    ] {
        assert!(matches!(
            store
                .update_rbac_object(kind, id, Some("renamed"), None, t0(), &[])
                .await,
            Err(StoreError::Refused("builtin_protected"))
        ));
        assert!(matches!(
            store.delete_rbac_object(kind, id, &[]).await,
            Err(StoreError::Refused("builtin_protected"))
        ));
        assert!(matches!(
            store
                .update_rbac_object(kind, id, None, Some("described"), t0(), &[])
                .await,
            Err(StoreError::Refused("builtin_protected"))
        ));
    }
    // The admin role's grants are implicit and cannot be edited.
    assert!(matches!(
        store
            .grant_permission(ADMIN_ROLE_ID, users_read, t0(), &[])
            .await,
        Err(StoreError::Refused("builtin_protected"))
    ));
}

pub async fn links_change_once_and_show_in_grants(store: Arc<dyn Store>) {
    let u = user(&store, "linked").await;
    let role = store
        .create_rbac_object(RbacKind::Role, &object("auditor"), &[])
        .await
        .unwrap();
    let audit_read = Permission::AuditRead.id();
    let granted = [event(kind::ROLE_PERMISSION_GRANTED)];
    assert!(
        store
            .grant_permission(role.id, audit_read, t0(), &granted)
            .await
            .unwrap()
    );
    assert!(
        !store
            .grant_permission(role.id, audit_read, t0(), &granted)
            .await
            .unwrap()
    );
    let perms = store.role_permissions(role.id).await.unwrap().unwrap();
    assert_eq!(
        perms.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["audit:read"]
    );
    assert!(
        store
            .role_permissions(Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    let all = store
        .role_permissions(ADMIN_ROLE_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        all.len(),
        store
            .rbac_objects(RbacKind::Permission)
            .await
            .unwrap()
            .len()
    );

    let assigned = [event(kind::USER_ROLE_ASSIGNED)];
    assert!(
        store
            .assign_role(u.id, role.id, t0(), &assigned)
            .await
            .unwrap()
    );
    assert!(
        !store
            .assign_role(u.id, role.id, t0(), &assigned)
            .await
            .unwrap()
    );
    let grants = store.user_grants(u.id).await.unwrap();
    assert_eq!(grants.roles, ["auditor", "user"]);
    assert_eq!(grants.permissions, ["audit:read"]);
    assert!(grants.allows("audit:read"));
    let roles = store.user_roles(u.id).await.unwrap().unwrap();
    assert_eq!(
        roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["auditor", "user"]
    );
    assert!(store.user_roles(Uuid::new_v4()).await.unwrap().is_none());
    assert_eq!(
        store.user_by_id(u.id).await.unwrap().unwrap().roles,
        ["auditor", "user"]
    );
    // Unknown ends of a link.
    for result in [
        store.assign_role(Uuid::new_v4(), role.id, t0(), &[]).await,
        store.assign_role(u.id, Uuid::new_v4(), t0(), &[]).await,
        store
            .grant_permission(role.id, Uuid::new_v4(), t0(), &[])
            .await,
        store
            .grant_permission(Uuid::new_v4(), audit_read, t0(), &[])
            .await,
    ] {
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
    // Events are written only by calls that changed something: two grants, two assignments.
    let count = |t: &'static str| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_audit(
                    &AuditFilter {
                        event_type: Some(t.to_owned()),
                        ..AuditFilter::default()
                    },
                    50,
                )
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(count(kind::ROLE_PERMISSION_GRANTED).await, 1);
    assert_eq!(count(kind::USER_ROLE_ASSIGNED).await, 1);

    // Taking back, and deleting: the grants go with them.
    assert!(
        store
            .revoke_permission(role.id, audit_read, &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_permission(role.id, audit_read, &[])
            .await
            .unwrap()
    );
    assert!(
        store
            .user_grants(u.id)
            .await
            .unwrap()
            .permissions
            .is_empty()
    );
    store
        .grant_permission(role.id, audit_read, t0(), &[])
        .await
        .unwrap();
    store
        .delete_rbac_object(RbacKind::Role, role.id, &[])
        .await
        .unwrap();
    let grants = store.user_grants(u.id).await.unwrap();
    assert_eq!(
        (grants.roles.as_slice(), grants.permissions.len()),
        (["user".to_owned()].as_slice(), 0)
    );
    // A deleted permission leaves the roles that had it.
    let custom = store
        .create_rbac_object(RbacKind::Permission, &object("reports:read"), &[])
        .await
        .unwrap();
    store
        .grant_permission(USER_ROLE_ID, custom.id, t0(), &[])
        .await
        .unwrap();
    assert!(
        store
            .user_grants(u.id)
            .await
            .unwrap()
            .allows("reports:read")
    );
    store
        .delete_rbac_object(RbacKind::Permission, custom.id, &[])
        .await
        .unwrap();
    assert!(
        !store
            .user_grants(u.id)
            .await
            .unwrap()
            .allows("reports:read")
    );
}

pub async fn the_last_administrator_cannot_lose_the_role(store: Arc<dyn Store>) {
    // A deployment without administrators is left alone.
    let nobody = user(&store, "nobody").await;
    let extra = store
        .create_rbac_object(RbacKind::Role, &object("extra"), &[])
        .await
        .unwrap();
    store
        .assign_role(nobody.id, extra.id, t0(), &[])
        .await
        .unwrap();
    assert!(store.unassign_role(nobody.id, extra.id, &[]).await.unwrap());
    // Every account keeps `user`.
    assert!(matches!(
        store.unassign_role(nobody.id, USER_ROLE_ID, &[]).await,
        Err(StoreError::Refused("builtin_protected"))
    ));
    let a = admin(&store, "first").await;
    assert!(matches!(
        store
            .unassign_role(a, ADMIN_ROLE_ID, &[event(kind::USER_ROLE_REMOVED)])
            .await,
        Err(StoreError::Refused("last_admin"))
    ));
    // The refused call wrote nothing.
    let removed = store
        .list_audit(
            &AuditFilter {
                event_type: Some(kind::USER_ROLE_REMOVED.to_owned()),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    assert!(removed.is_empty());
    // A disabled administrator does not count.
    let b = admin(&store, "second").await;
    store
        .update_profile(
            b,
            &ProfileUpdate {
                is_active: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        store.unassign_role(a, ADMIN_ROLE_ID, &[]).await,
        Err(StoreError::Refused("last_admin"))
    ));
    // roles:manage through a custom role: its last holder keeps it too.
    let keeper = store
        .create_rbac_object(RbacKind::Role, &object("keeper"), &[])
        .await
        .unwrap();
    store
        .grant_permission(keeper.id, Permission::RolesManage.id(), t0(), &[])
        .await
        .unwrap();
    let c = user(&store, "third").await;
    store.assign_role(c.id, keeper.id, t0(), &[]).await.unwrap();
    assert!(
        store
            .revoke_permission(keeper.id, Permission::RolesManage.id(), &[])
            .await
            .unwrap()
    );
    assert!(store.unassign_role(c.id, keeper.id, &[]).await.unwrap());
}

pub async fn concurrent_removals_leave_one_administrator(store: Arc<dyn Store>) {
    for round in 0..5 {
        let a = admin(&store, &format!("a{round}")).await;
        let b = admin(&store, &format!("b{round}")).await;
        // Every other administrator of earlier rounds is gone already except one of the pair.
        let (x, y) = tokio::join!(
            store.unassign_role(a, ADMIN_ROLE_ID, &[]),
            store.unassign_role(b, ADMIN_ROLE_ID, &[]),
        );
        let oks = [&x, &y].iter().filter(|r| matches!(r, Ok(true))).count();
        let refused = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Refused("last_admin"))))
            .count();
        if round == 0 {
            assert_eq!((oks, refused), (1, 1), "{x:?} {y:?}");
        } else {
            // An administrator from the previous round remains, so both may go.
            assert_eq!(oks, 2, "{x:?} {y:?}");
        }
        let admins = store.active_administrators(10).await.unwrap();
        assert!(!admins.is_empty());
    }
}
