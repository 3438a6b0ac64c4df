//! The contract of recovery addresses: an account has at most a few, each once; a token verifies
//! its address once, before it expires, and a new one spends the older ones (within a limit per
//! address and per account); a verified address has one owner whatever the races; deleting an
//! address or its account takes its tokens; events are written only with their change.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::maintenance::Job;
use porteiro_core::domain::recovery_email::{
    AddOutcome, IssueLimits, IssueOutcome, NewRecoveryEmail, NewRecoveryEmailToken, RecoveryEmail,
    VerifyOutcome,
};
use porteiro_core::domain::{NewAuditEvent, User};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::{ev, hash, t0, user};

fn event(event_type: &'static str) -> NewAuditEvent {
    NewAuditEvent { event_type, ..ev() }
}

fn token(label: &str, now: DateTime<Utc>) -> NewRecoveryEmailToken {
    NewRecoveryEmailToken {
        token_hash: hash(label),
        expires_at: now + Duration::hours(24),
        now,
    }
}

fn limits(now: DateTime<Utc>) -> IssueLimits {
    IssueLimits {
        window_start: now - Duration::hours(1),
        per_address: 3,
        per_account: 10,
    }
}

/// Adds `email` to `u` with first token `label` at `now` (at most five per account).
async fn add(
    store: &Arc<dyn Store>,
    u: &User,
    email: &str,
    label: &str,
    now: DateTime<Utc>,
) -> AddOutcome {
    let new = NewRecoveryEmail {
        id: Uuid::now_v7(),
        user_id: u.id,
        email: email.to_owned(),
        token: token(label, now),
    };
    store
        .add_recovery_email(&new, 5, limits(now), &[event(kind::RECOVERY_EMAIL_ADDED)])
        .await
        .unwrap()
}

async fn added(
    store: &Arc<dyn Store>,
    u: &User,
    email: &str,
    label: &str,
    now: DateTime<Utc>,
) -> RecoveryEmail {
    match add(store, u, email, label, now).await {
        AddOutcome::Added(a) => a,
        other => panic!("not added: {other:?}"),
    }
}

async fn issue(
    store: &Arc<dyn Store>,
    u: &User,
    id: Uuid,
    label: &str,
    now: DateTime<Utc>,
) -> IssueOutcome {
    store
        .issue_recovery_email_token(u.id, id, &token(label, now), limits(now), &[])
        .await
        .unwrap()
}

/// Verifies with token `label` at `now` as the flow does: its address first.
async fn verify(store: &Arc<dyn Store>, label: &str, now: DateTime<Utc>) -> VerifyOutcome {
    let Some(address) = store
        .recovery_email_token_address(&hash(label), now)
        .await
        .unwrap()
    else {
        return VerifyOutcome::Invalid;
    };
    store
        .verify_recovery_email(
            &hash(label),
            &address,
            now,
            &[event(kind::RECOVERY_EMAIL_VERIFIED)],
        )
        .await
        .unwrap()
}

async fn written(store: &Arc<dyn Store>, event_type: &str) -> usize {
    let filter = AuditFilter {
        event_type: Some(event_type.to_owned()),
        ..AuditFilter::default()
    };
    store.list_audit(&filter, 200).await.unwrap().len()
}

pub async fn recovery_emails_are_added_once_and_at_most_five(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let first = added(&store, &ana, "one@example.net", "t1", t0()).await;
    assert_eq!(first.user_id, ana.id);
    assert!(!first.is_verified());
    assert_eq!(first.created_at, t0());
    assert_eq!(
        first.verification_expires_at,
        Some(t0() + Duration::hours(24))
    );
    assert_eq!(
        add(&store, &ana, "one@example.net", "t2", t0()).await,
        AddOutcome::Duplicate
    );
    for (i, at) in (2..=5).zip(1..) {
        let now = t0() + Duration::seconds(at);
        added(
            &store,
            &ana,
            &format!("n{i}@example.net"),
            &format!("t{i}0"),
            now,
        )
        .await;
    }
    assert_eq!(
        add(&store, &ana, "six@example.net", "t6", t0()).await,
        AddOutcome::LimitReached
    );
    let list = store.recovery_emails(ana.id, t0()).await.unwrap();
    assert_eq!(
        list.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(),
        [
            "one@example.net",
            "n2@example.net",
            "n3@example.net",
            "n4@example.net",
            "n5@example.net"
        ]
    );
    assert_eq!(list[0], first);
    // Once its token expired, the listing says so.
    let later = store
        .recovery_emails(ana.id, t0() + Duration::hours(25))
        .await
        .unwrap();
    assert!(later.iter().all(|a| a.verification_expires_at.is_none()));
    // Another account's listing is its own.
    let bea = user(&store, "bea").await;
    assert!(
        store
            .recovery_emails(bea.id, t0())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_ADDED).await, 5);
}

