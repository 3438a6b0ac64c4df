//! Backups on SQLite: reads and binds the catalogue's types the SQLite way (ids as UUID text,
//! times as Unix milliseconds, flags as 0/1); the catalogue and the stream format are shared
//! (`porteiro_store_sql::backup`).
//!
//! A backup reads everything in one read transaction on a connection of its own: in WAL mode
//! that is a snapshot, and the server keeps writing meanwhile. A restore runs in one
//! `BEGIN IMMEDIATE` transaction, wipe included, and commits only after the stream's trailer
//! checked out; until then the running server's writes wait (up to its busy timeout).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures::TryStreamExt as _;
use porteiro_store_sql::backup::{
    CATALOGUE, Chunk, ColumnSpec, Encoder, Header, LiveColumn, Loader, OnProgress, Progress,
    RestoreOptions, RestoreReport, SCHEMA_VERSION, SEEDED_TABLES, TableSpec, Totals, Type, Value,
    catalogue_mismatches, load, read_header,
};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteRow};
use sqlx::{ConnectOptions as _, Connection as _, Row as _, SqliteConnection};
use tokio::sync::mpsc;
use uuid::Uuid;

fn path_of(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

fn options(path: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // A backup's selects stream whole tables for minutes: not "slow statements".
        .disable_statement_logging())
}

async fn schema_version(conn: &mut SqliteConnection) -> anyhow::Result<Option<i64>> {
    if !table_exists(conn, "_sqlx_migrations").await? {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn table_exists(conn: &mut SqliteConnection, name: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "select count(*) from sqlite_master where type = 'table' and name = ?1",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?
        > 0)
}

/// Every column of every Porteiro table in the database, with SQLite's types mapped to the
/// catalogue's where they are unambiguous (`integer` is left open: flags, times and integers).
///
/// # Errors
/// When the database cannot be read.
pub async fn live_columns(conn: &mut SqliteConnection) -> anyhow::Result<Vec<LiveColumn>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select name from sqlite_master where type = 'table' \
         and name not like 'sqlite_%' and name <> '_sqlx_migrations' order by name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for t in tables {
        // The name comes from sqlite_master and is checked to be a plain identifier.
        ensure!(
            t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "unexpected table name {t:?}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("pragma table_info({t})")))
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let declared: String = r.try_get("type")?;
            let notnull: i64 = r.try_get("notnull")?;
            let pk: i64 = r.try_get("pk")?;
            out.push(LiveColumn {
                table: t.clone(),
                column: r.try_get("name")?,
                ty: match declared.to_ascii_lowercase().as_str() {
                    "blob" => Some(Type::Bytes),
                    "text" => Some(Type::Text),
                    _ => None,
                },
                // Primary-key columns are never null here, whatever SQLite's pragma says.
                nullable: notnull == 0 && pk == 0,
            });
        }
    }
    Ok(out)
}

fn compatible(expected: Type, live: &LiveColumn) -> bool {
    match live.ty {
        Some(Type::Bytes) => expected == Type::Bytes,
        Some(Type::Text) => matches!(expected, Type::Text | Type::Uuid),
        _ => matches!(expected, Type::Int | Type::Bool | Type::Time),
    }
}

/// How the database's schema differs from the backup catalogue (empty: they agree).
///
/// # Errors
/// When the database cannot be opened or read.
pub async fn catalogue_problems(url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = options(path_of(url))?.read_only(true).connect().await?;
    let live = live_columns(&mut conn).await?;
    Ok(catalogue_mismatches(&live, compatible))
}

