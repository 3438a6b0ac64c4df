//! The contract of the maintenance jobs: each removes exactly the rows that can no longer be used
//! or counted (see `porteiro_core::domain::maintenance`) and keeps the rest — in particular the
//! spent refresh tokens of live sessions, which detect reuse — whatever the batch size; a run
//! writes its events once, with its last batch; and the maintenance lock has one holder at a time.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::maintenance::{Cutoffs, Job};
use porteiro_core::domain::session::RotateOutcome;
use porteiro_core::domain::{NewAuditEvent, User};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::email_confirmation::{confirm, issue, owner};
use crate::mfa::{MAX_ATTEMPTS, backup, challenge, complete, enrolled, live, open};
use crate::{ev, hash, new_session, rotate, t0, user};

/// The cut-offs of a run at `now` with the default settings: reset window 15 minutes,
/// confirmation window one hour, ended sessions kept seven days.
pub(crate) fn cut(now: DateTime<Utc>) -> Cutoffs {
    Cutoffs {
        now,
        resets_issued_before: now - Duration::minutes(15),
        confirmations_issued_before: now - Duration::hours(1),
        sessions_ended_before: now - Duration::days(7),
        mfa_max_attempts: MAX_ATTEMPTS,
    }
}

/// Runs `job` at `now`, `batch` rows per statement, writing no event.
pub(crate) async fn run(store: &Arc<dyn Store>, job: Job, now: DateTime<Utc>, batch: u32) -> u64 {
    store
        .run_maintenance(job, &cut(now), batch, &|_| Vec::new())
        .await
        .unwrap()
}

/// Opens a session of `u` at `at` (expiring a day later) with refresh token `refresh`.
async fn open_session(store: &Arc<dyn Store>, u: &User, refresh: &str, at: DateTime<Utc>) -> Uuid {
    let (s, r) = new_session(u, refresh, at, u.credential_epoch);
    store
        .create_session(&s, &r, &[])
        .await
        .unwrap()
        .expect("session created");
    s.id
}