pub async fn recovery_email_tokens_verify_once_before_they_expire(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let a = added(&store, &ana, "one@example.net", "t1", t0()).await;
    let b = added(&store, &ana, "two@example.net", "t2", t0()).await;
    assert_eq!(
        store
            .recovery_email_token_address(&hash("t1"), t0())
            .await
            .unwrap()
            .map(|x| x.id),
        Some(a.id)
    );
    assert_eq!(
        store
            .verified_recovery_email_owner("one@example.net")
            .await
            .unwrap(),
        None
    );
    let at = t0() + Duration::hours(1);
    let VerifyOutcome::Verified(v) = verify(&store, "t1", at).await else {
        panic!("not verified");
    };
    assert_eq!((v.id, v.verified_at, v.updated_at), (a.id, Some(at), at));
    assert_eq!(verify(&store, "t1", at).await, VerifyOutcome::Invalid);
    assert_eq!(
        store
            .verified_recovery_email_owner("one@example.net")
            .await
            .unwrap(),
        Some(ana.id)
    );
    // Expired: nothing changes.
    assert_eq!(
        verify(&store, "t2", t0() + Duration::hours(24)).await,
        VerifyOutcome::Invalid
    );
    assert_eq!(verify(&store, "unknown", at).await, VerifyOutcome::Invalid);
    let list = store.recovery_emails(ana.id, at).await.unwrap();
    assert_eq!(list[0].verified_at, Some(at));
    assert_eq!(list[0].verification_expires_at, None);
    assert_eq!((list[1].id, list[1].verified_at), (b.id, None));
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_VERIFIED).await, 1);
}

pub async fn a_new_recovery_email_token_spends_the_older_ones_within_limits(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let a = added(&store, &ana, "one@example.net", "t1", t0()).await;
    let at = t0() + Duration::minutes(1);
    assert!(matches!(
        issue(&store, &ana, a.id, "t2", at).await,
        IssueOutcome::Issued(x) if x.id == a.id && x.verification_expires_at == Some(at + Duration::hours(24))
    ));
    assert_eq!(verify(&store, "t1", at).await, VerifyOutcome::Invalid);
    assert!(matches!(
        issue(&store, &ana, a.id, "t3", at).await,
        IssueOutcome::Issued(_)
    ));
    // Three tokens for the address within the hour: no fourth.
    assert_eq!(
        issue(&store, &ana, a.id, "t4", at).await,
        IssueOutcome::RateLimited
    );
    // Another account cannot use the id.
    let bea = user(&store, "bea").await;
    assert_eq!(
        issue(&store, &bea, a.id, "b1", at).await,
        IssueOutcome::NotFound
    );
    let later = t0() + Duration::hours(2);
    assert!(matches!(
        issue(&store, &ana, a.id, "t5", later).await,
        IssueOutcome::Issued(_)
    ));
    assert_eq!(verify(&store, "t3", later).await, VerifyOutcome::Invalid);
    assert!(matches!(
        verify(&store, "t5", later).await,
        VerifyOutcome::Verified(_)
    ));
    assert_eq!(
        issue(&store, &ana, a.id, "t6", later).await,
        IssueOutcome::AlreadyVerified
    );
}

pub async fn recovery_email_tokens_are_limited_per_account(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let ids: Vec<Uuid> = futures::future::join_all((0..4).map(|i| {
        let store = store.clone();
        let ana = ana.clone();
        async move {
            added(
                &store,
                &ana,
                &format!("a{i}@example.net"),
                &format!("a{i}"),
                t0(),
            )
            .await
            .id
        }
    }))
    .await;
    // Four first tokens, then two more for each address up to ten in all.
    let mut issued = 4;
    for (i, id) in ids.iter().enumerate() {
        for j in 0..2 {
            let outcome = issue(&store, &ana, *id, &format!("r{i}{j}"), t0()).await;
            if issued < 10 {
                assert!(matches!(outcome, IssueOutcome::Issued(_)), "{i} {j}");
                issued += 1;
            } else {
                assert_eq!(outcome, IssueOutcome::RateLimited);
            }
        }
    }
    assert_eq!(
        add(&store, &ana, "a5@example.net", "a5", t0()).await,
        AddOutcome::RateLimited
    );
    assert_eq!(store.recovery_emails(ana.id, t0()).await.unwrap().len(), 4);
}

