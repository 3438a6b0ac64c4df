//! The contract of security events: a mutating call writes the events it is given in the same
//! transaction as its change — all of them when the change commits, none when it changes nothing
//! or fails — and the conditional ones (a lock being set, a spent refresh token presented again)
//! exactly when their condition held.

use std::sync::Arc;

use chrono::Duration;
use porteiro_core::domain::audit::{AuditFilter, NewAuditEvent, Outcome, kind};
use porteiro_core::domain::session::RotateOutcome;
use porteiro_core::domain::{NewUser, ProfileUpdate};
use porteiro_core::store::{Store, StoreError, StoredKey};
use uuid::Uuid;

use crate::{hash, new_session, new_user, rotate, session, t0, user};

/// An event recognisable by its number `n`.
pub(crate) fn numbered(n: i64) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: t0(),
        event_type: kind::USER_UPDATED,
        outcome: Outcome::Success,
        user_id: None,
        actor_id: None,
        ip_address: Some("192.0.2.9".to_owned()),
        user_agent: Some("contract".to_owned()),
        details: serde_json::json!({ "n": n }),
    }
}

/// The numbers of the events in the log, in the order they were written.
pub(crate) async fn written(store: &Arc<dyn Store>) -> Vec<i64> {
    let mut events = store
        .list_audit(&AuditFilter::default(), 200)
        .await
        .unwrap();
    events.reverse();
    events
        .iter()
        .filter_map(|e| e.details["n"].as_i64())
        .collect()
}

fn key(kid: &str) -> StoredKey {
    StoredKey {
        kid: kid.to_owned(),
        algorithm: "EdDSA".to_owned(),
        public_key: vec![1; 32],
        private_key_enc: vec![2; 48],
        created_at: t0(),
        retired_at: None,
    }
}

pub async fn events_commit_with_their_change(store: Arc<dyn Store>) {
    let ana = store
        .insert_user(&new_user("ana"), &[numbered(1), numbered(2)])
        .await
        .unwrap();
    store
        .update_profile(
            ana.id,
            &ProfileUpdate {
                locale: Some("pt-BR".to_owned()),
                ..ProfileUpdate::default()
            },
            t0(),
            &[numbered(3)],
        )
        .await
        .unwrap();
    assert!(
        store
            .unlock_user(ana.id, t0(), &[numbered(4)])
            .await
            .unwrap()
    );
    let (s, r) = new_session(&ana, "r1", t0(), 0);
    store
        .create_session(&s, &r, &[numbered(5)])
        .await
        .unwrap()
        .expect("created");
    assert!(
        store
            .revoke_session(ana.id, s.id, t0(), &[numbered(6)])
            .await
            .unwrap()
    );
    store
        .revoke_all_sessions(ana.id, None, t0(), &[numbered(7)])
        .await
        .unwrap();
    store
        .change_password(ana.id, "h2", None, None, t0(), &[numbered(8)])
        .await
        .unwrap()
        .expect("changed");
    assert!(
        store
            .replace_reset_token(
                ana.id,
                &hash("reset"),
                t0() + Duration::minutes(30),
                t0(),
                t0() - Duration::minutes(15),
                3,
                &[numbered(9)],
            )
            .await
            .unwrap()
    );
    store
        .complete_reset(&hash("reset"), ana.id, "h3", t0(), &[numbered(10)])
        .await
        .unwrap()
        .expect("reset");
    store
        .insert_signing_key(&key("k1"), &[numbered(11)])
        .await
        .unwrap();
    assert!(
        store
            .retire_signing_key("k1", t0(), &[numbered(12)])
            .await
            .unwrap()
    );
    assert!(
        store
            .rewrite_email(
                ana.id,
                "ana@example.com",
                "ana@example.org",
                t0(),
                &[numbered(13)]
            )
            .await
            .unwrap()
    );
    store
        .record_failed_login_unknown(
            &hash("who"),
            t0(),
            5,
            t0() + Duration::minutes(5),
            &[numbered(14)],
        )
        .await
        .unwrap();
    store
        .delete_user(ana.id, &[numbered(15)])
        .await
        .unwrap()
        .expect("deleted");
    assert_eq!(written(&store).await, (1..=15).collect::<Vec<_>>());
    // What the event says is what was written, with its client and time.
    let listed = store.list_audit(&AuditFilter::default(), 1).await.unwrap();
    assert_eq!(
        (
            listed[0].event_type.as_str(),
            listed[0].outcome.as_str(),
            listed[0].ip_address.as_deref(),
            listed[0].user_agent.as_deref(),
            listed[0].occurred_at,
        ),
        (
            kind::USER_UPDATED,
            "success",
            Some("192.0.2.9"),
            Some("contract"),
            t0()
        )
    );
}

