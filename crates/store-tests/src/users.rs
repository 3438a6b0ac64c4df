//! The contract of user administration (issue 15): the list's search and filters, the
//! last-administrator rule on deleting and disabling accounts, and changes of address through a
//! link mailed to the new one.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::email_confirmation::NewEmailConfirmation;
use porteiro_core::domain::rbac::{ADMIN_ROLE_ID, RbacKind, RbacObject, USER_ROLE_ID};
use porteiro_core::domain::{NewAuditEvent, ProfileUpdate, SearchPrefix, User, UserId, UserQuery};
use porteiro_core::store::{Store, StoreError};
use uuid::Uuid;

use crate::{ev, hash, new_user, t0};

/// Creates `name` at `t0 + seconds` (so creation order is known), with `email` when given.
async fn created(
    store: &Arc<dyn Store>,
    name: &str,
    email: Option<&str>,
    seconds: i64,
    admin: bool,
) -> User {
    let mut n = new_user(name);
    n.now = t0() + Duration::seconds(seconds);
    n.is_admin = admin;
    if let Some(email) = email {
        email.clone_into(&mut n.email);
    }
    store.insert_user(&n, &[]).await.unwrap()
}

async fn ids(store: &Arc<dyn Store>, query: &UserQuery) -> (Vec<UserId>, u64) {
    let (users, total) = store.list_users(query, 0, 100).await.unwrap();
    (users.into_iter().map(|u| u.id).collect(), total)
}

fn search(q: &str) -> UserQuery {
    UserQuery {
        prefix: SearchPrefix::parse(q).unwrap(),
        ..UserQuery::all(t0())
    }
}

pub async fn user_search_matches_email_or_username_prefixes(store: Arc<dyn Store>) {
    let ana = created(&store, "Ana_Silva", Some("ana_silva@example.com"), 0, false).await;
    let bel = created(&store, "anabel", Some("bel@example.org"), 1, false).await;
    let bruno = created(&store, "bruno", Some("ana.b@example.net"), 2, false).await;
    let axb = created(&store, "axb", Some("zed@example.com"), 3, false).await;
    let jose = created(&store, "jose", Some("jos\u{e9}@example.com"), 4, false).await;

    // Case-insensitive, email or username, in creation order, with the count of matches.
    assert_eq!(
        ids(&store, &search("ANA")).await,
        (vec![ana.id, bel.id, bruno.id], 3)
    );
    assert_eq!(ids(&store, &search("ana_S")).await, (vec![ana.id], 1));
    assert_eq!(ids(&store, &search("ana.")).await, (vec![bruno.id], 1));
    assert_eq!(ids(&store, &search("bel@")).await, (vec![bel.id], 1));
    assert_eq!(ids(&store, &search("Jos")).await, (vec![jose.id], 1));
    assert_eq!(ids(&store, &search("JOS\u{c9}")).await, (vec![jose.id], 1));
    assert_eq!(ids(&store, &search("z")).await, (vec![axb.id], 1));
    // Only prefixes: no match in the middle.
    assert_eq!(ids(&store, &search("silva")).await, (vec![], 0));
    // `_`, `%` and `\` are plain characters, not patterns.
    assert_eq!(ids(&store, &search("a_")).await, (vec![], 0));
    assert_eq!(ids(&store, &search("%")).await, (vec![], 0));
    assert_eq!(ids(&store, &search("a%")).await, (vec![], 0));
    assert_eq!(ids(&store, &search("\\")).await, (vec![], 0));
    // A term past every stored string matches nothing; no term matches everyone.
    assert_eq!(ids(&store, &search("\u{10FFFF}")).await, (vec![], 0));
    assert_eq!(ids(&store, &UserQuery::all(t0())).await.1, 5);
}

