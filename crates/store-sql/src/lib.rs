//! Store code that is the same on SQLite and PostgreSQL, written once.
//!
//! The two backends differ in how they store ids (text vs `uuid`), times (Unix milliseconds vs
//! `timestamptz`) and flags, in locking, and in a few dialect details; the statements of most
//! features are otherwise identical. Such features are written here against [`SqlDb`] and
//! [`SqlTx`], which each backend implements once: they run a statement with typed arguments
//! ([`Arg`]) bound the backend's way, and hand rows back through
//! [`StoredColumns`], which decodes them the backend's way. Statements use `$1`-style
//! placeholders, which both drivers accept.
//!
//! A feature here provides its store trait's implementation as a macro (e.g.
//! [`impl_rbac_store!`]) that each backend expands for its store type.

pub mod backup;
pub mod email_confirmation;
pub mod envelope;
pub mod maintenance;
pub mod messages;
pub mod rbac;
pub mod recovery_emails;
pub mod refresh;
pub mod security_questions;
pub mod sign_in_alerts;
pub mod users;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::webhook::StoredColumns;
use porteiro_core::store::{StoreError, StoreResult};
use uuid::Uuid;

/// One bound argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// An id.
    Uuid(Uuid),
    /// Text.
    Text(&'a str),
    /// A time.
    Time(DateTime<Utc>),
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Bytes (a sealed mail payload).
    Bytes(&'a [u8]),
    /// An id or null.
    OptUuid(Option<Uuid>),
    /// Bytes or null.
    OptBytes(Option<&'a [u8]>),
}

/// A fetched row.
pub type Row = Box<dyn StoredColumns + Send + Sync>;

/// A statement failed because a unique constraint refused it. The caller says which field.
pub const UNIQUE_VIOLATION: &str = "unique";

/// A driver error as the store reports it: a unique violation is
/// `Conflict { field: UNIQUE_VIOLATION }`, anything else a backend error.
#[must_use]
pub fn driver_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict {
            field: UNIQUE_VIOLATION,
        };
    }
    StoreError::Backend(anyhow::Error::new(e))
}

/// A write transaction. Dropping it without [`SqlTx::commit`] rolls it back.
#[async_trait]
pub trait SqlTx: Send {
    /// Runs a query and returns its rows. A unique violation is
    /// `StoreError::Conflict { field: UNIQUE_VIOLATION }`.
    async fn fetch(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>>;
    /// Runs a statement and returns how many rows it changed. A unique violation is
    /// `StoreError::Conflict { field: UNIQUE_VIOLATION }`.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64>;
    /// Appends audit events (and their webhook deliveries) in this transaction.
    async fn write_events(&mut self, events: &[NewAuditEvent]) -> StoreResult<()>;
    /// Tells other instances, when this transaction commits, that grants changed (PostgreSQL
    /// NOTIFY; nothing on SQLite, where one process owns the file).
    async fn notify_grants_changed(&mut self) -> StoreResult<()>;
    /// Tells other instances, when this transaction commits, that these sessions were revoked
    /// (PostgreSQL NOTIFY; nothing on SQLite).
    async fn notify_sessions_revoked(&mut self, ids: &[Uuid]) -> StoreResult<()>;
    /// Locks account `user_id`'s row until the transaction ends (PostgreSQL `for update`;
    /// nothing on SQLite, whose write transactions are serialised already), so that changes to
    /// one account's dependent rows run in turn and take their locks in one order.
    async fn lock_account(&mut self, user_id: Uuid) -> StoreResult<()>;
    /// Commits.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// A database that runs portable statements.
#[async_trait]
pub trait SqlDb: Send + Sync {
    /// Begins a write transaction. `serialised`: the transaction also waits for every other
    /// serialised one (SQLite's single writer already does; PostgreSQL takes a transaction-level
    /// advisory lock), for checks that must see every concurrent change, like "the last
    /// administrator".
    async fn begin(&self, serialised: bool) -> StoreResult<Box<dyn SqlTx + '_>>;
    /// Runs a read-only query outside any transaction.
    async fn read(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Row>>;
}

/// Commits `tx`, writing `events` first when `changed` (a call that changed nothing writes no
/// event). Returns `changed`.
///
/// # Errors
/// On store failure.
pub async fn commit_if(
    mut tx: Box<dyn SqlTx + '_>,
    changed: bool,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    if changed {
        tx.write_events(events).await?;
    }
    tx.commit().await?;
    Ok(changed)
}
