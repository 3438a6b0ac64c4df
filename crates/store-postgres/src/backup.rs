//! Backups on PostgreSQL: reads and binds the catalogue's types natively (`uuid`,
//! `timestamptz`, `boolean`, `bigint`, `bytea`); the catalogue and the stream format are shared
//! (`porteiro_store_sql::backup`).
//!
//! A backup reads everything in one `REPEATABLE READ READ ONLY` transaction: one snapshot while
//! the servers keep writing. A restore runs in one transaction, wipe (`TRUNCATE`) included, and
//! commits only after the stream's trailer checked out; it then moves the identity sequences
//! past the restored ids and tells every running instance to drop its caches.

use std::collections::HashMap;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use porteiro_store_sql::backup::{
    CATALOGUE, Chunk, ColumnSpec, Encoder, Header, LiveColumn, Loader, OnProgress, Progress,
    RestoreOptions, RestoreReport, SCHEMA_VERSION, SEEDED_TABLES, TableSpec, Totals, Type, Value,
    catalogue_mismatches, load, read_header,
};
use std::str::FromStr as _;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, Postgres, Row as _};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The advisory-lock key of scheduled backups (one instance at a time).
const BACKUP_LOCK: i64 = 0x706f_7274_0003;

/// A connection of its own. A backup's selects stream whole tables for minutes, and a restore's
/// inserts are large: neither is a "slow statement" worth a warning.
async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    options
        .connect()
        .await
        .context("cannot connect to the PostgreSQL database named by DATABASE_URL")
}

async fn schema_version(conn: &mut PgConnection) -> anyhow::Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn table_exists(conn: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "select exists(select 1 from information_schema.tables \
         where table_schema = current_schema() and table_name = $1)",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?)
}

/// Every column of every Porteiro table in the database's current schema, with PostgreSQL's
/// types mapped to the catalogue's.
///
/// # Errors
/// When the database cannot be read.
pub async fn live_columns(conn: &mut PgConnection) -> anyhow::Result<Vec<LiveColumn>> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "select c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text \
         from information_schema.columns c join information_schema.tables t \
           on t.table_schema = c.table_schema and t.table_name = c.table_name \
         where c.table_schema = current_schema() and t.table_type = 'BASE TABLE' \
           and c.table_name <> '_sqlx_migrations' \
         order by c.table_name, c.ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, column, data_type, nullable)| LiveColumn {
            table,
            column,
            ty: match data_type.as_str() {
                "uuid" => Some(Type::Uuid),
                "text" => Some(Type::Text),
                "timestamp with time zone" => Some(Type::Time),
                "boolean" => Some(Type::Bool),
                "integer" | "bigint" | "smallint" => Some(Type::Int),
                "bytea" => Some(Type::Bytes),
                _ => None,
            },
            nullable: nullable == "YES",
        })
        .collect())
}

fn compatible(expected: Type, live: &LiveColumn) -> bool {
    live.ty == Some(expected)
}

/// How the database's schema differs from the backup catalogue (empty: they agree).
///
/// # Errors
/// When the database cannot be reached or read.
pub async fn catalogue_problems(url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = connect(url).await?;
    let live = live_columns(&mut conn).await?;
    conn.close().await?;
    Ok(catalogue_mismatches(&live, compatible))
}

fn decode(row: &PgRow, i: usize, col: &ColumnSpec) -> anyhow::Result<Value> {
    Ok(match col.ty {
        Type::Uuid => row
            .try_get::<Option<Uuid>, _>(i)?
            .map_or(Value::Null, Value::Uuid),
        Type::Text => row
            .try_get::<Option<String>, _>(i)?
            .map_or(Value::Null, Value::Text),
        Type::Time => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map_or(Value::Null, |t| Value::Time(t.timestamp_micros())),
        Type::Bool => row
            .try_get::<Option<bool>, _>(i)?
            .map_or(Value::Null, Value::Bool),
        Type::Int => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Value::Null, Value::Int),
        Type::Bytes => row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map_or(Value::Null, Value::Bytes),
    })
}