pub async fn a_verified_recovery_email_has_one_owner(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let bea = user(&store, "bea").await;
    let cid = user(&store, "cid").await;
    added(&store, &ana, "shared@example.net", "a1", t0()).await;
    added(&store, &bea, "shared@example.net", "b1", t0()).await;
    // Another account's own address.
    added(&store, &bea, "cid@example.com", "b2", t0()).await;
    assert!(
        !store
            .recovery_email_taken(ana.id, "shared@example.net")
            .await
            .unwrap()
    );
    assert!(
        store
            .recovery_email_taken(bea.id, "cid@example.com")
            .await
            .unwrap()
    );
    assert!(
        !store
            .recovery_email_taken(cid.id, "cid@example.com")
            .await
            .unwrap()
    );
    assert!(matches!(
        verify(&store, "a1", t0()).await,
        VerifyOutcome::Verified(_)
    ));
    assert!(
        store
            .recovery_email_taken(bea.id, "shared@example.net")
            .await
            .unwrap()
    );
    assert!(
        !store
            .recovery_email_taken(ana.id, "shared@example.net")
            .await
            .unwrap()
    );
    assert_eq!(verify(&store, "b1", t0()).await, VerifyOutcome::Taken);
    assert_eq!(verify(&store, "b2", t0()).await, VerifyOutcome::Taken);
    let bea_list = store.recovery_emails(bea.id, t0()).await.unwrap();
    assert!(bea_list.iter().all(|a| !a.is_verified()));
    assert_eq!(
        store
            .verified_recovery_email_owner("shared@example.net")
            .await
            .unwrap(),
        Some(ana.id)
    );
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_VERIFIED).await, 1);
}

pub async fn concurrent_verifications_of_one_address_have_one_owner(store: Arc<dyn Store>) {
    let mut labels = Vec::new();
    for i in 0..6 {
        let u = user(&store, &format!("user{i}")).await;
        let label = format!("tok{i}");
        added(&store, &u, "contested@example.net", &label, t0()).await;
        labels.push(label);
    }
    let outcomes = futures::future::join_all(labels.iter().map(|label| {
        let store = store.clone();
        async move { verify(&store, label, t0()).await }
    }))
    .await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, VerifyOutcome::Verified(_)))
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, VerifyOutcome::Verified(_) | VerifyOutcome::Taken))
    );
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_VERIFIED).await, 1);
}

pub async fn deleting_a_recovery_email_or_its_account_takes_its_tokens(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let bea = user(&store, "bea").await;
    let a = added(&store, &ana, "one@example.net", "t1", t0()).await;
    let b = added(&store, &ana, "two@example.net", "t2", t0()).await;
    let removed = [event(kind::RECOVERY_EMAIL_REMOVED)];
    // Not bea's to delete.
    assert_eq!(
        store
            .delete_recovery_email(bea.id, a.id, &removed)
            .await
            .unwrap(),
        None
    );
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_REMOVED).await, 0);
    let gone = store
        .delete_recovery_email(ana.id, a.id, &removed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.email, "one@example.net");
    assert_eq!(
        store
            .delete_recovery_email(ana.id, a.id, &removed)
            .await
            .unwrap(),
        None
    );
    assert_eq!(written(&store, kind::RECOVERY_EMAIL_REMOVED).await, 1);
    assert_eq!(verify(&store, "t1", t0()).await, VerifyOutcome::Invalid);
    // The address can be added again.
    added(&store, &ana, "one@example.net", "t3", t0()).await;
    assert!(store.delete_user(ana.id, &[]).await.unwrap().is_some());
    assert!(
        store
            .recovery_emails(ana.id, t0())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .recovery_email_token_address(&hash("t2"), t0())
            .await
            .unwrap(),
        None
    );
    let _ = b;
}

pub async fn the_verification_codes_job_removes_dead_recovery_email_links(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let a = added(&store, &ana, "one@example.net", "t1", t0()).await;
    // t1 spent by t2; t2 live.
    issue(&store, &ana, a.id, "t2", t0()).await;
    // Within the issuance window, spent links still count: nothing goes.
    let soon = t0() + Duration::minutes(30);
    assert_eq!(
        crate::maintenance::run(&store, Job::VerificationCodes, soon, 100).await,
        0
    );
    // Later the spent one goes; the live one stays until it expires.
    let later = t0() + Duration::hours(2);
    assert_eq!(
        crate::maintenance::run(&store, Job::VerificationCodes, later, 100).await,
        1
    );
    assert!(
        store
            .recovery_email_token_address(&hash("t2"), later)
            .await
            .unwrap()
            .is_some()
    );
    let expired = t0() + Duration::hours(25);
    assert_eq!(
        crate::maintenance::run(&store, Job::VerificationCodes, expired, 100).await,
        1
    );
    // The address itself stays.
    assert_eq!(
        store.recovery_emails(ana.id, expired).await.unwrap().len(),
        1
    );
}
