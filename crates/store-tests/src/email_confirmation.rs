//! The contract of address-confirmation links: a token confirms the address it was issued for,
//! once, before it expires, and only while that is still the active account's address; issuing
//! is limited per account and window, spends the account's older tokens, and writes its event
//! only when it stores a token.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::{AuditFilter, kind};
use porteiro_core::domain::email_confirmation::NewEmailConfirmation;
use porteiro_core::domain::{NewAuditEvent, NewUser, ProfileUpdate, User, UserId};
use porteiro_core::store::Store;

use crate::{ev, hash, new_user, t0, user};

fn link(u: &User, token: &str, now: DateTime<Utc>) -> NewEmailConfirmation {
    NewEmailConfirmation {
        token_hash: hash(token),
        user_id: u.id,
        email: u.email.clone(),
        expires_at: now + Duration::hours(24),
        now,
    }
}

fn sent() -> NewAuditEvent {
    NewAuditEvent {
        event_type: kind::EMAIL_CONFIRMATION_SENT,
        ..ev()
    }
}

fn confirmed() -> NewAuditEvent {
    NewAuditEvent {
        event_type: kind::EMAIL_CONFIRMED,
        ..ev()
    }
}

/// Issues `token` for `u` at `now`: at most three per hour.
pub(crate) async fn issue(
    store: &Arc<dyn Store>,
    u: &User,
    token: &str,
    now: DateTime<Utc>,
) -> bool {
    store
        .issue_email_confirmation(&link(u, token, now), now - Duration::hours(1), 3, &[sent()])
        .await
        .unwrap()
}

/// The account of `token` if it is live at `now`.
pub(crate) async fn owner(
    store: &Arc<dyn Store>,
    token: &str,
    now: DateTime<Utc>,
) -> Option<UserId> {
    store
        .confirmation_token_owner(&hash(token), now)
        .await
        .unwrap()
}