/// Writes a backup of the database at `url` to `out`, chunk by chunk, from one snapshot.
/// Returns the totals and the stream's size.
///
/// # Errors
/// When the database is not at the catalogue's schema version, its schema differs from the
/// catalogue, or reading fails; or when `out` is closed (the writer failed).
pub async fn dump(
    url: &str,
    out: &mpsc::Sender<Vec<u8>>,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<(Totals, u64)> {
    let mut conn = connect(url).await?;
    sqlx::query("begin isolation level repeatable read, read only")
        .execute(&mut conn)
        .await?;
    let version = schema_version(&mut conn).await?;
    check_version(version)?;
    let problems = catalogue_mismatches(&live_columns(&mut conn).await?, compatible);
    ensure!(
        problems.is_empty(),
        "the database schema differs from what this Porteiro backs up: {}",
        problems.join("; ")
    );
    let header = Header::current("postgres", Utc::now());
    let mut enc = Encoder::new(&header)?;
    let send = |chunk: Vec<u8>| async move {
        out.send(chunk)
            .await
            .map_err(|_| anyhow::anyhow!("the backup file could not be written"))
    };
    let mut values = Vec::new();
    for spec in &header.tables {
        enc.begin_table(&spec.name)?;
        // `integer` columns are read as bigint: one Rust type for the catalogue's Int.
        let sql = spec.select_sql(|c| {
            if c.ty == Type::Int {
                format!("{0}::bigint as {0}", c.name)
            } else {
                c.name.clone()
            }
        });
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
        while let Some(row) = rows.try_next().await? {
            values.clear();
            for (i, col) in spec.columns.iter().enumerate() {
                values.push(decode(&row, i, col)?);
            }
            enc.row(&values)?;
            if let Some(chunk) = enc.take_chunk() {
                send(chunk).await?;
                let (rows, bytes) = enc.progress();
                on_progress(Progress { rows, bytes });
            }
        }
        drop(rows);
        enc.end_table()?;
    }
    sqlx::query("rollback").execute(&mut conn).await?;
    conn.close().await?;
    let (last, totals, bytes) = enc.finish()?;
    send(last).await?;
    on_progress(Progress {
        rows: totals.rows,
        bytes,
    });
    Ok((totals, bytes))
}

fn check_version(version: Option<i64>) -> anyhow::Result<()> {
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        None => bail!("the database has no Porteiro schema (run `porteiro migrate` first)"),
        Some(v) if v < SCHEMA_VERSION => bail!(
            "the database is at schema version {v}, this Porteiro backs up version {SCHEMA_VERSION}: run `porteiro migrate` first"
        ),
        Some(v) => bail!(
            "the database is at schema version {v}, newer than this Porteiro ({SCHEMA_VERSION}): use the newer release to back it up"
        ),
    }
}

/// A held scheduled-backup lock: a session-level advisory lock on a connection of its own.
#[derive(Debug)]
pub struct BackupLock(PgConnection);

impl BackupLock {
    /// Releases the lock.
    ///
    /// # Errors
    /// When the connection failed (the server frees the lock with the connection anyway).
    pub async fn release(self) -> anyhow::Result<()> {
        let mut conn = self.0;
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(BACKUP_LOCK)
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Takes the scheduled-backup lock if no other instance holds it.
///
/// # Errors
/// When the database cannot be reached.
pub async fn try_backup_lock(url: &str) -> anyhow::Result<Option<BackupLock>> {
    let mut conn = PgConnection::connect(url).await?;
    let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(BACKUP_LOCK)
        .fetch_one(&mut conn)
        .await?;
    if got {
        Ok(Some(BackupLock(conn)))
    } else {
        conn.close().await?;
        Ok(None)
    }
}

/// Inserts rows on the restore connection, inside its open transaction.
struct PgLoader<'c> {
    conn: &'c mut PgConnection,
    sql: HashMap<(String, usize), String>,
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, Postgres, PgArguments>,
    v: &Value,
    ty: Type,
) -> anyhow::Result<sqlx::query::Query<'q, Postgres, PgArguments>> {
    Ok(match (v, ty) {
        // A null is bound with its column's type: PostgreSQL does not cast a text null to uuid.
        (Value::Null, Type::Uuid) => q.bind(Option::<Uuid>::None),
        (Value::Null, Type::Text) => q.bind(Option::<String>::None),
        (Value::Null, Type::Time) => q.bind(Option::<DateTime<Utc>>::None),
        (Value::Null, Type::Bool) => q.bind(Option::<bool>::None),
        (Value::Null, Type::Int) => q.bind(Option::<i64>::None),
        (Value::Null, Type::Bytes) => q.bind(Option::<Vec<u8>>::None),
        (Value::Uuid(u), _) => q.bind(*u),
        (Value::Text(t), _) => q.bind(t.clone()),
        (Value::Time(us), _) => {
            q.bind(DateTime::<Utc>::from_timestamp_micros(*us).context("a time out of range")?)
        }
        (Value::Bool(b), _) => q.bind(*b),
        (Value::Int(i), _) => q.bind(*i),
        (Value::Bytes(b), _) => q.bind(b.clone()),
    })
}