/// Issues reset token `token` for `u` at `at`, valid 30 minutes, at most three per 15 minutes.
async fn reset(store: &Arc<dyn Store>, u: &User, token: &str, at: DateTime<Utc>) -> bool {
    store
        .replace_reset_token(
            u.id,
            &hash(token),
            at + Duration::minutes(30),
            at,
            at - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap()
}

fn rotated(outcome: &RotateOutcome) -> bool {
    matches!(outcome, RotateOutcome::Rotated(_))
}

pub async fn the_tokens_job_removes_dead_tokens_and_keeps_reuse_detection(store: Arc<dyn Store>) {
    let now = t0() + Duration::days(30);
    let ana = user(&store, "ana").await;
    // A live session rotated twice: live1 and live2 are spent and past their own expiry, live3
    // is current. The spent ones must stay while the session lives.
    open_session(&store, &ana, "live1", now - Duration::hours(50)).await;
    assert!(rotated(
        &rotate(&store, "live1", "live2", now - Duration::hours(27)).await
    ));
    assert!(rotated(
        &rotate(&store, "live2", "live3", now - Duration::hours(4)).await
    ));
    // A session that ended 19 days ago (beyond the 7 days kept): both its tokens go.
    open_session(&store, &ana, "old1", now - Duration::days(20)).await;
    let at = now - Duration::days(20) + Duration::hours(1);
    assert!(rotated(&rotate(&store, "old1", "old2", at).await));
    // A session that expired a day ago: its unspent, expired token goes; the session stays.
    let recent = open_session(&store, &ana, "recent1", now - Duration::days(2)).await;
    // Reset links: expired (goes); live (stays); spent but within the 15-minute window, where
    // the issuance limit still counts it (stays); spent and older than the window (goes).
    assert!(reset(&store, &ana, "reset-expired", now - Duration::minutes(40)).await);
    let bea = user(&store, "bea").await;
    assert!(reset(&store, &bea, "reset-live", now - Duration::minutes(5)).await);
    let carl = user(&store, "carl").await;
    assert!(reset(&store, &carl, "c1", now - Duration::minutes(10)).await);
    assert!(reset(&store, &carl, "c2", now - Duration::minutes(5)).await);
    let dan = user(&store, "dan").await;
    assert!(reset(&store, &dan, "d1", now - Duration::minutes(20)).await);
    assert!(reset(&store, &dan, "d2", now - Duration::minutes(19)).await);

    assert_eq!(
        run(&store, Job::Tokens, now, 1_000).await,
        5,
        "old1, old2, recent1, reset-expired and d1"
    );
    assert_eq!(
        run(&store, Job::Tokens, now, 1_000).await,
        0,
        "nothing left"
    );

    assert!(
        store
            .refresh_token_session(&hash("live3"), now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        rotate(&store, "old1", "x", now).await,
        RotateOutcome::Invalid,
        "the spent token of the long-ended session is gone"
    );
    assert!(store.session_by_id(recent).await.unwrap().is_some());
    assert!(
        store
            .reset_token_owner(&hash("reset-live"), now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .reset_token_owner(&hash("d2"), now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        reset(&store, &carl, "c3", now).await,
        "c1 and c2 count: one more"
    );
    assert!(
        !reset(&store, &carl, "c4", now).await,
        "the limit still holds"
    );
    // The oldest spent token of the live session still detects a replay.
    assert!(matches!(
        rotate(&store, "live1", "y", now).await,
        RotateOutcome::ReuseDetected { .. }
    ));
}

pub async fn the_verification_codes_job_removes_dead_links_and_second_steps(store: Arc<dyn Store>) {
    let now = t0() + Duration::days(2);
    // Confirmation links: expired (goes); spent and issued two hours ago (goes); spent (by a
    // newer link) within the hour, where the issuance limit counts it (stays); live (stays).
    let ana = user(&store, "ana").await;
    assert!(issue(&store, &ana, "a", now - Duration::hours(25)).await);
    let bea = user(&store, "bea").await;
    assert!(issue(&store, &bea, "b", now - Duration::hours(2)).await);
    assert!(confirm(&store, "b", now - Duration::hours(2)).await);
    let carl = user(&store, "carl").await;
    assert!(issue(&store, &carl, "c1", now - Duration::minutes(30)).await);
    assert!(issue(&store, &carl, "c2", now - Duration::minutes(20)).await);
    let dan = user(&store, "dan").await;
    assert!(issue(&store, &dan, "d", now - Duration::minutes(30)).await);
    // Second steps: expired, completed, dead after too many wrong codes (all go); live (stays).
    let eve = enrolled(&store, "eve").await;
    open(
        &store,
        &challenge(&eve, "m-expired", now - Duration::minutes(10)),
    )
    .await;
    let done = open(
        &store,
        &challenge(&eve, "m-done", now - Duration::minutes(2)),
    )
    .await;
    assert_eq!(
        complete(&store, done, &backup("b0"), now - Duration::minutes(1)).await,
        porteiro_core::domain::mfa::CompleteOutcome::Completed
    );
    let dead = open(
        &store,
        &challenge(&eve, "m-dead", now - Duration::minutes(2)),
    )
    .await;
    for _ in 0..MAX_ATTEMPTS {
        store
            .fail_mfa_challenge(dead, MAX_ATTEMPTS, now - Duration::minutes(1))
            .await
            .unwrap();
    }
    open(
        &store,
        &challenge(&eve, "m-live", now - Duration::minutes(1)),
    )
    .await;

    assert_eq!(
        run(&store, Job::VerificationCodes, now, 1_000).await,
        5,
        "a, b, m-expired, m-done and m-dead"
    );
    assert_eq!(run(&store, Job::VerificationCodes, now, 1_000).await, 0);
    assert!(owner(&store, "d", now).await.is_some());
    assert!(live(&store, "m-live", now).await.is_some());
    assert!(owner(&store, "c2", now).await.is_some());
    assert!(
        issue(&store, &carl, "c3", now).await,
        "c1 and c2 count: one more"
    );
    assert!(
        !issue(&store, &carl, "c4", now).await,
        "the limit still holds"
    );
}

/// Recovery proofs (from answered security questions) that expired or were spent with a reset
/// go with the verification codes; a live one stays until it expires.
pub async fn the_verification_codes_job_removes_dead_recovery_proofs(store: Arc<dyn Store>) {
    // Arrange: three accounts with two answers each; ana's proof expired, bob's was spent
    // with his reset, carl's is live for five more minutes.
    let now = t0() + Duration::days(2);
    let qs = crate::security_questions::catalogue(&store, 2).await;
    let mut users = Vec::new();
    for name in ["ana", "bob", "carl"] {
        let u = user(&store, name).await;
        for q in &qs {
            crate::security_questions::answer(&store, &u, q, "h").await;
        }
        users.push(u);
    }
    let (ana, bob, carl) = (&users[0], &users[1], &users[2]);
    let proof = |u: &User, p: &'static str, at: DateTime<Utc>| {
        let store = Arc::clone(&store);
        let id = u.id;
        async move {
            assert!(
                store
                    .issue_recovery_proof(id, &hash(p), at + Duration::minutes(10), at, &[])
                    .await
                    .unwrap()
            );
        }
    };
    proof(ana, "pa", now - Duration::minutes(20)).await;
    proof(bob, "pb", now - Duration::minutes(5)).await;
    proof(carl, "pc", now - Duration::minutes(5)).await;
    assert!(reset(&store, bob, "tb", now - Duration::minutes(4)).await);
    assert!(
        store
            .complete_reset_with_proof(
                &hash("tb"),
                &hash("pb"),
                bob.id,
                "new",
                now - Duration::minutes(3),
                &[]
            )
            .await
            .unwrap()
            .is_some()
    );

    // Act / Assert: one row per batch, and a second run finds nothing.
    assert_eq!(
        run(&store, Job::VerificationCodes, now, 1).await,
        2,
        "pa (expired) and pb (spent)"
    );
    assert_eq!(run(&store, Job::VerificationCodes, now, 1).await, 0);
    assert_eq!(
        store.recovery_proof_owner(&hash("pc"), now).await.unwrap(),
        Some(carl.id),
        "the live proof stays usable"
    );
    let later = now + Duration::minutes(5);
    assert_eq!(
        run(&store, Job::VerificationCodes, later, 1).await,
        1,
        "pc expired"
    );
}

pub async fn the_sessions_job_removes_long_ended_sessions_in_batches(store: Arc<dyn Store>) {
    let now = t0() + Duration::days(30);
    let ana = user(&store, "ana").await;
    // Five sessions that expired 19 days ago, two tokens each: with batches of two, both steps
    // take several statements.
    let mut gone = Vec::new();
    for i in 0..5 {
        let first = format!("old{i}a");
        gone.push(open_session(&store, &ana, &first, now - Duration::days(20)).await);
        let at = now - Duration::days(20) + Duration::hours(1);
        assert!(rotated(
            &rotate(&store, &first, &format!("old{i}b"), at).await
        ));
    }
    // Revoked eight days ago (goes) and six days ago (stays); expired six days ago (stays).
    let revoked_long_ago = open_session(&store, &ana, "rev8", now - Duration::days(8)).await;
    assert!(
        store
            .revoke_session(ana.id, revoked_long_ago, now - Duration::days(8), &[])
            .await
            .unwrap()
    );
    gone.push(revoked_long_ago);
    let revoked_recently = open_session(&store, &ana, "rev6", now - Duration::days(6)).await;
    assert!(
        store
            .revoke_session(ana.id, revoked_recently, now - Duration::days(6), &[])
            .await
            .unwrap()
    );
    let expired_recently = open_session(&store, &ana, "exp6", now - Duration::days(7)).await;
    let current = open_session(&store, &ana, "current", now - Duration::hours(1)).await;

    assert_eq!(run(&store, Job::Sessions, now, 2).await, 6);
    assert_eq!(run(&store, Job::Sessions, now, 2).await, 0);
    for id in gone {
        assert!(store.session_by_id(id).await.unwrap().is_none());
    }
    for id in [revoked_recently, expired_recently, current] {
        assert!(store.session_by_id(id).await.unwrap().is_some());
    }
    assert_eq!(
        rotate(&store, "old0a", "x", now).await,
        RotateOutcome::Invalid,
        "the tokens went with their session"
    );
    // The live session still refreshes.
    assert!(rotated(&rotate(&store, "current", "next", now).await));
}

fn maintenance_event(removed: u64) -> Vec<NewAuditEvent> {
    vec![NewAuditEvent {
        event_type: kind::MAINTENANCE_RUN,
        details: serde_json::json!({"job": "sessions", "removed": removed}),
        ..ev()
    }]
}

async fn maintenance_events(store: &Arc<dyn Store>) -> Vec<serde_json::Value> {
    let filter = AuditFilter {
        event_type: Some(kind::MAINTENANCE_RUN.to_owned()),
        ..AuditFilter::default()
    };
    let mut events = store.list_audit(&filter, 50).await.unwrap();
    events.reverse();
    events.into_iter().map(|e| e.details).collect()
}

pub async fn a_run_writes_its_events_once_with_its_last_batch(store: Arc<dyn Store>) {
    let now = t0() + Duration::days(30);
    let ana = user(&store, "ana").await;
    for i in 0..3 {
        open_session(&store, &ana, &format!("s{i}"), now - Duration::days(20)).await;
    }
    let removed = store
        .run_maintenance(Job::Sessions, &cut(now), 1, &maintenance_event)
        .await
        .unwrap();
    assert_eq!(removed, 3);
    // A run that removes nothing still records that it ran.
    store
        .run_maintenance(Job::Sessions, &cut(now), 1, &maintenance_event)
        .await
        .unwrap();
    assert_eq!(
        maintenance_events(&store).await,
        [
            serde_json::json!({"job": "sessions", "removed": 3}),
            serde_json::json!({"job": "sessions", "removed": 0}),
        ]
    );
}

pub async fn the_maintenance_lock_has_one_holder_at_a_time(store: Arc<dyn Store>) {
    let first = store
        .try_maintenance_lock()
        .await
        .unwrap()
        .expect("free at first");
    assert!(
        store.try_maintenance_lock().await.unwrap().is_none(),
        "held: a second round must skip"
    );
    first.release().await.unwrap();
    let again = store
        .try_maintenance_lock()
        .await
        .unwrap()
        .expect("free once released");
    again.release().await.unwrap();
}
