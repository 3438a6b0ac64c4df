//! The store contract on PostgreSQL: every test gets its own database on the server named by
//! `TEST_POSTGRES_URL` (scripts/test.sh starts a throwaway cluster and sets it). Without it the
//! tests print a notice and pass vacuously; CI always sets it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use futures::StreamExt as _;
use porteiro_core::domain::session::NewRefreshToken;
use porteiro_core::domain::{NewSession, NewUser};
use porteiro_core::store::{MaintenanceStore as _, Store, StoreEvent};
use porteiro_store_postgres::PgStore;
use porteiro_store_postgres::testing::fresh_database;

async fn fresh_pg() -> Option<PgStore> {
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL is not set: skipping a PostgreSQL contract test");
        return None;
    };
    let url = fresh_database(&admin).await.expect("create test database");
    Some(PgStore::connect(&url, 8).await.expect("connect"))
}

async fn fresh() -> Option<Arc<dyn Store>> {
    fresh_pg().await.map(|s| Arc::new(s) as Arc<dyn Store>)
}

porteiro_store_tests::all_contract_tests!(fresh().await);

#[tokio::test]
async fn revocations_are_announced_to_subscribers() {
    let Some(store) = fresh().await else { return };
    let mut events = store
        .subscribe()
        .await
        .expect("subscribe")
        .expect("postgres has a feed");
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let user = store
        .insert_user(
            &NewUser {
                id: uuid::Uuid::now_v7(),
                username: "ana".to_owned(),
                username_key: "ana".to_owned(),
                email: "ana@example.com".to_owned(),
                first_name: None,
                last_name: None,
                password_hash: "h".to_owned(),
                is_admin: false,
                locale: "en".to_owned(),
                now: t0,
                email_verified: false,
            },
            &[],
        )
        .await
        .expect("user");
    let sid = uuid::Uuid::new_v4();
    let exp = t0 + chrono::Duration::days(1);
    store
        .create_session(
            &NewSession {
                id: sid,
                user_id: user.id,
                now: t0,
                expires_at: exp,
                ip_address: None,
                user_agent: None,
                device_name: "d".to_owned(),
                device_type: "pc".to_owned(),
                os: None,
                browser: None,
                credential_epoch: 0,
                amr: vec!["pwd".to_owned()],
            },
            &NewRefreshToken {
                token_hash: "x".repeat(64),
                session_id: sid,
                expires_at: exp,
                now: t0,
            },
            &[],
        )
        .await
        .expect("session");
    assert!(
        store
            .revoke_session(user.id, sid, t0, &[])
            .await
            .expect("revoke")
    );
    let event = tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .expect("within 1 s");
    assert_eq!(event, Some(StoreEvent::SessionsRevoked(vec![sid])));
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    use porteiro_core::store::AuditStore as _;
    use sqlx::Connection as _;
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        return;
    };
    let url = fresh_database(&admin).await.expect("create test database");
    let store = PgStore::connect(&url, 2).await.expect("connect");
    store
        .append_audit(&porteiro_core::domain::NewAuditEvent {
            occurred_at: Utc::now(),
            event_type: "server.started",
            outcome: porteiro_core::domain::Outcome::Success,
            user_id: None,
            actor_id: None,
            ip_address: None,
            user_agent: None,
            details: serde_json::json!({}),
        })
        .await
        .expect("append");
    let mut raw = sqlx::PgConnection::connect(&url)
        .await
        .expect("raw connection");
    for sql in [
        "update audit_events set outcome = 'failure'",
        "delete from audit_events",
    ] {
        let err = sqlx::query(sql).execute(&mut raw).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

/// Two instances on one database (two pools, as two servers would have): while one holds the
/// maintenance lock the other is refused, and gets it once the first releases it.
#[tokio::test]
async fn a_second_instance_skips_maintenance_while_the_first_holds_the_lock() {
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL is not set: skipping a PostgreSQL contract test");
        return;
    };
    let url = fresh_database(&admin).await.expect("create test database");
    let first = PgStore::connect(&url, 4).await.expect("connect");
    let second = PgStore::connect(&url, 4).await.expect("connect");
    let held = first
        .try_maintenance_lock()
        .await
        .expect("lock")
        .expect("free at first");
    assert!(
        second.try_maintenance_lock().await.expect("lock").is_none(),
        "the other instance skips its round"
    );
    held.release().await.expect("release");
    let taken = second
        .try_maintenance_lock()
        .await
        .expect("lock")
        .expect("free once released");
    assert!(first.try_maintenance_lock().await.expect("lock").is_none());
    taken.release().await.expect("release");
}
