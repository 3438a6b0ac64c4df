//! The contract of security questions: the catalogue is unique by text and deletes take the
//! answers with them; an account keeps a bounded set of answers to active questions, and
//! changing them spends its recovery proofs; wrong answers lock like passwords do; a proof is
//! issued only while unlocked and spent with the reset token, both or neither; a reset without a
//! proof is refused for an account whose questions are in use.

use std::sync::Arc;

use chrono::Duration;
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::security_question::{SecurityQuestion, SetAnswerOutcome};
use porteiro_core::domain::{NewAuditEvent, User};
use porteiro_core::store::{Store, StoreError};
use uuid::Uuid;

use crate::{ev, hash, t0, user};

fn question(text: &str) -> SecurityQuestion {
    SecurityQuestion {
        id: Uuid::now_v7(),
        text: text.to_owned(),
        active: true,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn event(event_type: &'static str) -> NewAuditEvent {
    NewAuditEvent { event_type, ..ev() }
}

async fn catalogue(store: &Arc<dyn Store>, n: usize) -> Vec<SecurityQuestion> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            store
                .create_security_question(&question(&format!("Question number {i}?")), &[])
                .await
                .unwrap(),
        );
    }
    out
}

async fn answer(
    store: &Arc<dyn Store>,
    u: &User,
    q: &SecurityQuestion,
    h: &str,
) -> SetAnswerOutcome {
    store
        .set_security_answer(u.id, q.id, h, 5, t0(), &[event(kind::SECURITY_ANSWERS_SET)])
        .await
        .unwrap()
}

async fn events_of(store: &Arc<dyn Store>, event_type: &str) -> usize {
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

/// Questions are unique by text, listed by text, filtered by state, changed and deleted with
/// their answers.
pub async fn security_questions_are_unique_and_deleted_with_their_answers(store: Arc<dyn Store>) {
    let b = store
        .create_security_question(
            &question("B question?"),
            &[event(kind::SECURITY_QUESTION_CREATED)],
        )
        .await
        .unwrap();
    let a = store
        .create_security_question(&question("A question?"), &[])
        .await
        .unwrap();
    assert_eq!(events_of(&store, kind::SECURITY_QUESTION_CREATED).await, 1);
    let dup = store
        .create_security_question(&question("A question?"), &[])
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { field: "text" })));
    let all = store.security_questions(false).await.unwrap();
    assert_eq!(
        all.iter().map(|q| q.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(
        store.security_question(a.id).await.unwrap(),
        Some(a.clone())
    );

    let later = t0() + Duration::minutes(1);
    let off = store
        .update_security_question(a.id, None, Some(false), later, &[])
        .await
        .unwrap();
    assert!(!off.active);
    assert_eq!(off.updated_at, later);
    assert_eq!(
        store
            .security_questions(true)
            .await
            .unwrap()
            .iter()
            .map(|q| q.id)
            .collect::<Vec<_>>(),
        vec![b.id]
    );
    let renamed = store
        .update_security_question(b.id, Some("A question?"), None, later, &[])
        .await;
    assert!(matches!(
        renamed,
        Err(StoreError::Conflict { field: "text" })
    ));
    let missing = store
        .update_security_question(Uuid::now_v7(), None, Some(true), later, &[])
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));

    let u = user(&store, "ana").await;
    assert_eq!(answer(&store, &u, &b, "h1").await, SetAnswerOutcome::Added);
    store
        .delete_security_question(b.id, &[event(kind::SECURITY_QUESTION_DELETED)])
        .await
        .unwrap();
    assert!(store.security_answers(u.id).await.unwrap().is_empty());
    assert_eq!(store.security_question(b.id).await.unwrap(), None);
    assert!(matches!(
        store.delete_security_question(b.id, &[]).await,
        Err(StoreError::NotFound)
    ));
}

