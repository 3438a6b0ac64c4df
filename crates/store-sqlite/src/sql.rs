//! [`SqlDb`] for SQLite: the shared store code of `porteiro_store_sql` runs here. Ids bind as
//! UUID text, times as Unix milliseconds; every write transaction is `BEGIN IMMEDIATE` on the one
//! writer connection, so it is serialised already.

use std::sync::Arc;

use async_trait::async_trait;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::store::{MaintenanceLock, StoreResult};
use porteiro_store_sql::{Arg, Row, SqlDb, SqlTx, driver_error};
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use crate::audit::write_events;
use crate::rows::{OwnedCols, ms};
use crate::{SqliteStore, backend};

pub(crate) fn bind(sql: &str, args: &[Arg<'_>]) -> Query<'static, Sqlite, SqliteArguments> {
    // The statements are assembled from constant pieces (table names from an enum): no input.
    args.iter().fold(
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())),
        |q, arg| match *arg {
            Arg::Uuid(id) => q.bind(id.to_string()),
            Arg::Text(t) => q.bind(t.to_owned()),
            Arg::Time(t) => q.bind(ms(t)),
            Arg::Bool(b) => q.bind(b),
            Arg::Int(i) => q.bind(i),
            Arg::Bytes(b) => q.bind(b.to_vec()),
            Arg::OptUuid(id) => q.bind(id.map(|id| id.to_string())),
            Arg::OptBytes(b) => q.bind(b.map(<[u8]>::to_vec)),
        },
    )
}

fn rows(rows: Vec<sqlx::sqlite::SqliteRow>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| Box::new(OwnedCols::from(r)) as Row)
        .collect()
}

/// A write transaction on the writer connection.
pub(crate) struct Tx(pub(crate) Transaction<'static, Sqlite>);

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
        Ok(())
    }

    async fn notify_sessions_revoked(&mut self, _ids: &[Uuid]) -> StoreResult<()> {
        Ok(())
    }

    async fn lock_account(&mut self, _user_id: Uuid) -> StoreResult<()> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.0.commit().await.map_err(backend)
    }
}

#[async_trait]
impl SqlDb for SqliteStore {
    async fn begin(&self, _serialised: bool) -> StoreResult<Box<dyn SqlTx + '_>> {
        Ok(Box::new(Tx(self.write_tx().await?)))
    }

    async fn read(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>> {
        Ok(rows(
            bind(sql, args)
                .fetch_all(&self.reader)
                .await
                .map_err(driver_error)?,
        ))
    }
}

porteiro_store_sql::impl_rbac_store!(SqliteStore);
porteiro_store_sql::impl_envelope_store!(SqliteStore);
porteiro_store_sql::impl_email_confirmation_store!(SqliteStore);
porteiro_store_sql::impl_recovery_email_store!(SqliteStore);
porteiro_store_sql::impl_security_question_store!(SqliteStore, complete_reset_inner);
porteiro_store_sql::impl_maintenance_store!(SqliteStore, maintenance_lock);
porteiro_store_sql::impl_sign_in_alert_store!(SqliteStore, crate::open_session);
porteiro_store_sql::impl_message_store!(SqliteStore);

/// The held maintenance lock of a SQLite store.
struct MaintenanceGuard(tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl MaintenanceLock for MaintenanceGuard {
    async fn release(self: Box<Self>) -> StoreResult<()> {
        drop(self.0);
        Ok(())
    }
}

/// One holder per store: the process owns the file (one server per SQLite file), and the jobs'
/// writes are serialised by the single writer anyway; the lock keeps two rounds of this process
/// from running at once.
async fn maintenance_lock(store: &SqliteStore) -> StoreResult<Option<Box<dyn MaintenanceLock>>> {
    Ok(Arc::clone(&store.maintenance)
        .try_lock_owned()
        .ok()
        .map(|guard| Box::new(MaintenanceGuard(guard)) as Box<dyn MaintenanceLock>))
}