pub async fn calls_that_change_nothing_write_no_event(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let ghost = Uuid::now_v7();
    assert!(
        !store
            .unlock_user(ghost, t0(), &[numbered(1)])
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .update_profile(ghost, &ProfileUpdate::default(), t0(), &[numbered(2)])
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .delete_user(ghost, &[numbered(3)])
            .await
            .unwrap()
            .is_none()
    );
    // A session at a stale epoch is not created.
    let (s, r) = new_session(&ana, "stale", t0(), 7);
    assert!(
        store
            .create_session(&s, &r, &[numbered(4)])
            .await
            .unwrap()
            .is_none()
    );
    // Someone else's session, then one already revoked.
    let sid = session(&store, &ana, "live").await;
    assert!(
        !store
            .revoke_session(ghost, sid, t0(), &[numbered(5)])
            .await
            .unwrap()
    );
    assert!(store.revoke_session(ana.id, sid, t0(), &[]).await.unwrap());
    assert!(
        !store
            .revoke_session(ana.id, sid, t0(), &[numbered(6)])
            .await
            .unwrap()
    );
    // A password change against a moved epoch.
    assert!(
        store
            .change_password(ana.id, "h2", None, Some(41), t0(), &[numbered(7)])
            .await
            .unwrap()
            .is_none()
    );
    // A reset token past the window's limit, and a reset with a token that is not live.
    assert!(
        !store
            .replace_reset_token(
                ana.id,
                &hash("over"),
                t0() + Duration::minutes(30),
                t0(),
                t0() - Duration::minutes(15),
                0,
                &[numbered(8)],
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_reset(&hash("nothing"), ana.id, "h3", t0(), &[numbered(9)])
            .await
            .unwrap()
            .is_none()
    );
    // A key retired twice; an email that is no longer the old one.
    store.insert_signing_key(&key("k1"), &[]).await.unwrap();
    assert!(store.retire_signing_key("k1", t0(), &[]).await.unwrap());
    assert!(
        !store
            .retire_signing_key("k1", t0(), &[numbered(10)])
            .await
            .unwrap()
    );
    assert!(
        !store
            .rewrite_email(
                ana.id,
                "not-hers@example.com",
                "x@example.org",
                t0(),
                &[numbered(11)]
            )
            .await
            .unwrap()
    );
    assert_eq!(written(&store).await, Vec::<i64>::new());
}

pub async fn a_refused_change_takes_its_events_with_it(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    user(&store, "bea").await;
    let twin = NewUser {
        email: "ana@example.com".to_owned(),
        ..new_user("other")
    };
    assert!(matches!(
        store.insert_user(&twin, &[numbered(1)]).await,
        Err(StoreError::Conflict { field: "email" })
    ));
    assert!(matches!(
        store
            .rewrite_email(
                ana.id,
                "ana@example.com",
                "bea@example.com",
                t0(),
                &[numbered(2)]
            )
            .await,
        Err(StoreError::Conflict { field: "email" })
    ));
    assert!(
        store
            .insert_signing_key(&key("k1"), &[numbered(3)])
            .await
            .is_ok()
    );
    assert!(
        store
            .insert_signing_key(&key("k1"), &[numbered(4)])
            .await
            .is_err()
    );
    assert_eq!(written(&store).await, vec![3]);
}

pub async fn lock_events_are_written_only_by_the_failure_that_locks(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    // As in sign-in, each failure proposes a lock ending a fixed time after it.
    let lock_until = |attempt: i64| t0() + Duration::minutes(5) + Duration::seconds(attempt);
    let mut locked_by = Vec::new();
    for attempt in 1..=4_i64 {
        let locked = store
            .record_failed_login(
                ana.id,
                t0(),
                3,
                lock_until(attempt),
                &numbered(attempt * 10),
                &numbered(attempt * 10 + 1),
            )
            .await
            .unwrap();
        locked_by.push(locked);
    }
    // The third failure locks; the fourth lands during the lock and neither counts nor locks.
    assert_eq!(locked_by, [false, false, true, false]);
    assert_eq!(written(&store).await, vec![10, 20, 30, 31, 40]);
    // The same rule for a known device's own lock.
    assert!(
        store
            .remember_device(ana.id, &hash("d0"), "192.0.2.1", t0())
            .await
            .unwrap()
    );
    let mut device_locked_by = Vec::new();
    for attempt in 5..=7_i64 {
        device_locked_by.push(
            store
                .record_device_failure(
                    ana.id,
                    &hash("d0"),
                    t0(),
                    2,
                    lock_until(attempt),
                    &numbered(attempt * 10),
                    &numbered(attempt * 10 + 1),
                )
                .await
                .unwrap(),
        );
    }
    assert_eq!(device_locked_by, [false, true, false]);
    assert_eq!(
        written(&store).await,
        vec![10, 20, 30, 31, 40, 50, 60, 61, 70]
    );
    // A failure for an account that no longer exists changes nothing and writes nothing.
    assert!(
        !store
            .record_failed_login(
                Uuid::now_v7(),
                t0(),
                3,
                lock_until(8),
                &numbered(80),
                &numbered(81)
            )
            .await
            .unwrap()
    );
    assert_eq!(written(&store).await.len(), 9);
}

pub async fn reuse_of_a_spent_token_writes_its_event_with_the_revocation(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let sid = session(&store, &ana, "r1").await;
    assert!(matches!(
        rotate(&store, "r1", "r2", t0()).await,
        RotateOutcome::Rotated(_)
    ));
    // A plain rotation writes nothing.
    assert_eq!(
        store
            .list_audit(&AuditFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(matches!(
        rotate(&store, "r1", "r3", t0()).await,
        RotateOutcome::ReuseDetected { .. }
    ));
    let events = store.list_audit(&AuditFilter::default(), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].user_id, Some(ana.id));
    assert_eq!(events[0].details["session_id"], serde_json::json!(sid));
    // An unknown token is neither a rotation nor a reuse: nothing is written.
    assert!(matches!(
        rotate(&store, "never", "r4", t0()).await,
        RotateOutcome::Invalid
    ));
    assert_eq!(
        store
            .list_audit(&AuditFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
