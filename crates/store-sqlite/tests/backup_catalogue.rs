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

/// A restore re-applies the target's record of destroyed data keys (crypto-shredding): restoring
/// a backup taken before an account's data key was destroyed does not bring that key back.
#[tokio::test]
async fn a_restore_keeps_destroyed_data_keys_destroyed() {
    use porteiro_store_sql::backup::RestoreOptions;
    let dir =
        std::env::temp_dir().join(format!("porteiro-shred-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (src, dst) = (
        dir.join("src.db").to_string_lossy().into_owned(),
        dir.join("dst.db").to_string_lossy().into_owned(),
    );
    let (user, erased, kept) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let source = SqliteStore::connect(&src).await.expect("source");
    source.close().await;
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{src}"))
            .await
            .expect("connect");
    for (sql, binds) in [
        (
            "insert into users (id, username, username_key, email, password_hash, created_at, updated_at) \
             values ($1, 'zoe', 'zoe', 'zoe@example.com', 'x', 0, 0)",
            vec![user.to_string()],
        ),
        (
            "insert into key_encryption_keys (version, algorithm, public_key, created_at) values (1, 'RSA', x'00', 0)",
            vec![],
        ),
        (
            "insert into data_keys (id, owner_id, kek_version, wrapped_key, created_at, updated_at) \
             values ($1, $2, 1, x'01', 0, 0)",
            vec![erased.to_string(), user.to_string()],
        ),
        (
            "insert into data_keys (id, owner_id, kek_version, wrapped_key, created_at, updated_at) \
             values ($1, null, 1, x'02', 0, 0)",
            vec![kept.to_string()],
        ),
    ] {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&mut conn).await.expect("seed");
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    porteiro_store_sqlite::backup::dump(&src, &tx, &|_: Progress| {})
        .await
        .expect("backup");
    drop(tx);
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel(1024);
    while let Some(c) = rx.recv().await {
        chunks_tx.send(Ok(c)).await.expect("queued");
    }
    drop(chunks_tx);

    // The target destroyed the account's key after the backup was taken.
    let target = SqliteStore::connect(&dst).await.expect("target");
    target.close().await;
    let mut t = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{dst}"))
        .await
        .expect("connect");
    sqlx::query("insert into destroyed_data_keys (id, owner_id, destroyed_at) values ($1, $2, 5)")
        .bind(erased.to_string())
        .bind(user.to_string())
        .execute(&mut t)
        .await
        .expect("record");
    let schema_sql = "select type || ' ' || name || ' ' || coalesce(sql, '') from sqlite_master \
                      where type in ('index', 'trigger') order by name";
    let schema_before: Vec<String> = sqlx::query_scalar(schema_sql)
        .fetch_all(&mut t)
        .await
        .expect("schema");
    let report = porteiro_store_sqlite::backup::restore(
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
    let keys: Vec<String> = sqlx::query_scalar("select id from data_keys")
        .fetch_all(&mut t)
        .await
        .expect("keys");
    assert_eq!(keys, vec![kept.to_string()]);
    let record: Vec<String> = sqlx::query_scalar("select id from destroyed_data_keys")
        .fetch_all(&mut t)
        .await
        .expect("record");
    assert_eq!(record, vec![erased.to_string()]);
    // The indexes and triggers set aside during the load are all back.
    let schema_after: Vec<String> = sqlx::query_scalar(schema_sql)
        .fetch_all(&mut t)
        .await
        .expect("schema");
    assert_eq!(schema_after, schema_before);
    let _ = std::fs::remove_dir_all(&dir);
}