pub async fn user_list_filters_by_state_and_role(store: Arc<dyn Store>) {
    let admin = created(&store, "root", None, 0, true).await;
    let active = created(&store, "ana", None, 1, false).await;
    let disabled = created(&store, "bea", None, 2, false).await;
    let locked = created(&store, "caio", None, 3, false).await;
    let custom = created(&store, "duda", None, 4, false).await;
    store
        .update_profile(
            disabled.id,
            &ProfileUpdate {
                is_active: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    let lock_end = t0() + Duration::minutes(5);
    assert!(
        store
            .record_failed_login(locked.id, t0(), 1, lock_end, &ev(), &ev())
            .await
            .unwrap()
    );
    let auditor = RbacObject {
        id: Uuid::now_v7(),
        name: "auditor".to_owned(),
        description: String::new(),
        builtin: false,
        created_at: t0(),
        updated_at: t0(),
    };
    let role = store
        .create_rbac_object(RbacKind::Role, &auditor, &[])
        .await
        .unwrap();
    assert!(
        store
            .assign_role(custom.id, role.id, t0(), &[])
            .await
            .unwrap()
    );

    let at = |now: DateTime<Utc>| UserQuery::all(now);
    let q = |f: &dyn Fn(&mut UserQuery)| {
        let mut query = at(t0());
        f(&mut query);
        query
    };
    assert_eq!(
        ids(&store, &q(&|q| q.active = Some(false))).await,
        (vec![disabled.id], 1)
    );
    assert_eq!(
        ids(&store, &q(&|q| q.active = Some(true))).await,
        (vec![admin.id, active.id, locked.id, custom.id], 4)
    );
    assert_eq!(
        ids(&store, &q(&|q| q.locked = Some(true))).await,
        (vec![locked.id], 1)
    );
    assert_eq!(ids(&store, &q(&|q| q.locked = Some(false))).await.1, 4);
    // A lock is judged at the query's time: once it ran out, the account is not locked.
    let later = UserQuery {
        locked: Some(true),
        ..at(lock_end)
    };
    assert_eq!(ids(&store, &later).await, (vec![], 0));
    assert_eq!(
        ids(&store, &q(&|q| q.role_id = Some(ADMIN_ROLE_ID))).await,
        (vec![admin.id], 1)
    );
    assert_eq!(
        ids(&store, &q(&|q| q.role_id = Some(role.id))).await,
        (vec![custom.id], 1)
    );
    assert_eq!(
        ids(&store, &q(&|q| q.role_id = Some(USER_ROLE_ID))).await.1,
        5
    );
    assert_eq!(
        ids(&store, &q(&|q| q.role_id = Some(Uuid::new_v4()))).await,
        (vec![], 0)
    );
    // Filters combine; the total counts every match, not the page.
    let combined = UserQuery {
        prefix: SearchPrefix::parse("CA").unwrap(),
        active: Some(true),
        locked: Some(true),
        role_id: Some(USER_ROLE_ID),
        now: t0(),
    };
    assert_eq!(ids(&store, &combined).await, (vec![locked.id], 1));
    let active_only = q(&|q| q.active = Some(true));
    let (page, total) = store.list_users(&active_only, 1, 2).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page.iter().map(|u| u.id).collect::<Vec<_>>(),
        [active.id, locked.id]
    );
    let (past, total) = store.list_users(&active_only, 10, 2).await.unwrap();
    assert!(past.is_empty());
    assert_eq!(total, 4);
    // Rows come back whole, roles included.
    let (page, _) = store
        .list_users(&q(&|q| q.role_id = Some(ADMIN_ROLE_ID)), 0, 1)
        .await
        .unwrap();
    assert_eq!(page[0].roles, ["admin", "user"]);
    assert_eq!(page[0], store.user_by_id(admin.id).await.unwrap().unwrap());
}

fn deleted_event(n: i64) -> NewAuditEvent {
    NewAuditEvent {
        event_type: kind::USER_DELETED,
        details: serde_json::json!({"n": n}),
        ..ev()
    }
}

async fn written(store: &Arc<dyn Store>, event_type: &str) -> usize {
    let filter = AuditFilter {
        event_type: Some(event_type.to_owned()),
        ..AuditFilter::default()
    };
    store.list_audit(&filter, 200).await.unwrap().len()
}

fn disable() -> ProfileUpdate {
    ProfileUpdate {
        is_active: Some(false),
        ..ProfileUpdate::default()
    }
}

pub async fn the_last_admin_can_be_neither_deleted_nor_disabled(store: Arc<dyn Store>) {
    let root = created(&store, "root", None, 0, true).await;
    let ana = created(&store, "ana", None, 1, false).await;
    let refused = store.delete_user(root.id, &[deleted_event(1)]).await;
    assert!(
        matches!(refused, Err(StoreError::Refused("last_admin"))),
        "{refused:?}"
    );
    let refused = store
        .update_profile(root.id, &disable(), t0(), &[ev()])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Refused("last_admin"))),
        "{refused:?}"
    );
    let root_now = store.user_by_id(root.id).await.unwrap().unwrap();
    assert!(root_now.is_active, "nothing changed");
    assert_eq!(written(&store, kind::USER_DELETED).await, 0);
    // Other accounts are deleted and disabled as before.
    store
        .update_profile(ana.id, &disable(), t0(), &[])
        .await
        .unwrap();
    assert!(
        store
            .delete_user(ana.id, &[deleted_event(2)])
            .await
            .unwrap()
            .is_some()
    );
    // With a second administrator, the first can go; then the second is the last.
    let bea = created(&store, "bea", None, 2, true).await;
    assert!(store.delete_user(root.id, &[]).await.unwrap().is_some());
    assert!(matches!(
        store.delete_user(bea.id, &[]).await,
        Err(StoreError::Refused("last_admin"))
    ));
    // A disabled administrator does not count: disabling the other would leave none.
    let caio = created(&store, "caio", None, 3, true).await;
    store
        .update_profile(caio.id, &disable(), t0(), &[])
        .await
        .unwrap();
    assert!(matches!(
        store.update_profile(bea.id, &disable(), t0(), &[]).await,
        Err(StoreError::Refused("last_admin"))
    ));
    // Deleting a disabled administrator removes no active one.
    assert!(store.delete_user(caio.id, &[]).await.unwrap().is_some());
    assert_eq!(written(&store, kind::USER_DELETED).await, 1);
}