fn decode(row: &SqliteRow, i: usize, col: &ColumnSpec) -> anyhow::Result<Value> {
    Ok(match col.ty {
        Type::Uuid => match row.try_get::<Option<String>, _>(i)? {
            None => Value::Null,
            Some(s) => Value::Uuid(
                Uuid::parse_str(&s).with_context(|| format!("column {} holds {s:?}", col.name))?,
            ),
        },
        Type::Text => row
            .try_get::<Option<String>, _>(i)?
            .map_or(Value::Null, Value::Text),
        Type::Time => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Value::Null, |ms| Value::Time(ms.saturating_mul(1000))),
        Type::Bool => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Value::Null, |v| Value::Bool(v != 0)),
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
    let path = path_of(url);
    ensure!(
        Path::new(path).exists(),
        "the SQLite database {path} does not exist"
    );
    let mut conn = options(path)?
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open the SQLite database {path}"))?;
    // Deferred: the snapshot is taken by the first read below and holds until the end.
    sqlx::query("begin").execute(&mut conn).await?;
    let version = schema_version(&mut conn).await?;
    check_version(version)?;
    let problems = catalogue_mismatches(&live_columns(&mut conn).await?, compatible);
    ensure!(
        problems.is_empty(),
        "the database schema differs from what this Porteiro backs up: {}",
        problems.join("; ")
    );
    let header = Header::current("sqlite", chrono::Utc::now());
    let mut enc = Encoder::new(&header)?;
    let send = |chunk: Vec<u8>| async move {
        out.send(chunk)
            .await
            .map_err(|_| anyhow::anyhow!("the backup file could not be written"))
    };
    let mut values = Vec::new();
    for spec in &header.tables {
        enc.begin_table(&spec.name)?;
        let sql = spec.select_sql(|c| c.name.clone());
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
    let (last, totals, bytes) = enc.finish()?;
    send(last).await?;
    on_progress(Progress {
        rows: totals.rows,
        bytes,
    });
    Ok((totals, bytes))
}

pub(crate) fn check_version(version: Option<i64>) -> anyhow::Result<()> {
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

/// Inserts rows on the restore connection, inside its open transaction.
struct SqliteLoader<'c> {
    conn: &'c mut SqliteConnection,
    sql: HashMap<(String, usize), String>,
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>,
    v: &Value,
) -> sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments> {
    match v {
        Value::Null => q.bind(Option::<i64>::None),
        Value::Uuid(u) => q.bind(u.hyphenated().to_string()),
        Value::Text(t) => q.bind(t.clone()),
        Value::Time(us) => q.bind(us.div_euclid(1000)),
        Value::Bool(b) => q.bind(i64::from(*b)),
        Value::Int(i) => q.bind(*i),
        Value::Bytes(b) => q.bind(b.clone()),
    }
}

#[async_trait::async_trait]
impl Loader for SqliteLoader<'_> {
    async fn insert(&mut self, table: &TableSpec, rows: &[Vec<Value>]) -> anyhow::Result<()> {
        let sql = self
            .sql
            .entry((table.name.clone(), rows.len()))
            .or_insert_with(|| table.insert_sql(rows.len(), ""))
            .clone();
        // Built from the header's table and column names, which the decoder checked to be
        // plain identifiers, and numbered placeholders: no value is spliced in.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in rows {
            for v in row {
                q = bind_value(q, v);
            }
        }
        q.execute(&mut *self.conn)
            .await
            .with_context(|| format!("cannot insert into {}", table.name))?;
        Ok(())
    }

    /// The driver looks each `$N` parameter up by name when binding (a scan of the statement's
    /// parameters), so a statement's cost grows with the square of its parameters: keep them few.
    fn max_params(&self) -> usize {
        256
    }
}

/// Whether any table other than the migrations' seeded ones holds a row.
async fn holds_data(conn: &mut SqliteConnection) -> anyhow::Result<Option<&'static str>> {
    for t in CATALOGUE {
        if SEEDED_TABLES.contains(&t.name) || !table_exists(conn, t.name).await? {
            continue;
        }
        let any: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select exists(select 1 from {})",
            t.name
        )))
        .fetch_one(&mut *conn)
        .await?;
        if any != 0 {
            return Ok(Some(t.name));
        }
    }
    Ok(None)
}