#[async_trait::async_trait]
impl Loader for PgLoader<'_> {
    async fn insert(&mut self, table: &TableSpec, rows: &[Vec<Value>]) -> anyhow::Result<()> {
        let overriding = if table.identity.is_some() {
            "overriding system value"
        } else {
            ""
        };
        let sql = self
            .sql
            .entry((table.name.clone(), rows.len()))
            .or_insert_with(|| table.insert_sql(rows.len(), overriding))
            .clone();
        // Built from the header's table and column names, which the decoder checked to be
        // plain identifiers, and numbered placeholders: no value is spliced in.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in rows {
            for (v, col) in row.iter().zip(&table.columns) {
                q = bind_value(q, v, col.ty)?;
            }
        }
        q.execute(&mut *self.conn)
            .await
            .with_context(|| format!("cannot insert into {}", table.name))?;
        Ok(())
    }
}

/// Whether any table other than the migrations' seeded ones holds a row.
async fn holds_data(conn: &mut PgConnection) -> anyhow::Result<Option<&'static str>> {
    for t in CATALOGUE {
        if SEEDED_TABLES.contains(&t.name) || !table_exists(conn, t.name).await? {
            continue;
        }
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select exists(select 1 from {})",
            t.name
        )))
        .fetch_one(&mut *conn)
        .await?;
        if any {
            return Ok(Some(t.name));
        }
    }
    Ok(None)
}

