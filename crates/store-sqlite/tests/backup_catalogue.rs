//! The backup catalogue (`porteiro_store_sql::backup::CATALOGUE`) describes every table and
//! column the SQLite migrations create: a migration that adds one without extending the
//! catalogue fails here, instead of silently leaving data out of every backup.

use porteiro_store_sql::backup::Progress;
use porteiro_store_sqlite::SqliteStore;

#[tokio::test]
async fn the_catalogue_matches_the_migrated_schema() {
    let dir = std::env::temp_dir().join(format!("porteiro-cat-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = dir.join("p.db").to_string_lossy().into_owned();
    let store = SqliteStore::connect(&url).await.expect("migrated");
    store.close().await;
    let problems = porteiro_store_sqlite::backup::catalogue_problems(&url)
        .await
        .expect("schema read");
    assert!(problems.is_empty(), "{problems:#?}");
    // A backup is taken only at the catalogue's schema version: a new migration without a
    // catalogue update makes this fail too.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (totals, _) = porteiro_store_sqlite::backup::dump(&url, &tx, &|_: Progress| {})
        .await
        .expect("a backup of the fresh schema");
    drop(tx);
    drain.await.expect("drained");
    assert_eq!(
        totals.tables,
        porteiro_store_sql::backup::CATALOGUE.len() as u64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