/// Answers go to active questions only, at most the limit; replacing one does not count; lists
/// never carry hashes; recovery reads only active ones; deleting one or all works and spends
/// proofs.
pub async fn security_answers_are_bounded_and_listed_without_hashes(store: Arc<dyn Store>) {
    let qs = catalogue(&store, 7).await;
    let u = user(&store, "ana").await;
    for q in &qs[..5] {
        assert_eq!(answer(&store, &u, q, "h").await, SetAnswerOutcome::Added);
    }
    assert_eq!(
        answer(&store, &u, &qs[5], "h").await,
        SetAnswerOutcome::TooMany
    );
    assert_eq!(
        answer(&store, &u, &qs[0], "h2").await,
        SetAnswerOutcome::Replaced
    );
    assert_eq!(events_of(&store, kind::SECURITY_ANSWERS_SET).await, 6);
    store
        .update_security_question(qs[6].id, None, Some(false), t0(), &[])
        .await
        .unwrap();
    store
        .delete_security_answers(u.id, Some(qs[4].id), &[])
        .await
        .unwrap();
    assert_eq!(
        answer(&store, &u, &qs[6], "h").await,
        SetAnswerOutcome::QuestionUnavailable
    );
    assert_eq!(
        store
            .set_security_answer(u.id, Uuid::now_v7(), "h", 5, t0(), &[])
            .await
            .unwrap(),
        SetAnswerOutcome::QuestionUnavailable
    );

    let listed = store.security_answers(u.id).await.unwrap();
    assert_eq!(listed.len(), 4);
    let mut ids: Vec<Uuid> = qs[..4].iter().map(|q| q.id).collect();
    ids.sort();
    assert_eq!(
        listed.iter().map(|a| a.question_id).collect::<Vec<_>>(),
        ids
    );
    let stored = store.stored_answers(u.id).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .find(|a| a.question_id == qs[0].id)
            .unwrap()
            .answer_hash,
        "h2"
    );

    // A deactivated question's answer stays listed, but recovery does not ask it.
    store
        .update_security_question(qs[1].id, None, Some(false), t0(), &[])
        .await
        .unwrap();
    assert_eq!(store.security_answers(u.id).await.unwrap().len(), 4);
    assert_eq!(store.stored_answers(u.id).await.unwrap().len(), 3);

    let removed_events = [event(kind::SECURITY_ANSWERS_REMOVED)];
    assert_eq!(
        store
            .delete_security_answers(u.id, Some(Uuid::now_v7()), &removed_events)
            .await
            .unwrap(),
        0
    );
    assert_eq!(events_of(&store, kind::SECURITY_ANSWERS_REMOVED).await, 0);
    assert_eq!(
        store
            .delete_security_answers(u.id, None, &removed_events)
            .await
            .unwrap(),
        4
    );
    assert_eq!(events_of(&store, kind::SECURITY_ANSWERS_REMOVED).await, 1);
    assert!(store.security_answers(u.id).await.unwrap().is_empty());
}