pub async fn concurrent_removals_of_the_last_two_admins_leave_one(store: Arc<dyn Store>) {
    // Each round races the removal of the two administrators there are (the survivor of the
    // previous round and a new one): two deletions, a deletion and a disable, two disables.
    let mut survivor = created(&store, "root", None, 0, true).await;
    for round in 0..3 {
        let other = created(&store, &format!("admin{round}"), None, round + 1, true).await;
        let remove = |id: Uuid, delete: bool| {
            let store = store.clone();
            async move {
                if delete {
                    store.delete_user(id, &[]).await.map(|_| ())
                } else {
                    store
                        .update_profile(id, &disable(), t0(), &[])
                        .await
                        .map(|_| ())
                }
            }
        };
        let (first, second) =
            tokio::join!(remove(survivor.id, round < 2), remove(other.id, round == 0));
        let refused = [&first, &second]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Refused("last_admin"))))
            .count();
        assert_eq!(refused, 1, "round {round}: {first:?} {second:?}");
        assert!(first.is_ok() || second.is_ok(), "round {round}");
        let admins = store.active_administrators(10).await.unwrap();
        assert_eq!(admins.len(), 1, "round {round}");
        survivor = admins.into_iter().next().unwrap();
    }
}

fn change(u: &User, token: &str, to: &str, now: DateTime<Utc>) -> NewEmailConfirmation {
    NewEmailConfirmation {
        token_hash: hash(token),
        user_id: u.id,
        email: to.to_owned(),
        expires_at: now + Duration::hours(24),
        now,
    }
}

fn requested() -> NewAuditEvent {
    NewAuditEvent {
        event_type: kind::EMAIL_CHANGE_REQUESTED,
        ..ev()
    }
}

fn changed() -> NewAuditEvent {
    NewAuditEvent {
        event_type: kind::EMAIL_CHANGED,
        ..ev()
    }
}

async fn ask(store: &Arc<dyn Store>, u: &User, token: &str, to: &str, now: DateTime<Utc>) -> bool {
    store
        .issue_email_change(
            &change(u, token, to, now),
            now - Duration::hours(1),
            3,
            &[requested()],
        )
        .await
        .unwrap()
}

async fn use_change(
    store: &Arc<dyn Store>,
    u: &User,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    store
        .confirm_email_change(&hash(token), u.id, &u.email, now, &[changed()])
        .await
}

