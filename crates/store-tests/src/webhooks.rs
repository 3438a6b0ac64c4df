//! The contract of webhook endpoints and their delivery queue: events fan out to subscribed,
//! enabled endpoints in the transaction that writes them, claims are leases, attempts end
//! delivered, retried or dead, replays and test events queue new deliveries, and a call that
//! changes nothing writes no event.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use porteiro_core::domain::audit::kind;
use porteiro_core::domain::webhook::{
    AttemptResult, DeliveryStatus, NewWebhookEndpoint, Replay, WebhookDelivery, WebhookEndpoint,
    WebhookUpdate,
};
use porteiro_core::domain::{AuditFilter, NewAuditEvent, Outcome};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::{t0, user};

fn event(event_type: &'static str, at: DateTime<Utc>) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: at,
        event_type,
        outcome: Outcome::Success,
        user_id: None,
        actor_id: None,
        ip_address: Some("192.0.2.9".to_owned()),
        user_agent: None,
        details: serde_json::json!({"at": at.timestamp_millis()}),
    }
}

fn new_endpoint(types: &[&str], enabled: bool) -> NewWebhookEndpoint {
    NewWebhookEndpoint {
        id: Uuid::now_v7(),
        url: "https://hooks.example.test/porteiro".to_owned(),
        description: "CRM sync".to_owned(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        enabled,
        secret_enc: vec![1, 2, 3],
        now: t0(),
    }
}

async fn endpoint(store: &Arc<dyn Store>, types: &[&str], enabled: bool) -> WebhookEndpoint {
    store
        .insert_webhook(&new_endpoint(types, enabled), &[])
        .await
        .unwrap()
}

async fn append(store: &Arc<dyn Store>, event_type: &'static str, at: DateTime<Utc>) -> i64 {
    store.append_audit(&event(event_type, at)).await.unwrap();
    store
        .list_audit(&AuditFilter::default(), 1)
        .await
        .unwrap()
        .first()
        .expect("the event just written")
        .id
}

/// How many events of this kind the audit log holds.
async fn written(store: &Arc<dyn Store>, event_type: &str) -> usize {
    let filter = AuditFilter {
        event_type: Some(event_type.to_owned()),
        ..AuditFilter::default()
    };
    store.list_audit(&filter, 1000).await.unwrap().len()
}

async fn deliveries(store: &Arc<dyn Store>, endpoint: &WebhookEndpoint) -> Vec<WebhookDelivery> {
    store
        .list_webhook_deliveries(endpoint.id, None, 100)
        .await
        .unwrap()
}

async fn delivered_types(store: &Arc<dyn Store>, endpoint: &WebhookEndpoint) -> Vec<String> {
    let mut types: Vec<_> = deliveries(store, endpoint)
        .await
        .into_iter()
        .map(|d| d.event_type)
        .collect();
    types.reverse();
    types
}

fn attempt(at: DateTime<Utc>, delivered: bool, retry_at: Option<DateTime<Utc>>) -> AttemptResult {
    AttemptResult {
        at,
        delivered,
        status_code: Some(if delivered { 204 } else { 500 }),
        latency_ms: 42,
        error: (!delivered).then(|| "HTTP 500".to_owned()),
        retry_at,
    }
}

/// Claims every due delivery of `endpoint` at `now` for a minute; returns their ids.
async fn claim_all(
    store: &Arc<dyn Store>,
    endpoint: &WebhookEndpoint,
    now: DateTime<Utc>,
) -> Vec<i64> {
    store
        .claim_webhook_deliveries(endpoint.id, now, now + Duration::minutes(1), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

pub async fn webhook_endpoints_round_trip_and_rotate_their_secret(store: Arc<dyn Store>) {
    let input = new_endpoint(&["*"], true);
    let created = store
        .insert_webhook(&input, &[event(kind::WEBHOOK_CREATED, t0())])
        .await
        .unwrap();
    assert_eq!(
        (
            created.id,
            created.url.as_str(),
            created.description.as_str()
        ),
        (input.id, "https://hooks.example.test/porteiro", "CRM sync")
    );
    assert_eq!(created.event_types, vec!["*"]);
    assert!(created.enabled);
    assert_eq!(created.secret_enc, vec![1, 2, 3]);
    assert_eq!(
        (
            created.previous_secret_enc.clone(),
            created.previous_secret_until,
            created.failing_since,
            created.disabled_reason.clone()
        ),
        (None, None, None, None)
    );
    assert_eq!((created.created_at, created.updated_at), (t0(), t0()));
    assert_eq!(written(&store, kind::WEBHOOK_CREATED).await, 1);
    assert_eq!(
        store.webhook_by_id(created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.webhook_by_id(Uuid::new_v4()).await.unwrap(), None);

    let mut second_input = new_endpoint(&["session.revoked"], false);
    second_input.now = t0() + Duration::seconds(1);
    let second = store.insert_webhook(&second_input, &[]).await.unwrap();
    assert_eq!(
        store
            .list_webhooks()
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![created.id, second.id],
        "oldest first"
    );

    let later = t0() + Duration::minutes(5);
    let update = WebhookUpdate {
        url: Some("https://other.example.test/hook".to_owned()),
        event_types: Some(vec!["account.locked".to_owned(), "user.deleted".to_owned()]),
        ..WebhookUpdate::default()
    };
    let updated = store
        .update_webhook(
            created.id,
            &update,
            later,
            &[event(kind::WEBHOOK_UPDATED, later)],
        )
        .await
        .unwrap()
        .expect("endpoint exists");
    assert_eq!(updated.url, "https://other.example.test/hook");
    assert_eq!(updated.description, "CRM sync", "unchanged");
    assert_eq!(updated.event_types, vec!["account.locked", "user.deleted"]);
    assert!(updated.enabled, "unchanged");
    assert_eq!(updated.updated_at, later);
    assert_eq!(
        store.webhook_by_id(created.id).await.unwrap(),
        Some(updated)
    );
    assert_eq!(written(&store, kind::WEBHOOK_UPDATED).await, 1);

    let rotated_at = later + Duration::minutes(1);
    let overlap = rotated_at + Duration::hours(24);
    let rotated = store
        .rotate_webhook_secret(
            created.id,
            &[9, 9, 9],
            overlap,
            rotated_at,
            &[event(kind::WEBHOOK_SECRET_ROTATED, rotated_at)],
        )
        .await
        .unwrap()
        .expect("endpoint exists");
    assert_eq!(rotated.secret_enc, vec![9, 9, 9]);
    assert_eq!(rotated.previous_secret_enc, Some(vec![1, 2, 3]));
    assert_eq!(rotated.previous_secret_until, Some(overlap));
    assert_eq!(rotated.updated_at, rotated_at);
    assert_eq!(
        store.webhook_by_id(created.id).await.unwrap(),
        Some(rotated)
    );
    assert_eq!(written(&store, kind::WEBHOOK_SECRET_ROTATED).await, 1);

    // Calls on a missing endpoint change nothing and write no event.
    let missing = Uuid::new_v4();
    let noop = [event(kind::WEBHOOK_UPDATED, later)];
    assert_eq!(
        store
            .update_webhook(missing, &update, later, &noop)
            .await
            .unwrap(),
        None
    );
    let rotate_noop = [event(kind::WEBHOOK_SECRET_ROTATED, later)];
    assert_eq!(
        store
            .rotate_webhook_secret(missing, &[7], overlap, later, &rotate_noop)
            .await
            .unwrap(),
        None
    );
    let delete_noop = [event(kind::WEBHOOK_DELETED, later)];
    assert!(!store.delete_webhook(missing, &delete_noop).await.unwrap());
    assert_eq!(written(&store, kind::WEBHOOK_UPDATED).await, 1);
    assert_eq!(written(&store, kind::WEBHOOK_SECRET_ROTATED).await, 1);
    assert_eq!(written(&store, kind::WEBHOOK_DELETED).await, 0);
}

pub async fn events_fan_out_to_enabled_subscribed_endpoints(store: Arc<dyn Store>) {
    let all = endpoint(&store, &["*"], true).await;
    let exact = endpoint(&store, &[kind::ACCOUNT_UNLOCKED], true).await;
    let unrelated = endpoint(&store, &[kind::SESSION_REVOKED], true).await;
    let disabled = endpoint(&store, &["*"], false).await;

    append(&store, kind::SIGN_IN_FAILED, t0()).await;
    // An event written by another mutating call, in its transaction.
    let ana = user(&store, "ana").await;
    assert!(
        store
            .unlock_user(ana.id, t0(), &[event(kind::ACCOUNT_UNLOCKED, t0())])
            .await
            .unwrap()
    );
    // Webhook administration is never fanned out, not even to `*`.
    append(&store, kind::WEBHOOK_UPDATED, t0()).await;
    // A call that changes nothing writes no event, so nothing is queued.
    assert!(
        !store
            .unlock_user(Uuid::new_v4(), t0(), &[event(kind::ACCOUNT_UNLOCKED, t0())])
            .await
            .unwrap()
    );

    assert_eq!(
        delivered_types(&store, &all).await,
        vec![kind::SIGN_IN_FAILED, kind::ACCOUNT_UNLOCKED]
    );
    assert_eq!(
        delivered_types(&store, &exact).await,
        vec![kind::ACCOUNT_UNLOCKED]
    );
    assert!(delivered_types(&store, &unrelated).await.is_empty());
    assert!(delivered_types(&store, &disabled).await.is_empty());
    assert_eq!(written(&store, kind::ACCOUNT_UNLOCKED).await, 1);

    let queued = deliveries(&store, &exact).await;
    let d = &queued[0];
    assert_eq!(
        (d.endpoint_id, d.status, d.attempts, d.next_attempt_at),
        (exact.id, DeliveryStatus::Pending, 0, Some(t0()))
    );
    assert_eq!(d.created_at, t0());
    assert_eq!(
        (d.last_attempt_at, d.last_status_code, d.completed_at),
        (None, None, None)
    );
    assert_eq!(store.webhook_backlog().await.unwrap(), 3);
}

pub async fn webhook_claims_are_leases(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    let first = append(&store, kind::SIGN_IN_FAILED, t0()).await;
    append(&store, kind::ACCOUNT_LOCKED, t0()).await;
    assert_eq!(
        store.endpoints_with_due_deliveries(t0()).await.unwrap(),
        vec![hook.id]
    );
    assert!(
        store
            .endpoints_with_due_deliveries(t0() - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );

    let lease = t0() + Duration::minutes(1);
    let claimed = store
        .claim_webhook_deliveries(hook.id, t0(), lease, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "limit");
    let c = &claimed[0];
    assert_eq!((c.endpoint_id, c.attempts), (hook.id, 1));
    assert_eq!(c.event.id, first, "oldest first");
    assert_eq!(c.event.event_type, kind::SIGN_IN_FAILED);
    assert_eq!(c.event.occurred_at, t0());
    assert_eq!(c.event.ip_address.as_deref(), Some("192.0.2.9"));
    assert_eq!(c.event.details["at"], t0().timestamp_millis());

    let rest = claim_all(&store, &hook, t0()).await;
    assert_eq!(rest.len(), 1, "the other one");
    assert_ne!(rest[0], c.id);
    assert!(
        claim_all(&store, &hook, lease - Duration::seconds(1))
            .await
            .is_empty(),
        "leased"
    );
    assert!(
        store
            .endpoints_with_due_deliveries(t0() + Duration::seconds(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.webhook_backlog().await.unwrap(),
        2,
        "leased is pending"
    );
    let again = store
        .claim_webhook_deliveries(hook.id, lease, lease + Duration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "an expired lease is claimable again");
    assert_eq!(
        (again[0].id, again[0].attempts, again[1].attempts),
        (c.id, 2, 2)
    );
    let listed = deliveries(&store, &hook).await;
    assert_eq!(listed[1].attempts, 2);
    assert_eq!(
        listed[1].next_attempt_at,
        Some(lease + Duration::minutes(1))
    );
}

pub async fn deliveries_of_disabled_endpoints_wait(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    append(&store, kind::SIGN_IN_FAILED, t0()).await;
    let off = WebhookUpdate {
        enabled: Some(false),
        ..WebhookUpdate::default()
    };
    store
        .update_webhook(hook.id, &off, t0(), &[])
        .await
        .unwrap()
        .expect("endpoint exists");
    assert!(claim_all(&store, &hook, t0()).await.is_empty());
    assert!(
        store
            .endpoints_with_due_deliveries(t0())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.webhook_backlog().await.unwrap(), 0);
    assert_eq!(deliveries(&store, &hook).await.len(), 1, "kept");
    let on = WebhookUpdate {
        enabled: Some(true),
        ..WebhookUpdate::default()
    };
    store
        .update_webhook(hook.id, &on, t0(), &[])
        .await
        .unwrap()
        .expect("endpoint exists");
    assert_eq!(claim_all(&store, &hook, t0()).await.len(), 1);
}

pub async fn webhook_attempts_deliver_retry_or_die(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    for i in 0..3 {
        append(&store, kind::SIGN_IN_FAILED, t0() + Duration::seconds(i)).await;
    }
    let ids = claim_all(&store, &hook, t0() + Duration::seconds(5)).await;
    assert_eq!(ids.len(), 3);
    let (t1, t2, t3) = (
        t0() + Duration::seconds(10),
        t0() + Duration::seconds(20),
        t0() + Duration::seconds(30),
    );
    let retry = t1 + Duration::minutes(5);

    // A failure with a retry: still pending, due at the retry; the endpoint is failing since t1.
    assert_eq!(
        store
            .finish_webhook_attempt(ids[0], &attempt(t1, false, Some(retry)))
            .await
            .unwrap(),
        Some(t1)
    );
    // The last failure: a dead letter; the endpoint has been failing since t1 still.
    assert_eq!(
        store
            .finish_webhook_attempt(ids[1], &attempt(t2, false, None))
            .await
            .unwrap(),
        Some(t1)
    );
    let hook_now = store.webhook_by_id(hook.id).await.unwrap().unwrap();
    assert_eq!(hook_now.failing_since, Some(t1));

    let listed = deliveries(&store, &hook).await;
    let by_id = |id: i64| listed.iter().find(|d| d.id == id).unwrap().clone();
    let retried = by_id(ids[0]);
    assert_eq!(
        (
            retried.status,
            retried.next_attempt_at,
            retried.completed_at
        ),
        (DeliveryStatus::Pending, Some(retry), None)
    );
    assert_eq!(
        (
            retried.last_attempt_at,
            retried.last_status_code,
            retried.last_latency_ms,
            retried.last_error.as_deref()
        ),
        (Some(t1), Some(500), Some(42), Some("HTTP 500"))
    );
    assert_eq!(retried.attempts, 1);
    let dead = by_id(ids[1]);
    assert_eq!(
        (dead.status, dead.next_attempt_at, dead.completed_at),
        (DeliveryStatus::Dead, None, Some(t2))
    );

    // Success clears the endpoint's failure.
    assert_eq!(
        store
            .finish_webhook_attempt(ids[2], &attempt(t3, true, None))
            .await
            .unwrap(),
        None
    );
    let hook_now = store.webhook_by_id(hook.id).await.unwrap().unwrap();
    assert_eq!(hook_now.failing_since, None);
    let ok = deliveries(&store, &hook)
        .await
        .into_iter()
        .find(|d| d.id == ids[2])
        .unwrap();
    assert_eq!(
        (ok.status, ok.next_attempt_at, ok.completed_at),
        (DeliveryStatus::Delivered, None, Some(t3))
    );
    assert_eq!(
        (ok.last_status_code, ok.last_error.clone()),
        (Some(204), None)
    );

    // Only pending deliveries take a result.
    assert_eq!(
        store
            .finish_webhook_attempt(ids[2], &attempt(t3, false, None))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .finish_webhook_attempt(i64::MAX, &attempt(t3, false, None))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .webhook_by_id(hook.id)
            .await
            .unwrap()
            .unwrap()
            .failing_since,
        None
    );

    let dead_letters = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(
        dead_letters.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    assert_eq!(dead_letters[0].event_type, kind::SIGN_IN_FAILED);
    assert_eq!(store.webhook_backlog().await.unwrap(), 1, "the retry");
    assert!(
        claim_all(&store, &hook, retry - Duration::seconds(1))
            .await
            .is_empty(),
        "not due before the retry"
    );
    assert_eq!(claim_all(&store, &hook, retry).await, vec![ids[0]]);
}

pub async fn enabling_an_endpoint_clears_its_failure(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    append(&store, kind::SIGN_IN_FAILED, t0()).await;
    let ids = claim_all(&store, &hook, t0()).await;
    store
        .finish_webhook_attempt(ids[0], &attempt(t0(), false, None))
        .await
        .unwrap();
    let off = WebhookUpdate {
        enabled: Some(false),
        disabled_reason: Some("failing".to_owned()),
        ..WebhookUpdate::default()
    };
    let disabled = store
        .update_webhook(hook.id, &off, t0(), &[event(kind::WEBHOOK_DISABLED, t0())])
        .await
        .unwrap()
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("failing"));
    assert_eq!(disabled.failing_since, Some(t0()), "kept while disabled");
    let renamed = store
        .update_webhook(
            hook.id,
            &WebhookUpdate {
                description: Some("renamed".to_owned()),
                ..WebhookUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renamed.enabled, renamed.disabled_reason.as_deref()),
        (false, Some("failing")),
        "an update without `enabled` keeps the state"
    );
    let on = WebhookUpdate {
        enabled: Some(true),
        ..WebhookUpdate::default()
    };
    let enabled = store
        .update_webhook(hook.id, &on, t0(), &[])
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(
        (enabled.failing_since, enabled.disabled_reason),
        (None, None)
    );
}

pub async fn webhook_delivery_log_pages_newest_first(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    let other = endpoint(&store, &[kind::ACCOUNT_LOCKED], true).await;
    for i in 0..3 {
        append(&store, kind::SIGN_IN_FAILED, t0() + Duration::seconds(i)).await;
    }
    append(&store, kind::ACCOUNT_LOCKED, t0()).await;
    let page1 = store
        .list_webhook_deliveries(hook.id, None, 2)
        .await
        .unwrap();
    assert_eq!(page1.len(), 2);
    assert!(page1[0].id > page1[1].id, "newest first");
    assert_eq!(page1[0].event_type, kind::ACCOUNT_LOCKED);
    let page2 = store
        .list_webhook_deliveries(hook.id, Some(page1[1].id), 2)
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
    assert!(page2[0].id < page1[1].id);
    assert!(page2.iter().all(|d| d.endpoint_id == hook.id));
    assert_eq!(deliveries(&store, &other).await.len(), 1);

    // Dead letters page the same way, across endpoints.
    let ids = claim_all(&store, &hook, t0() + Duration::seconds(5)).await;
    for id in &ids {
        store
            .finish_webhook_attempt(*id, &attempt(t0() + Duration::seconds(6), false, None))
            .await
            .unwrap();
    }
    let dead1 = store.dead_letters(None, 3).await.unwrap();
    assert_eq!(dead1.len(), 3);
    assert!(dead1.windows(2).all(|w| w[0].id > w[1].id));
    let dead2 = store.dead_letters(Some(dead1[2].id), 3).await.unwrap();
    assert_eq!(dead2.len(), 1);
    assert!(dead2[0].id < dead1[2].id);
}

pub async fn webhook_events_are_replayed_by_id_or_time_range(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &[kind::SESSION_REVOKED], true).await;
    let other = endpoint(&store, &["*"], true).await;
    let failed = append(&store, kind::SIGN_IN_FAILED, t0()).await;
    append(&store, kind::SESSION_REVOKED, t0() + Duration::seconds(1)).await;
    let admin = append(&store, kind::WEBHOOK_UPDATED, t0() + Duration::seconds(2)).await;
    append(&store, kind::SESSION_REVOKED, t0() + Duration::seconds(3)).await;
    let before = deliveries(&store, &hook).await.len();
    let others_before = deliveries(&store, &other).await.len();
    let now = t0() + Duration::hours(1);
    let replayed = |n: i64| [event(kind::WEBHOOK_REPLAYED, now + Duration::seconds(n))];

    let range = Replay::Range {
        from: t0(),
        to: t0() + Duration::seconds(3),
    };
    assert_eq!(
        store
            .replay_webhook_events(hook.id, range, now, &replayed(1))
            .await
            .unwrap(),
        1,
        "only the subscribed type, `to` excluded"
    );
    assert_eq!(written(&store, kind::WEBHOOK_REPLAYED).await, 1);
    let listed = deliveries(&store, &hook).await;
    assert_eq!(listed.len(), before + 1);
    assert_eq!(
        (
            listed[0].event_type.as_str(),
            listed[0].status,
            listed[0].next_attempt_at,
            listed[0].created_at
        ),
        (
            kind::SESSION_REVOKED,
            DeliveryStatus::Pending,
            Some(now),
            now
        )
    );

    // One event by id, whatever the subscription.
    assert_eq!(
        store
            .replay_webhook_events(hook.id, Replay::Event(failed), now, &replayed(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        deliveries(&store, &hook).await[0].event_type,
        kind::SIGN_IN_FAILED
    );
    // A `*` subscription replays every type but webhook administration.
    let everything = Replay::Range {
        from: t0(),
        to: t0() + Duration::days(1),
    };
    assert_eq!(
        store
            .replay_webhook_events(other.id, everything, now, &replayed(3))
            .await
            .unwrap(),
        3
    );
    assert_eq!(written(&store, kind::WEBHOOK_REPLAYED).await, 3);

    // Nothing to queue: no event written.
    for (endpoint_id, replay) in [
        (hook.id, Replay::Event(admin)),
        (hook.id, Replay::Event(i64::MAX)),
        (Uuid::new_v4(), Replay::Event(failed)),
        (Uuid::new_v4(), everything),
        (
            hook.id,
            Replay::Range {
                from: t0() - Duration::days(2),
                to: t0() - Duration::days(1),
            },
        ),
    ] {
        assert_eq!(
            store
                .replay_webhook_events(endpoint_id, replay, now, &replayed(4))
                .await
                .unwrap(),
            0,
            "{replay:?}"
        );
    }
    assert_eq!(written(&store, kind::WEBHOOK_REPLAYED).await, 3);
    assert_eq!(deliveries(&store, &hook).await.len(), before + 2);
    assert_eq!(deliveries(&store, &other).await.len(), others_before + 3);
}

pub async fn test_events_go_to_their_endpoint_only(store: Arc<dyn Store>) {
    let tested = endpoint(&store, &[kind::ACCOUNT_LOCKED], false).await;
    let bystander = endpoint(&store, &["*"], true).await;
    let id = store
        .queue_test_event(tested.id, &event(kind::WEBHOOK_TESTED, t0()))
        .await
        .unwrap()
        .expect("endpoint exists");
    let queued = deliveries(&store, &tested).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (
            queued[0].id,
            queued[0].event_type.as_str(),
            queued[0].status
        ),
        (id, kind::WEBHOOK_TESTED, DeliveryStatus::Pending)
    );
    assert!(deliveries(&store, &bystander).await.is_empty());
    assert_eq!(written(&store, kind::WEBHOOK_TESTED).await, 1);

    assert_eq!(
        store
            .queue_test_event(Uuid::new_v4(), &event(kind::WEBHOOK_TESTED, t0()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        written(&store, kind::WEBHOOK_TESTED).await,
        1,
        "no event without an endpoint"
    );
}

pub async fn purge_removes_completed_deliveries_only(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    for i in 0..3 {
        append(&store, kind::SIGN_IN_FAILED, t0() + Duration::seconds(i)).await;
    }
    let ids = claim_all(&store, &hook, t0() + Duration::seconds(5)).await;
    let (t1, t2) = (t0() + Duration::minutes(1), t0() + Duration::minutes(2));
    store
        .finish_webhook_attempt(ids[0], &attempt(t1, true, None))
        .await
        .unwrap();
    store
        .finish_webhook_attempt(ids[1], &attempt(t2, false, None))
        .await
        .unwrap();
    assert_eq!(store.purge_webhook_deliveries(t1).await.unwrap(), 0);
    assert_eq!(store.purge_webhook_deliveries(t2).await.unwrap(), 1);
    assert_eq!(
        store
            .purge_webhook_deliveries(t0() + Duration::days(30))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        deliveries(&store, &hook)
            .await
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![ids[2]],
        "pending is kept"
    );
}

pub async fn deleting_an_endpoint_removes_its_deliveries(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    let kept = endpoint(&store, &["*"], true).await;
    append(&store, kind::SIGN_IN_FAILED, t0()).await;
    let ids = claim_all(&store, &hook, t0()).await;
    store
        .finish_webhook_attempt(ids[0], &attempt(t0(), false, None))
        .await
        .unwrap();
    append(&store, kind::ACCOUNT_LOCKED, t0()).await;
    assert!(
        store
            .delete_webhook(hook.id, &[event(kind::WEBHOOK_DELETED, t0())])
            .await
            .unwrap()
    );
    assert_eq!(written(&store, kind::WEBHOOK_DELETED).await, 1);
    assert_eq!(store.webhook_by_id(hook.id).await.unwrap(), None);
    assert!(deliveries(&store, &hook).await.is_empty());
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    assert_eq!(store.webhook_backlog().await.unwrap(), 2, "the other's");
    assert_eq!(deliveries(&store, &kept).await.len(), 2);
    assert!(
        !store
            .delete_webhook(hook.id, &[event(kind::WEBHOOK_DELETED, t0())])
            .await
            .unwrap()
    );
    assert_eq!(written(&store, kind::WEBHOOK_DELETED).await, 1);
}

pub async fn concurrent_webhook_claims_never_share_a_delivery(store: Arc<dyn Store>) {
    let hook = endpoint(&store, &["*"], true).await;
    let now = t0() + Duration::seconds(1);
    let mut seen = HashSet::new();
    // Several rounds, because a race shows only when the claims really overlap.
    for round in 1..=5 {
        for i in 0..16 {
            append(
                &store,
                kind::SIGN_IN_FAILED,
                t0() + Duration::milliseconds(i),
            )
            .await;
        }
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .claim_webhook_deliveries(hook.id, now, now + Duration::minutes(1), 3)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|c| c.id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for task in futures::future::join_all(tasks).await {
            for id in task.unwrap() {
                assert!(seen.insert(id), "delivery {id} claimed twice");
            }
        }
        for id in claim_all(&store, &hook, now).await {
            assert!(seen.insert(id), "delivery {id} claimed twice");
        }
        assert_eq!(seen.len(), 16 * round, "every delivery claimed once");
    }
}