/// Wrong answers lock at the threshold without extending; a proof is refused while locked and,
/// once issued, clears the count; changing the answers spends it.
pub async fn wrong_answers_lock_and_proofs_follow_the_answers(store: Arc<dyn Store>) {
    let qs = catalogue(&store, 2).await;
    let u = user(&store, "ana").await;
    for q in &qs {
        answer(&store, &u, q, "h").await;
    }
    let lock_until = t0() + Duration::minutes(15);
    let failed = event(kind::SECURITY_ANSWERS_VERIFIED);
    let locked = event(kind::RECOVERY_QUESTIONS_LOCKED);
    for i in 1..=5 {
        let set = store
            .record_failed_answers(u.id, t0(), 5, lock_until, &failed, &locked)
            .await
            .unwrap();
        assert_eq!(set, i == 5);
    }
    assert!(
        !store
            .record_failed_answers(
                u.id,
                t0(),
                5,
                lock_until + Duration::minutes(1),
                &failed,
                &locked
            )
            .await
            .unwrap()
    );
    assert_eq!(events_of(&store, kind::RECOVERY_QUESTIONS_LOCKED).await, 1);
    let lock = store.question_lock(u.id).await.unwrap();
    assert_eq!(lock.locked_until, Some(lock_until));
    assert!(lock.is_locked(t0()));
    // The password lock is another matter.
    assert_eq!(
        store
            .user_by_id(u.id)
            .await
            .unwrap()
            .unwrap()
            .failed_login_attempts,
        0
    );

    assert!(
        !store
            .issue_recovery_proof(u.id, &hash("p1"), t0() + Duration::minutes(10), t0(), &[])
            .await
            .unwrap()
    );
    assert_eq!(
        store.recovery_proof_owner(&hash("p1"), t0()).await.unwrap(),
        None
    );

    let after = lock_until + Duration::seconds(1);
    let verified = [event(kind::SECURITY_ANSWERS_VERIFIED)];
    assert!(
        store
            .issue_recovery_proof(
                u.id,
                &hash("p1"),
                after + Duration::minutes(10),
                after,
                &verified
            )
            .await
            .unwrap()
    );
    assert_eq!(store.question_lock(u.id).await.unwrap().failed_attempts, 0);
    assert_eq!(
        store
            .recovery_proof_owner(&hash("p1"), after)
            .await
            .unwrap(),
        Some(u.id)
    );
    assert_eq!(
        store
            .recovery_proof_owner(&hash("p1"), after + Duration::minutes(10))
            .await
            .unwrap(),
        None
    );
    // A new proof spends the older one; a change of answers spends every one.
    store
        .issue_recovery_proof(u.id, &hash("p2"), after + Duration::minutes(10), after, &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .recovery_proof_owner(&hash("p1"), after)
            .await
            .unwrap(),
        None
    );
    answer(&store, &u, &qs[0], "h3").await;
    assert_eq!(
        store
            .recovery_proof_owner(&hash("p2"), after)
            .await
            .unwrap(),
        None
    );
}

/// With questions in use, a reset needs the proof: without one nothing is spent; with one of
/// another account nothing is spent; with the right one both are spent at once, once.
pub async fn resets_of_accounts_with_questions_need_a_proof(store: Arc<dyn Store>) {
    let qs = catalogue(&store, 2).await;
    let ana = user(&store, "ana").await;
    let bob = user(&store, "bob").await;
    for q in &qs {
        answer(&store, &ana, q, "h").await;
        answer(&store, &bob, q, "h").await;
    }
    let now = t0();
    let expires = now + Duration::minutes(30);
    store
        .replace_reset_token(
            ana.id,
            &hash("t"),
            expires,
            now,
            now - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_reset(&hash("t"), ana.id, "new", now, &[])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.reset_token_owner(&hash("t"), now).await.unwrap(),
        Some(ana.id)
    );

    for (u, p) in [(&ana, "pa"), (&bob, "pb")] {
        store
            .issue_recovery_proof(u.id, &hash(p), now + Duration::minutes(10), now, &[])
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .complete_reset_with_proof(&hash("t"), &hash("pb"), ana.id, "new", now, &[])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.reset_token_owner(&hash("t"), now).await.unwrap(),
        Some(ana.id)
    );
    assert_eq!(
        store.recovery_proof_owner(&hash("pb"), now).await.unwrap(),
        Some(bob.id)
    );

    let done = [event(kind::PASSWORD_RESET_COMPLETED)];
    assert!(
        store
            .complete_reset_with_proof(&hash("t"), &hash("pa"), ana.id, "new", now, &done)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new"
    );
    assert_eq!(
        store.reset_token_owner(&hash("t"), now).await.unwrap(),
        None
    );
    assert_eq!(
        store.recovery_proof_owner(&hash("pa"), now).await.unwrap(),
        None
    );
    assert_eq!(events_of(&store, kind::PASSWORD_RESET_COMPLETED).await, 1);

    // An account whose questions are out of use (fewer than two active) resets without one.
    store
        .update_security_question(qs[0].id, None, Some(false), now, &[])
        .await
        .unwrap();
    store
        .replace_reset_token(
            bob.id,
            &hash("tb"),
            expires,
            now,
            now - Duration::minutes(15),
            3,
            &[],
        )
        .await
        .unwrap();
    assert!(
        store
            .complete_reset(&hash("tb"), bob.id, "new", now, &[])
            .await
            .unwrap()
            .is_some()
    );
}
