//! The backup catalogue (`porteiro_store_sql::backup::CATALOGUE`) describes every table and
//! column, with its type and nullability, that the PostgreSQL migrations create (read from
//! `information_schema`): a migration that adds one without extending the catalogue fails here.

use porteiro_store_postgres::PgStore;
use porteiro_store_postgres::testing::fresh_database;
use porteiro_store_sql::backup::Progress;

#[tokio::test]
async fn the_catalogue_matches_the_migrated_schema() {
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL is not set: skipping a PostgreSQL backup test");
        return;
    };
    let url = fresh_database(&admin).await.expect("create test database");
    let store = PgStore::connect(&url, 2).await.expect("migrated");
    store.close().await;
    let problems = porteiro_store_postgres::backup::catalogue_problems(&url)
        .await
        .expect("schema read");
    assert!(problems.is_empty(), "{problems:#?}");
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (totals, _) = porteiro_store_postgres::backup::dump(&url, &tx, &|_: Progress| {})
        .await
        .expect("a backup of the fresh schema");
    drop(tx);
    drain.await.expect("drained");
    assert_eq!(
        totals.tables,
        porteiro_store_sql::backup::CATALOGUE.len() as u64
    );
}
