//! [`SqlDb`] for PostgreSQL: the shared store code of `porteiro_store_sql` runs here. Values bind
//! with their native types; a serialised transaction takes a transaction-level advisory lock
//! first, and grant changes are announced with `pg_notify` (delivered at commit).

use async_trait::async_trait;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::store::{MaintenanceLock, StoreResult};
use porteiro_store_sql::{Arg, Row, SqlDb, SqlTx, driver_error};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Connection as _, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::audit::write_events;
use crate::rows::OwnedCols;
use crate::{CHANNEL, PgStore, backend};

/// The advisory-lock key of serialised transactions (any fixed number unique to Porteiro).
pub(crate) const SERIAL_LOCK: i64 = 0x706f_7274_0001;

pub(crate) fn bind(sql: &str, args: &[Arg<'_>]) -> Query<'static, Postgres, PgArguments> {
    // The statements are assembled from constant pieces (table names from an enum): no input.
    args.iter().fold(
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())),
        |q, arg| match *arg {
            Arg::Uuid(id) => q.bind(id),
            Arg::Text(t) => q.bind(t.to_owned()),
            Arg::Time(t) => q.bind(t),
            Arg::Bool(b) => q.bind(b),
            Arg::Int(i) => q.bind(i),
            Arg::Bytes(b) => q.bind(b.to_vec()),
            Arg::OptUuid(id) => q.bind(id),
            Arg::OptBytes(b) => q.bind(b.map(<[u8]>::to_vec)),
        },
    )
}

fn rows(rows: Vec<sqlx::postgres::PgRow>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| Box::new(OwnedCols::from(r)) as Row)
        .collect()
}

/// A write transaction.
pub(crate) struct Tx(pub(crate) Transaction<'static, Postgres>);

impl Tx {
    /// Begins a transaction; `serialised` waits for every other serialised one first.
    pub(crate) async fn begin(store: &PgStore, serialised: bool) -> StoreResult<Self> {
        let mut tx = store.pool.begin().await.map_err(backend)?;
        if serialised {
            sqlx::query("select pg_advisory_xact_lock($1)")
                .bind(SERIAL_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        Ok(Self(tx))
    }
}

#[async_trait]
impl SqlTx for Tx {
    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>> {
        Ok(rows(
            bind(sql, args)
                .fetch_all(&mut *self.0)
                .await
                .map_err(driver_error)?,
        ))
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sql, args)
            .execute(&mut *self.0)
            .await
            .map_err(driver_error)?
            .rows_affected())
    }

    async fn write_events(&mut self, events: &[NewAuditEvent]) -> StoreResult<()> {
        write_events(&mut self.0, events).await.map(|_| ())
    }

    async fn notify_grants_changed(&mut self) -> StoreResult<()> {
        sqlx::query("select pg_notify($1, 'g:')")
            .bind(CHANNEL)
            .execute(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn notify_sessions_revoked(&mut self, ids: &[Uuid]) -> StoreResult<()> {
        crate::notify_revoked(&mut self.0, ids).await
    }

    async fn lock_account(&mut self, user_id: Uuid) -> StoreResult<()> {
        sqlx::query("select 1 from users where id = $1 for update")
            .bind(user_id)
            .execute(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.0.commit().await.map_err(backend)
    }
}

#[async_trait]
impl SqlDb for PgStore {
    async fn begin(&self, serialised: bool) -> StoreResult<Box<dyn SqlTx + '_>> {
        Ok(Box::new(Tx::begin(self, serialised).await?))
    }

    async fn read(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>> {
        Ok(rows(
            bind(sql, args)
                .fetch_all(&self.pool)
                .await
                .map_err(driver_error)?,
        ))
    }
}

porteiro_store_sql::impl_rbac_store!(PgStore);
porteiro_store_sql::impl_envelope_store!(PgStore);
porteiro_store_sql::impl_email_confirmation_store!(PgStore);
porteiro_store_sql::impl_recovery_email_store!(PgStore);
porteiro_store_sql::impl_security_question_store!(PgStore, complete_reset_inner);
porteiro_store_sql::impl_maintenance_store!(PgStore, maintenance_lock);
porteiro_store_sql::impl_sign_in_alert_store!(PgStore, crate::open_session);
porteiro_store_sql::impl_message_store!(PgStore);

/// The advisory-lock key of scheduled maintenance rounds.
pub(crate) const MAINTENANCE_LOCK: i64 = 0x706f_7274_0002;

/// The held maintenance lock: a session-level advisory lock on a connection of its own, outside
/// the pool, so that it lives exactly as long as this value (or the process: the server frees a
/// closed connection's locks).
struct MaintenanceGuard(PgConnection);

#[async_trait]
impl MaintenanceLock for MaintenanceGuard {
    async fn release(self: Box<Self>) -> StoreResult<()> {
        let mut conn = self.0;
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(MAINTENANCE_LOCK)
            .execute(&mut conn)
            .await
            .map_err(backend)?;
        conn.close().await.map_err(backend)
    }
}

/// `pg_try_advisory_lock` on a fresh connection: an instance that does not get it skips the
/// round. A session-level lock (not a transaction's) because a round is many short
/// transactions, run on pooled connections while this one holds the lock.
async fn maintenance_lock(store: &PgStore) -> StoreResult<Option<Box<dyn MaintenanceLock>>> {
    let mut conn = PgConnection::connect_with(&store.pool.connect_options())
        .await
        .map_err(backend)?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(MAINTENANCE_LOCK)
        .fetch_one(&mut conn)
        .await
        .map_err(backend)?;
    if locked {
        Ok(Some(Box::new(MaintenanceGuard(conn))))
    } else {
        conn.close().await.map_err(backend)?;
        Ok(None)
    }
}
