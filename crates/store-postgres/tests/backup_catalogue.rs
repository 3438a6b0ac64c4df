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

/// A restore re-applies the target's record of destroyed data keys (crypto-shredding): restoring
/// a backup taken before an account's data key was destroyed does not bring that key back.
#[tokio::test]
async fn a_restore_keeps_destroyed_data_keys_destroyed() {
    use porteiro_store_sql::backup::RestoreOptions;
    use sqlx::Connection as _;
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL is not set: skipping a PostgreSQL backup test");
        return;
    };
    let src = fresh_database(&admin).await.expect("source database");
    let dst = fresh_database(&admin).await.expect("target database");
    PgStore::connect(&src, 2)
        .await
        .expect("migrated")
        .close()
        .await;
    PgStore::connect(&dst, 2)
        .await
        .expect("migrated")
        .close()
        .await;
    let (user, erased, kept) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let mut conn = sqlx::PgConnection::connect(&src).await.expect("connect");
    sqlx::query(
        "insert into users (id, username, username_key, email, password_hash, created_at, updated_at) \
         values ($1, 'zoe', 'zoe', 'zoe@example.com', 'x', now(), now())",
    )
    .bind(user)
    .execute(&mut conn)
    .await
    .expect("user");
    sqlx::query(
        "insert into key_encryption_keys (version, algorithm, public_key, created_at) values (1, 'RSA', '\\x00', now())",
    )
    .execute(&mut conn)
    .await
    .expect("kek");
    for (id, owner) in [(erased, Some(user)), (kept, None)] {
        sqlx::query(
            "insert into data_keys (id, owner_id, kek_version, wrapped_key, created_at, updated_at) \
             values ($1, $2, 1, '\\x01', now(), now())",
        )
        .bind(id)
        .bind(owner)
        .execute(&mut conn)
        .await
        .expect("data key");
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    porteiro_store_postgres::backup::dump(&src, &tx, &|_: Progress| {})
        .await
        .expect("backup");
    drop(tx);
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel(1024);
    while let Some(c) = rx.recv().await {
        chunks_tx.send(Ok(c)).await.expect("queued");
    }
    drop(chunks_tx);

    // The target destroyed the account's key after the backup was taken.
    let mut t = sqlx::PgConnection::connect(&dst).await.expect("connect");
    sqlx::query(
        "insert into destroyed_data_keys (id, owner_id, destroyed_at) values ($1, $2, now())",
    )
    .bind(erased)
    .bind(user)
    .execute(&mut t)
    .await
    .expect("record");
    let schema_sql = "select indexdef::text from pg_indexes where schemaname = current_schema() \
                      order by indexname";
    let schema_before: Vec<String> = sqlx::query_scalar(schema_sql)
        .fetch_all(&mut t)
        .await
        .expect("schema");
    let report = porteiro_store_postgres::backup::restore(
        &dst,
        &mut chunks,
        RestoreOptions {
            force: true,
            keep_sessions: false,
        },
        &|_: Progress| {},
    )
    .await
    .expect("restored");
    assert_eq!(report.data_keys_shredded, 1);
    let keys: Vec<uuid::Uuid> = sqlx::query_scalar("select id from data_keys")
        .fetch_all(&mut t)
        .await
        .expect("keys");
    assert_eq!(keys, vec![kept]);
    let record: Vec<uuid::Uuid> = sqlx::query_scalar("select id from destroyed_data_keys")
        .fetch_all(&mut t)
        .await
        .expect("record");
    assert_eq!(record, vec![erased]);
    // The indexes set aside during the load are all back.
    let schema_after: Vec<String> = sqlx::query_scalar(schema_sql)
        .fetch_all(&mut t)
        .await
        .expect("schema");
    assert_eq!(schema_after, schema_before);
}