/// Confirms with `token` at `now` as the flow does: its owner first, then the confirmation.
pub(crate) async fn confirm(store: &Arc<dyn Store>, token: &str, now: DateTime<Utc>) -> bool {
    let Some(owner) = owner(store, token, now).await else {
        return false;
    };
    store
        .confirm_email(&hash(token), owner, now, &[confirmed()])
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

async fn reload(store: &Arc<dyn Store>, u: &User) -> User {
    store.user_by_id(u.id).await.unwrap().unwrap()
}

pub async fn confirmation_links_confirm_their_address_once(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(!ana.email_verified && ana.email_verified_at.is_none());
    assert!(issue(&store, &ana, "a", t0()).await);
    assert_eq!(written(&store, kind::EMAIL_CONFIRMATION_SENT).await, 1);
    assert_eq!(owner(&store, "a", t0()).await, Some(ana.id));
    let at = t0() + Duration::hours(1);
    assert!(confirm(&store, "a", at).await);
    let ana = reload(&store, &ana).await;
    assert!(ana.email_verified);
    assert_eq!(ana.email_verified_at, Some(at));
    assert_eq!(ana.updated_at, at);
    assert_eq!(written(&store, kind::EMAIL_CONFIRMED).await, 1);
    // Spent: neither found nor accepted again, and no second event.
    assert!(!confirm(&store, "a", at).await);
    assert!(
        !store
            .confirm_email(&hash("a"), ana.id, at, &[confirmed()])
            .await
            .unwrap()
    );
    assert_eq!(written(&store, kind::EMAIL_CONFIRMED).await, 1);
    // A confirmed address gets no further link.
    assert!(!issue(&store, &ana, "b", at).await);
    assert_eq!(written(&store, kind::EMAIL_CONFIRMATION_SENT).await, 1);
}

pub async fn a_new_confirmation_link_spends_older_ones(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let bea = user(&store, "bea").await;
    assert!(issue(&store, &ana, "a1", t0()).await);
    assert!(issue(&store, &bea, "b1", t0()).await);
    assert!(issue(&store, &ana, "a2", t0() + Duration::minutes(1)).await);
    let now = t0() + Duration::minutes(2);
    assert!(!confirm(&store, "a1", now).await);
    assert!(confirm(&store, "b1", now).await, "another account's link");
    assert!(confirm(&store, "a2", now).await);
}

pub async fn confirmation_links_expire(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(issue(&store, &ana, "a", t0()).await);
    let end = t0() + Duration::hours(24);
    assert_eq!(owner(&store, "a", end).await, None);
    assert!(
        !store
            .confirm_email(&hash("a"), ana.id, end, &[confirmed()])
            .await
            .unwrap()
    );
    assert!(!reload(&store, &ana).await.email_verified);
    assert!(confirm(&store, "a", end - Duration::seconds(1)).await);
}

pub async fn confirmation_links_are_limited_per_window(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    // Ten concurrent requests: exactly three tokens are stored, each with its event.
    let outcomes = futures::future::join_all((0..10).map(|i| {
        let (store, ana) = (store.clone(), ana.clone());
        async move { issue(&store, &ana, &format!("t{i}"), t0()).await }
    }))
    .await;
    assert_eq!(outcomes.iter().filter(|issued| **issued).count(), 3);
    assert_eq!(written(&store, kind::EMAIL_CONFIRMATION_SENT).await, 3);
    let mut live = 0;
    for i in 0..10 {
        let found = owner(&store, &format!("t{i}"), t0()).await;
        live += usize::from(found.is_some());
    }
    assert_eq!(live, 1, "only the newest stored token is live");
    // Once the window has passed, a token is stored again.
    assert!(!issue(&store, &ana, "refused", t0() + Duration::minutes(59)).await);
    assert!(issue(&store, &ana, "later", t0() + Duration::minutes(61)).await);
    assert!(confirm(&store, "later", t0() + Duration::minutes(62)).await);
}

pub async fn a_confirmation_link_needs_the_address_it_was_sent_to(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    let elsewhere = NewEmailConfirmation {
        email: "someone.else@example.com".to_owned(),
        ..link(&ana, "x", t0())
    };
    assert!(
        !store
            .issue_email_confirmation(&elsewhere, t0() - Duration::hours(1), 3, &[sent()])
            .await
            .unwrap()
    );
    assert!(issue(&store, &ana, "a", t0()).await);
    assert!(
        store
            .rewrite_email(ana.id, &ana.email, "ana@example.org", t0(), &[])
            .await
            .unwrap()
    );
    assert!(!confirm(&store, "a", t0()).await);
    let ana = reload(&store, &ana).await;
    assert!(!ana.email_verified && ana.email_verified_at.is_none());
    assert_eq!(written(&store, kind::EMAIL_CONFIRMED).await, 0);
    // The refusal spent nothing: the token is simply no good for the new address.
    assert_eq!(owner(&store, "a", t0()).await, Some(ana.id));
}

pub async fn disabled_accounts_neither_get_nor_use_confirmation_links(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(issue(&store, &ana, "a", t0()).await);
    let active = |on: bool| ProfileUpdate {
        is_active: Some(on),
        ..ProfileUpdate::default()
    };
    store
        .update_profile(ana.id, &active(false), t0(), &[])
        .await
        .unwrap();
    assert!(!confirm(&store, "a", t0()).await);
    assert!(!issue(&store, &ana, "b", t0()).await);
    store
        .update_profile(ana.id, &active(true), t0(), &[])
        .await
        .unwrap();
    assert!(
        confirm(&store, "a", t0()).await,
        "the refusal spent nothing"
    );
}

pub async fn concurrent_confirmations_have_one_winner(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(issue(&store, &ana, "a", t0()).await);
    let outcomes = futures::future::join_all((0..8).map(|_| {
        let store = store.clone();
        async move {
            store
                .confirm_email(&hash("a"), ana.id, t0(), &[confirmed()])
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(outcomes.iter().filter(|won| **won).count(), 1);
    assert_eq!(written(&store, kind::EMAIL_CONFIRMED).await, 1);
}

pub async fn accounts_can_be_created_confirmed(store: Arc<dyn Store>) {
    let confirmed = NewUser {
        email_verified: true,
        ..new_user("ana")
    };
    let ana = store.insert_user(&confirmed, &[]).await.unwrap();
    assert!(ana.email_verified);
    assert_eq!(ana.email_verified_at, Some(t0()));
    assert_eq!(reload(&store, &ana).await, ana);
    assert!(!issue(&store, &ana, "a", t0()).await);
    let bea = user(&store, "bea").await;
    assert!(!bea.email_verified && bea.email_verified_at.is_none());
}

/// Runs the verification-codes maintenance job at `now`.
async fn codes_removed(store: &Arc<dyn Store>, now: DateTime<Utc>) -> u64 {
    crate::maintenance::run(
        store,
        porteiro_core::domain::maintenance::Job::VerificationCodes,
        now,
        1_000,
    )
    .await
}

pub async fn purge_removes_expired_confirmation_links(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(issue(&store, &ana, "a", t0()).await);
    let before_expiry = t0() + Duration::hours(23);
    assert_eq!(codes_removed(&store, before_expiry).await, 0);
    assert!(confirm(&store, "a", t0()).await, "a live link survives");
    let bea = user(&store, "bea").await;
    assert!(issue(&store, &bea, "b", t0()).await);
    let after_expiry = t0() + Duration::hours(25);
    assert_eq!(codes_removed(&store, after_expiry).await, 2);
}