/// Restores the backup streamed by `input` into the database at `url`: migrates it to the
/// backup's schema version, then wipes, loads and checks everything in one transaction, applies
/// the destroyed-key record, revokes the sessions, resets the identity sequences, commits, and
/// runs the remaining migrations.
///
/// # Errors
/// A non-empty target without `force`, a damaged or truncated stream, or a database failure;
/// in every case nothing was committed.
pub async fn restore(
    url: &str,
    input: &mut mpsc::Receiver<Chunk>,
    opts: RestoreOptions,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<RestoreReport> {
    let latest = crate::migrations::latest();
    let (header, mut decoder, first) = read_header(input, latest).await?;
    let mut conn = connect(url).await?;
    if !opts.force
        && let Some(t) = holds_data(&mut conn).await?
    {
        bail!(
            "the target database is not empty (table {t} has rows): restore into an empty database, or add --force to replace its contents"
        );
    }
    crate::migrations::migrator()
        .run_to(header.schema_version, &mut conn)
        .await
        .context("cannot migrate the target database to the backup's schema version")?;
    sqlx::query("begin").execute(&mut conn).await?;
    let result = restore_in_tx(
        &mut conn,
        &header,
        &mut decoder,
        first,
        input,
        opts,
        on_progress,
    )
    .await;
    match result {
        Ok(mut report) => {
            sqlx::query("commit").execute(&mut conn).await?;
            crate::migrations::migrator()
                .run(&mut conn)
                .await
                .context("the backup was restored, but the remaining migrations failed")?;
            report.schema_version = header.schema_version;
            report.source.clone_from(&header.source);
            report.created_at.clone_from(&header.created_at);
            conn.close().await?;
            Ok(report)
        }
        Err(e) => {
            let _ = sqlx::query("rollback").execute(&mut conn).await;
            Err(e)
        }
    }
}

async fn restore_in_tx(
    conn: &mut PgConnection,
    header: &Header,
    decoder: &mut porteiro_store_sql::backup::Decoder,
    first: Vec<u8>,
    input: &mut mpsc::Receiver<Chunk>,
    opts: RestoreOptions,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<RestoreReport> {
    let mut wipe: Vec<String> = Vec::new();
    for name in CATALOGUE
        .iter()
        .map(|t| t.name.to_owned())
        .chain(header.tables.iter().map(|t| t.name.clone()))
    {
        if !wipe.contains(&name) && table_exists(conn, &name).await? {
            wipe.push(name);
        }
    }
    // TRUNCATE takes its locks now: from here the running servers' writes wait for the commit.
    // It fires no row triggers, so the append-only audit log can be replaced as a whole.
    let has_record = wipe.iter().any(|t| t == "destroyed_data_keys");
    if has_record {
        sqlx::query("lock table destroyed_data_keys in access exclusive mode")
            .execute(&mut *conn)
            .await?;
    }
    if !opts.force
        && let Some(t) = holds_data(conn).await?
    {
        bail!(
            "the target database is not empty (table {t} has rows): add --force to replace its contents"
        );
    }
    // The target's record of destroyed data keys outlives the wipe (crypto-shredding).
    let record: Vec<(Uuid, Option<Uuid>, DateTime<Utc>)> = if has_record {
        sqlx::query_as("select id, owner_id, destroyed_at from destroyed_data_keys")
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    if !wipe.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "truncate table {}",
            wipe.join(", ")
        )))
        .execute(&mut *conn)
        .await?;
    }
    // Secondary indexes are much cheaper built once after the load than kept up row by row:
    // set aside (dropped in this transaction) and put back from their own definitions before
    // the commit. Those behind primary keys and unique constraints stay: foreign keys and
    // uniqueness are checked while loading.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "select i.indexname::text, i.indexdef::text from pg_indexes i \
         where i.schemaname = current_schema() and i.tablename = any($1) \
           and not exists (select 1 from pg_constraint c \
                           where c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass)",
    )
    .bind(&wipe)
    .fetch_all(&mut *conn)
    .await?;
    for (name, _) in &indexes {
        ensure!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "unexpected index name {name:?}"
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("drop index {name}")))
            .execute(&mut *conn)
            .await?;
    }
    let mut loader = PgLoader {
        conn: &mut *conn,
        sql: HashMap::new(),
    };
    let (totals, bytes) = load(decoder, first, input, &mut loader, on_progress).await?;
    let mut report = RestoreReport {
        totals,
        bytes,
        ..RestoreReport::default()
    };
    for (_, definition) in &indexes {
        // Read back from pg_indexes above: the schema's own definitions.
        sqlx::query(sqlx::AssertSqlSafe(definition.clone()))
            .execute(&mut *conn)
            .await?;
    }
    if has_record {
        for (id, owner, at) in &record {
            sqlx::query(
                "insert into destroyed_data_keys (id, owner_id, destroyed_at) values ($1, $2, $3) \
                 on conflict (id) do nothing",
            )
            .bind(id)
            .bind(owner)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        report.data_keys_shredded =
            sqlx::query("delete from data_keys where id in (select id from destroyed_data_keys)")
                .execute(&mut *conn)
                .await?
                .rows_affected();
    }
    if !opts.keep_sessions {
        report.sessions_revoked = revoke_all(conn).await?;
    }
    for t in &header.tables {
        if let Some(col) = &t.identity {
            // Names checked by the decoder to be plain identifiers.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "select setval(pg_get_serial_sequence('{0}', '{1}'), \
                 coalesce((select max({1}) from {0}), 0) + 1, false)",
                t.name, col
            )))
            .execute(&mut *conn)
            .await?;
        }
    }
    // Delivered at commit: every instance drops its cached sessions, grants and keys.
    sqlx::query("select pg_notify($1, 'r:')")
        .bind(crate::CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(report)
}

/// Revokes every open session and moves every credential epoch forward, as "sign out
/// everywhere" does for one account: tokens that were revoked after the backup was taken must
/// not come back to life.
async fn revoke_all(conn: &mut PgConnection) -> anyhow::Result<u64> {
    let now = Utc::now();
    let n = sqlx::query(
        "update sessions set revoked_at = $1, revoke_reason = 'restored', updated_at = $1 \
         where revoked_at is null",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query("update users set credential_epoch = credential_epoch + 1")
        .execute(&mut *conn)
        .await?;
    sqlx::query("delete from password_reset_tokens")
        .execute(&mut *conn)
        .await?;
    Ok(n)
}
