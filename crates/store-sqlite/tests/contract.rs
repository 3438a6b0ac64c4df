//! The store contract on SQLite: every test gets its own database file.

use std::sync::Arc;

use porteiro_core::store::Store;
use porteiro_store_sqlite::SqliteStore;

async fn fresh() -> Option<Arc<dyn Store>> {
    let dir = std::env::temp_dir().join("porteiro-store-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4()));
    let store = SqliteStore::connect(path.to_str().expect("utf-8 path"))
        .await
        .expect("open sqlite");
    Some(Arc::new(store))
}

porteiro_store_tests::all_contract_tests!(fresh().await);

#[tokio::test]
async fn sqlite_has_no_cross_instance_feed() {
    let store = fresh().await.expect("store");
    assert!(store.subscribe().await.expect("subscribe").is_none());
    assert_eq!(store.backend(), "sqlite");
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    use porteiro_core::store::AuditStore as _;
    use sqlx::Connection as _;
    let dir = std::env::temp_dir().join("porteiro-store-tests");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4()));
    let store = SqliteStore::connect(path.to_str().expect("utf-8 path"))
        .await
        .expect("open sqlite");
    store
        .append_audit(&porteiro_core::domain::NewAuditEvent {
            occurred_at: chrono::Utc::now(),
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
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
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