/// Restores the backup streamed by `input` into the database at `url` (created if missing):
/// migrates it to the backup's schema version, then wipes, loads and checks everything in one
/// transaction, applies the destroyed-key record and revokes the sessions, commits, and runs
/// the remaining migrations.
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
    let path = path_of(url);
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    crate::create_private_file(Path::new(path))?;
    let mut conn = options(path)?
        .create_if_missing(true)
        .connect()
        .await
        .with_context(|| format!("cannot open the SQLite database {path}"))?;
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
    // A 16 MiB page cache (SQLite's default is 2 MiB) for the primary keys kept up while loading
    // and the sorts that rebuild the secondary indexes; bounded, so memory stays flat.
    sqlx::query("pragma cache_size = -16384")
        .execute(&mut conn)
        .await?;
    sqlx::query("begin immediate").execute(&mut conn).await?;
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
    conn: &mut SqliteConnection,
    header: &Header,
    decoder: &mut porteiro_store_sql::backup::Decoder,
    first: Vec<u8>,
    input: &mut mpsc::Receiver<Chunk>,
    opts: RestoreOptions,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<RestoreReport> {
    if !opts.force
        && let Some(t) = holds_data(conn).await?
    {
        bail!(
            "the target database is not empty (table {t} has rows): add --force to replace its contents"
        );
    }
    // The target's record of destroyed data keys outlives the wipe (crypto-shredding).
    let has_record = table_exists(conn, "destroyed_data_keys").await?;
    let record: Vec<(String, Option<String>, i64)> = if has_record {
        sqlx::query_as("select id, owner_id, destroyed_at from destroyed_data_keys")
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    // The append-only triggers would refuse the wipe, and secondary indexes are much cheaper
    // built once after the load than kept up row by row: both are set aside (dropped in this
    // transaction) and put back, from their own statements in sqlite_master, before the commit.
    // Primary keys and unique constraints (SQLite's automatic indexes, without a statement)
    // stay: foreign keys and uniqueness are checked while loading.
    let set_aside: Vec<(String, String, String)> = sqlx::query_as(
        "select type, name, sql from sqlite_master \
         where type in ('trigger', 'index') and sql is not null order by type desc",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (_, name, _) in &set_aside {
        ensure!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "unexpected schema object name {name:?}"
        );
    }
    for (kind, name, _) in set_aside.iter().filter(|o| o.0 == "trigger") {
        sqlx::query(sqlx::AssertSqlSafe(format!("drop {kind} {name}")))
            .execute(&mut *conn)
            .await?;
    }
    let mut wipe: Vec<String> = CATALOGUE.iter().map(|t| t.name.to_owned()).collect();
    for t in &header.tables {
        if !wipe.contains(&t.name) {
            wipe.push(t.name.clone());
        }
    }
    for t in wipe.iter().rev() {
        if table_exists(conn, t).await? {
            sqlx::query(sqlx::AssertSqlSafe(format!("delete from {t}")))
                .execute(&mut *conn)
                .await?;
        }
    }
    for (kind, name, _) in set_aside.iter().filter(|o| o.0 == "index") {
        sqlx::query(sqlx::AssertSqlSafe(format!("drop {kind} {name}")))
            .execute(&mut *conn)
            .await?;
    }
    let mut loader = SqliteLoader {
        conn: &mut *conn,
        sql: HashMap::new(),
    };
    let (totals, bytes) = load(decoder, first, input, &mut loader, on_progress).await?;
    let mut report = RestoreReport {
        totals,
        bytes,
        ..RestoreReport::default()
    };
    for (_, _, sql) in set_aside.iter().filter(|o| o.0 == "index") {
        // Read back from sqlite_master above: the schema's own statements.
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
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
    for (_, _, sql) in set_aside.iter().filter(|o| o.0 == "trigger") {
        // Read back from sqlite_master above: the schema's own statements.
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *conn)
            .await?;
    }
    let broken: Vec<(String,)> = sqlx::query_as("select \"table\" from pragma_foreign_key_check")
        .fetch_all(&mut *conn)
        .await?;
    ensure!(
        broken.is_empty(),
        "the backup's rows break foreign keys (table {})",
        broken.first().map_or("", |b| b.0.as_str())
    );
    Ok(report)
}

/// Revokes every open session and moves every credential epoch forward, as "sign out
/// everywhere" does for one account: tokens that were revoked after the backup was taken must
/// not come back to life.
async fn revoke_all(conn: &mut SqliteConnection) -> anyhow::Result<u64> {
    let now = chrono::Utc::now().timestamp_millis();
    let n = sqlx::query(
        "update sessions set revoked_at = ?1, revoke_reason = 'restored', updated_at = ?1 \
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
