//! The refresh-token grace window: a token spent moments ago is replayed into the successor it
//! was rotated into, instead of revoking its session, while that successor is unspent.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::session::RotateOutcome;
use porteiro_core::store::Store;

use crate::{hash, rotate_within, session, t0, user};

const GRACE: i64 = 10;

async fn rotate_with_grace(
    store: &Arc<dyn Store>,
    presented: &str,
    next: &str,
    at: DateTime<Utc>,
) -> RotateOutcome {
    rotate_within(
        store,
        presented,
        next,
        at,
        Some(at - Duration::seconds(GRACE)),
    )
    .await
}

async fn live(store: &Arc<dyn Store>, token: &str, at: DateTime<Utc>) -> bool {
    store
        .refresh_token_session(&hash(token), at)
        .await
        .unwrap()
        .is_some()
}

pub async fn a_just_spent_token_is_replayed_into_its_successor(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "r0").await;
    let RotateOutcome::Rotated(_) = rotate_with_grace(&store, "r0", "r1", t0()).await else {
        panic!("first rotation");
    };
    let at = t0() + Duration::seconds(GRACE - 1);
    let RotateOutcome::Replayed(replay) = rotate_with_grace(&store, "r0", "r1", at).await else {
        panic!("replay within the window");
    };
    assert_eq!(replay.session.id, sid);
    assert_eq!(replay.user.id, u.id);
    // Nothing changed: the successor is still the one live token, and it rotates as usual.
    assert!(live(&store, "r1", at).await);
    assert!(!live(&store, "r0", at).await);
    let RotateOutcome::Rotated(next) = rotate_with_grace(&store, "r1", "r2", at).await else {
        panic!("the successor rotates");
    };
    assert_eq!(next.session.id, sid);
    assert!(live(&store, "r2", at).await);
}

pub async fn replay_ends_once_the_successor_is_spent(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "r0").await;
    rotate_with_grace(&store, "r0", "r1", t0()).await;
    rotate_with_grace(&store, "r1", "r2", t0()).await;
    let at = t0() + Duration::seconds(1);
    let outcome = rotate_with_grace(&store, "r0", "r1", at).await;
    assert!(
        matches!(outcome, RotateOutcome::ReuseDetected { session_id, .. } if session_id == sid),
        "{outcome:?}"
    );
    assert!(!live(&store, "r2", at).await, "the family is revoked");
}

pub async fn replay_ends_with_the_grace_window(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "r0").await;
    rotate_with_grace(&store, "r0", "r1", t0()).await;
    let at = t0() + Duration::seconds(GRACE + 1);
    let outcome = rotate_with_grace(&store, "r0", "r1", at).await;
    assert!(
        matches!(outcome, RotateOutcome::ReuseDetected { session_id, .. } if session_id == sid),
        "{outcome:?}"
    );
    assert!(!live(&store, "r1", at).await);
}

pub async fn replay_needs_the_true_successor(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let other = user(&store, "bia").await;
    let sid = session(&store, &u, "r0").await;
    session(&store, &other, "b0").await;
    rotate_with_grace(&store, "r0", "r1", t0()).await;
    // Another session's live token is not this token's successor.
    let outcome = rotate_with_grace(&store, "r0", "b0", t0()).await;
    assert!(
        matches!(outcome, RotateOutcome::ReuseDetected { session_id, .. } if session_id == sid),
        "{outcome:?}"
    );
    assert!(
        live(&store, "b0", t0()).await,
        "the other session is untouched"
    );
    assert!(!live(&store, "r1", t0()).await);
}

pub async fn replay_does_not_revive_an_ended_session(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "r0").await;
    rotate_with_grace(&store, "r0", "r1", t0()).await;
    assert!(store.revoke_session(u.id, sid, t0(), &[]).await.unwrap());
    let outcome = rotate_with_grace(&store, "r0", "r1", t0()).await;
    assert!(
        !matches!(
            outcome,
            RotateOutcome::Replayed(_) | RotateOutcome::Rotated(_)
        ),
        "{outcome:?}"
    );
}

/// Two requests of one client race on one token, a thousand times in a row: both succeed (one
/// rotates, the other is replayed into the same successor) and the chain goes on with that
/// successor; exactly one token of the family is live at every step.
pub async fn racing_refreshes_keep_exactly_one_live_family(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "t0").await;
    let mut current = "t0".to_owned();
    for trial in 1..=1000 {
        let next = format!("t{trial}");
        let (a, b) = tokio::join!(
            tokio::spawn({
                let (store, current, next) = (store.clone(), current.clone(), next.clone());
                async move { rotate_with_grace(&store, &current, &next, t0()).await }
            }),
            tokio::spawn({
                let (store, current, next) = (store.clone(), current.clone(), next.clone());
                async move { rotate_with_grace(&store, &current, &next, t0()).await }
            }),
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        let rotated = outcomes
            .iter()
            .filter(|o| matches!(o, RotateOutcome::Rotated(_)))
            .count();
        let replayed = outcomes
            .iter()
            .filter(|o| matches!(o, RotateOutcome::Replayed(r) if r.session.id == sid))
            .count();
        assert_eq!((rotated, replayed), (1, 1), "trial {trial}: {outcomes:?}");
        current = next;
    }
    assert!(live(&store, &current, t0()).await);
    let sessions = store.list_active_sessions(u.id, t0()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, sid);
}