pub async fn email_change_links_change_the_address_when_used(store: Arc<dyn Store>) {
    let ana = created(&store, "ana", None, 0, false).await;
    store
        .replace_reset_token(
            ana.id,
            &hash("reset"),
            t0() + Duration::minutes(30),
            t0(),
            t0() - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    // The current address is no change.
    assert!(!ask(&store, &ana, "same", &ana.email, t0()).await);
    assert!(ask(&store, &ana, "c", "ana.new@example.org", t0()).await);
    assert_eq!(written(&store, kind::EMAIL_CHANGE_REQUESTED).await, 1);
    assert_eq!(
        store
            .confirmation_token_owner(&hash("c"), t0())
            .await
            .unwrap(),
        Some(ana.id)
    );
    // Nothing changes until the link is used; a plain confirmation does not use it.
    let still = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert_eq!(still.email, ana.email);
    assert!(
        !store
            .confirm_email(&hash("c"), ana.id, t0(), &[ev()])
            .await
            .unwrap()
    );
    let at = t0() + Duration::minutes(5);
    assert!(use_change(&store, &ana, "c", at).await.unwrap());
    let ana_now = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert_eq!(ana_now.email, "ana.new@example.org");
    assert!(ana_now.email_verified);
    assert_eq!(ana_now.email_verified_at, Some(at));
    assert_eq!(ana_now.updated_at, at);
    assert_eq!(written(&store, kind::EMAIL_CHANGED).await, 1);
    // Found under the new address only; reset links mailed to the old one are gone.
    assert_eq!(
        store
            .user_by_email("ana.new@example.org")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(ana.id)
    );
    assert!(store.user_by_email(&ana.email).await.unwrap().is_none());
    assert_eq!(
        store.reset_token_owner(&hash("reset"), at).await.unwrap(),
        None
    );
    // Spent: not found, not usable again, no second event.
    assert_eq!(
        store
            .confirmation_token_owner(&hash("c"), at)
            .await
            .unwrap(),
        None
    );
    assert!(!use_change(&store, &ana_now, "c", at).await.unwrap());
    assert_eq!(written(&store, kind::EMAIL_CHANGED).await, 1);
}

pub async fn email_change_links_follow_the_confirmation_rules(store: Arc<dyn Store>) {
    let ana = created(&store, "ana", None, 0, false).await;
    // A newer link (of either kind) spends the older ones; the limit counts both kinds.
    let plain = NewEmailConfirmation {
        email: ana.email.clone(),
        ..change(&ana, "plain", "", t0())
    };
    assert!(
        store
            .issue_email_confirmation(&plain, t0() - Duration::hours(1), 3, &[ev()])
            .await
            .unwrap()
    );
    assert!(ask(&store, &ana, "c1", "one@example.org", t0()).await);
    assert_eq!(
        store
            .confirmation_token_owner(&hash("plain"), t0())
            .await
            .unwrap(),
        None
    );
    assert!(ask(&store, &ana, "c2", "two@example.org", t0()).await);
    assert!(
        !ask(&store, &ana, "c3", "three@example.org", t0()).await,
        "limit"
    );
    assert_eq!(written(&store, kind::EMAIL_CHANGE_REQUESTED).await, 2);
    assert!(!use_change(&store, &ana, "c1", t0()).await.unwrap());
    // The address the change was asked from must still be the account's.
    assert!(
        !store
            .confirm_email_change(&hash("c2"), ana.id, "other@example.com", t0(), &[changed()])
            .await
            .unwrap()
    );
    // Expired links do nothing.
    let end = t0() + Duration::hours(24);
    assert!(!use_change(&store, &ana, "c2", end).await.unwrap());
    // Disabled accounts neither get nor use change links; the refusals spent nothing.
    store
        .update_profile(ana.id, &disable(), t0(), &[])
        .await
        .unwrap();
    let later = t0() + Duration::hours(2);
    assert!(!ask(&store, &ana, "c4", "four@example.org", later).await);
    assert!(!use_change(&store, &ana, "c2", t0()).await.unwrap());
    store
        .update_profile(
            ana.id,
            &ProfileUpdate {
                is_active: Some(true),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    assert!(use_change(&store, &ana, "c2", t0()).await.unwrap());
    assert_eq!(
        store.user_by_id(ana.id).await.unwrap().unwrap().email,
        "two@example.org"
    );
    assert_eq!(written(&store, kind::EMAIL_CHANGED).await, 1);
}

pub async fn an_email_change_to_a_taken_address_changes_nothing(store: Arc<dyn Store>) {
    let ana = created(&store, "ana", None, 0, false).await;
    let bea = created(&store, "bea", None, 1, false).await;
    // Asking is not refused: the store does not tell which addresses have accounts.
    assert!(ask(&store, &ana, "c", &bea.email, t0()).await);
    let refused = use_change(&store, &ana, "c", t0()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { field: "email" })),
        "{refused:?}"
    );
    assert_eq!(store.user_by_id(ana.id).await.unwrap().unwrap(), ana);
    assert_eq!(written(&store, kind::EMAIL_CHANGED).await, 0);
    // The token stays live: once the address is free again, the link works.
    assert_eq!(
        store
            .confirmation_token_owner(&hash("c"), t0())
            .await
            .unwrap(),
        Some(ana.id)
    );
    store.delete_user(bea.id, &[]).await.unwrap();
    assert!(use_change(&store, &ana, "c", t0()).await.unwrap());
    assert_eq!(
        store.user_by_id(ana.id).await.unwrap().unwrap().email,
        bea.email
    );
}

pub async fn concurrent_uses_of_one_email_change_link_have_one_winner(store: Arc<dyn Store>) {
    let ana = created(&store, "ana", None, 0, false).await;
    assert!(ask(&store, &ana, "c", "new@example.org", t0()).await);
    let outcomes = futures::future::join_all((0..8).map(|_| {
        let (store, ana) = (store.clone(), ana.clone());
        async move { use_change(&store, &ana, "c", t0()).await.unwrap() }
    }))
    .await;
    assert_eq!(outcomes.iter().filter(|won| **won).count(), 1);
    assert_eq!(written(&store, kind::EMAIL_CHANGED).await, 1);
}
