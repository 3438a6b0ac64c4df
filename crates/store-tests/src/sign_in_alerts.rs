//! The contract of new-device alerts: a session opened with a device sighting records the
//! device in its transaction; an alert (link, mail, event) is stored only for a device new to
//! an account that signed in before from another and wants alerts; a link is used once,
//! before it expires, ends only its session and makes the account wait for a password reset
//! (which, like a change, clears it); the history lists the account's own sign-in events.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::maintenance::Job;
use porteiro_core::domain::sign_in_alert::{DeviceSighting, NewSignInAlert};
use porteiro_core::domain::{NewAuditEvent, Outcome, ProfileUpdate, User};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::{ev, hash, new_session, t0, user};

fn alert(token: &str, now: DateTime<Utc>) -> NewSignInAlert {
    NewSignInAlert {
        token_hash: hash(token),
        expires_at: now + Duration::days(7),
        mail_id: Uuid::new_v4(),
        mail: b"sealed".to_vec(),
        event: NewAuditEvent {
            event_type: kind::LOGIN_NEW_DEVICE,
            outcome: Outcome::Success,
            ..ev()
        },
    }
}

fn sighting(u: &User, key: &str, also: &[&str], token: Option<&str>) -> DeviceSighting {
    DeviceSighting {
        user_id: u.id,
        device_key: hash(key),
        also_keys: also.iter().map(|k| hash(k)).collect(),
        now: t0(),
        alert: token.map(|t| alert(t, t0())),
    }
}

/// Opens a session of `u` seen from `s`; returns its id and whether an alert was stored.
async fn sign_in(
    store: &Arc<dyn Store>,
    u: &User,
    refresh: &str,
    s: &DeviceSighting,
) -> (Uuid, bool) {
    let epoch = store
        .user_by_id(u.id)
        .await
        .unwrap()
        .unwrap()
        .credential_epoch;
    let (session, r) = new_session(u, refresh, t0(), epoch);
    let (opened, alerted) = store
        .create_session_noting_device(&session, &r, s, &[])
        .await
        .unwrap()
        .expect("the session opens");
    (opened.id, alerted)
}

async fn count(store: &Arc<dyn Store>, event_type: &str) -> usize {
    store
        .list_audit(
            &AuditFilter {
                event_type: Some(event_type.to_owned()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap()
        .len()
}

pub async fn only_a_new_device_of_an_account_seen_before_is_alerted(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    // Act: the very first device, then a new one, then the new one again.
    let (_, first) = sign_in(
        &store,
        &ana,
        "r1",
        &sighting(&ana, "laptop", &[], Some("t1")),
    )
    .await;
    let (second_id, second) = sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "phone", &[], Some("t2")),
    )
    .await;
    let (_, again) = sign_in(
        &store,
        &ana,
        "r3",
        &sighting(&ana, "phone", &[], Some("t3")),
    )
    .await;
    // Assert
    assert!(!first, "the account's very first device is not alerted");
    assert!(second, "a device new to an account seen before is alerted");
    assert!(!again, "a known device is not alerted");
    let state = store
        .sign_in_device_state(ana.id, &hash("phone"))
        .await
        .unwrap();
    assert!(state.known && state.any);
    let live = store
        .sign_in_alert(&hash("t2"), t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((live.user_id, live.session_id), (ana.id, second_id));
    assert!(
        store
            .sign_in_alert(&hash("t1"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .sign_in_alert(&hash("t3"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.pending_mail_count().await.unwrap(),
        1,
        "one mail queued, with the link"
    );
    assert_eq!(count(&store, kind::LOGIN_NEW_DEVICE).await, 1);
    let bob = user(&store, "bob").await;
    let state = store
        .sign_in_device_state(bob.id, &hash("phone"))
        .await
        .unwrap();
    assert!(!state.known && !state.any, "devices are per account");
}

pub async fn a_device_cookie_issued_with_a_sign_in_is_known_next_time(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    sign_in(&store, &ana, "r1", &sighting(&ana, "laptop", &[], None)).await;
    // A browser without a cookie yet is known by its agent and network, and gets a cookie.
    sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "agent+net", &["cookie"], Some("t1")),
    )
    .await;
    let (_, alerted) = sign_in(
        &store,
        &ana,
        "r3",
        &sighting(&ana, "cookie", &[], Some("t2")),
    )
    .await;
    assert!(
        !alerted,
        "the cookie issued with the last sign-in is the same device"
    );
    assert_eq!(store.pending_mail_count().await.unwrap(), 1);
}

pub async fn accounts_that_turned_alerts_off_get_none(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    store
        .update_profile(
            ana.id,
            &ProfileUpdate {
                login_alerts: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    let ana = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert!(!ana.login_alerts);
    sign_in(&store, &ana, "r1", &sighting(&ana, "laptop", &[], None)).await;
    let (_, alerted) = sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "phone", &[], Some("t1")),
    )
    .await;
    assert!(!alerted);
    assert!(
        store
            .sign_in_alert(&hash("t1"), t0())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.pending_mail_count().await.unwrap(), 0);
    assert_eq!(count(&store, kind::LOGIN_NEW_DEVICE).await, 0);
    // The device was still recorded: turning alerts on again does not alert for it.
    assert!(
        store
            .sign_in_device_state(ana.id, &hash("phone"))
            .await
            .unwrap()
            .known
    );
}

pub async fn disowning_ends_only_its_session_once_and_requires_a_reset(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    let (laptop, _) = sign_in(&store, &ana, "r1", &sighting(&ana, "laptop", &[], None)).await;
    let (phone, _) = sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "phone", &[], Some("t1")),
    )
    .await;
    let disowned = || NewAuditEvent {
        event_type: kind::SESSION_DISOWNED,
        outcome: Outcome::Success,
        user_id: Some(ana.id),
        ..ev()
    };
    // Act
    let done = store
        .disown_sign_in(&hash("t1"), t0(), &[disowned()])
        .await
        .unwrap()
        .expect("a live link");
    let replay = store
        .disown_sign_in(&hash("t1"), t0(), &[disowned()])
        .await
        .unwrap();
    // Assert
    assert_eq!((done.user_id, done.session_id), (ana.id, phone));
    assert!(done.session_revoked);
    assert!(replay.is_none(), "a link works once");
    assert!(
        !store
            .session_auth_state(phone)
            .await
            .unwrap()
            .unwrap()
            .usable
    );
    assert!(
        store
            .session_auth_state(laptop)
            .await
            .unwrap()
            .unwrap()
            .usable
    );
    assert_eq!(count(&store, kind::SESSION_DISOWNED).await, 1);
    let ana = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert!(ana.password_reset_required);
    // No session opens until the password changes, which clears the flag.
    let (s, r) = new_session(&ana, "r3", t0(), ana.credential_epoch);
    assert!(store.create_session(&s, &r, &[]).await.unwrap().is_none());
    store
        .change_password(ana.id, "new-hash", None, None, t0(), &[])
        .await
        .unwrap()
        .unwrap();
    let ana = store.user_by_id(ana.id).await.unwrap().unwrap();
    assert!(!ana.password_reset_required);
    let (s, r) = new_session(&ana, "r4", t0(), ana.credential_epoch);
    assert!(store.create_session(&s, &r, &[]).await.unwrap().is_some());
}

pub async fn a_reset_clears_the_required_reset(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    sign_in(&store, &ana, "r1", &sighting(&ana, "laptop", &[], None)).await;
    sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "phone", &[], Some("t1")),
    )
    .await;
    store
        .disown_sign_in(&hash("t1"), t0(), &[])
        .await
        .unwrap()
        .unwrap();
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
    store
        .complete_reset(&hash("reset"), ana.id, "new-hash", t0(), &[])
        .await
        .unwrap()
        .expect("the reset completes");
    assert!(
        !store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .password_reset_required
    );
}

pub async fn expired_alert_links_do_nothing_and_are_purged(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    sign_in(&store, &ana, "r1", &sighting(&ana, "laptop", &[], None)).await;
    let (phone, _) = sign_in(
        &store,
        &ana,
        "r2",
        &sighting(&ana, "phone", &[], Some("t1")),
    )
    .await;
    let late = t0() + Duration::days(7);
    assert!(
        store
            .sign_in_alert(&hash("t1"), late)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .disown_sign_in(&hash("t1"), late, &[])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session_auth_state(phone)
            .await
            .unwrap()
            .unwrap()
            .usable
    );
    assert!(
        !store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .password_reset_required
    );
    // The verification-codes job removes it; a live one stays.
    sign_in(
        &store,
        &ana,
        "r3",
        &sighting(&ana, "tablet", &[], Some("t2")),
    )
    .await;
    assert_eq!(
        crate::maintenance::run(&store, Job::VerificationCodes, t0() + Duration::days(1), 10).await,
        0
    );
    assert_eq!(
        crate::maintenance::run(&store, Job::VerificationCodes, late, 10).await,
        2
    );
}

pub async fn login_history_lists_the_accounts_own_sign_ins_newest_first(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    let bob = user(&store, "bob").await;
    let event = |who: &User, event_type: &'static str, outcome: Outcome, n: i64| NewAuditEvent {
        occurred_at: t0() + Duration::seconds(n),
        event_type,
        outcome,
        user_id: Some(who.id),
        actor_id: None,
        ip_address: Some(format!("192.0.2.{n}")),
        user_agent: Some("agent".to_owned()),
        details: serde_json::json!({"n": n, "method": "password"}),
    };
    for e in [
        event(&ana, kind::SIGN_IN_SUCCEEDED, Outcome::Success, 1),
        event(&ana, kind::SIGN_IN_FAILED, Outcome::Failure, 2),
        event(&bob, kind::SIGN_IN_SUCCEEDED, Outcome::Success, 3),
        event(&ana, kind::PASSWORD_CHANGED, Outcome::Success, 4),
        event(&ana, kind::SIGN_IN_SUCCEEDED, Outcome::Success, 5),
    ] {
        store.append_audit(&e).await.unwrap();
    }
    // Act
    let first = store.login_history(ana.id, None, 2).await.unwrap();
    let rest = store
        .login_history(ana.id, Some(first[1].id), 2)
        .await
        .unwrap();
    // Assert
    let ns = |page: &[porteiro_core::domain::sign_in_alert::LoginAttempt]| {
        page.iter()
            .map(|a| a.details["n"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ns(&first), [5, 2]);
    assert_eq!(ns(&rest), [1]);
    assert_eq!(first[1].outcome, "failure");
    assert_eq!(first[0].ip_address.as_deref(), Some("192.0.2.5"));
    assert_eq!(first[0].method(), "password");
    assert_eq!(
        store.login_history(bob.id, None, 10).await.unwrap().len(),
        1
    );
}
