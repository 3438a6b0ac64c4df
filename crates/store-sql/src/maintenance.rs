//! Maintenance jobs ([`porteiro_core::store::MaintenanceStore::run_maintenance`]), for both
//! backends: which rows each job removes is decided in [`porteiro_core::domain::maintenance`];
//! the statements are here, once.
//!
//! Each step repeats two statements until a batch comes back short: a read of at most `batch`
//! primary keys of dead rows (outside any write transaction: on SQLite a reader connection, so
//! the scan — a table scan where no index fits — never holds the single writer), then a write
//! transaction deleting exactly those keys. A sign-in therefore waits behind one batch of
//! primary-key deletes at most. Deleting by key without checking the condition again is sound
//! because every condition is one-way: a row that is dead at the run's cut-off stays dead (an
//! expired or spent token cannot come back, a revoked session stays revoked, an expired one
//! cannot be refreshed, a second step cannot be revived). Rows another run removed meanwhile
//! are simply not counted twice.

use porteiro_core::domain::maintenance::{Cutoffs, Job, RunEvents};
use porteiro_core::store::StoreResult;

use crate::{Arg, SqlDb};

/// How a table's primary key is bound.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// A token hash (text).
    Hash,
    /// An id.
    Id,
}

/// One step of a job: which rows of `table` are dead.
struct Step<'a> {
    /// The table rows are deleted from.
    table: &'static str,
    /// Its primary key column, and how it binds.
    key: (&'static str, Key),
    /// `select … as k from …`: the dead rows' keys, the condition's arguments numbered from `$1`
    /// and the batch size as the next one (`limit` is appended).
    select: &'static str,
    /// The condition's arguments.
    args: Vec<Arg<'a>>,
    /// Whether its rows count towards the job's `removed`.
    counted: bool,
}

/// Every refresh token of a session that ended (revoked or expired) before `$1`.
const ENDED_SESSIONS_TOKENS: &str = "select t.token_hash as k from sessions s \
     join refresh_tokens t on t.session_id = s.id \
     where s.revoked_at < $1 or s.expires_at < $1";

fn steps(job: Job, cut: &Cutoffs) -> Vec<Step<'static>> {
    let now = Arg::Time(cut.now);
    let ended = Arg::Time(cut.sessions_ended_before);
    let tokens = ("token_hash", Key::Hash);
    match job {
        Job::Tokens => vec![
            Step {
                // Never spent and expired: nothing can redeem them. Spent ones stay with their
                // live session (reuse detection).
                table: "refresh_tokens",
                key: tokens,
                select: "select token_hash as k from refresh_tokens \
                         where used_at is null and expires_at <= $1",
                args: vec![now],
                counted: true,
            },
            Step {
                table: "refresh_tokens",
                key: tokens,
                select: ENDED_SESSIONS_TOKENS,
                args: vec![ended],
                counted: true,
            },
            Step {
                table: "password_reset_tokens",
                key: tokens,
                select: "select token_hash as k from password_reset_tokens \
                         where (expires_at <= $1 or used_at is not null) and created_at < $2",
                args: vec![now, Arg::Time(cut.resets_issued_before)],
                counted: true,
            },
        ],
        Job::VerificationCodes => vec![
            Step {
                table: "email_confirmation_tokens",
                key: tokens,
                select: "select token_hash as k from email_confirmation_tokens \
                         where (expires_at <= $1 or used_at is not null) and created_at < $2",
                args: vec![now, Arg::Time(cut.confirmations_issued_before)],
                counted: true,
            },
            Step {
                // Recovery-address links: the same rule and window as address confirmation.
                table: "recovery_email_tokens",
                key: tokens,
                select: "select token_hash as k from recovery_email_tokens \
                         where (expires_at <= $1 or used_at is not null) and created_at < $2",
                args: vec![now, Arg::Time(cut.confirmations_issued_before)],
                counted: true,
            },
            Step {
                table: "mfa_challenges",
                key: ("id", Key::Id),
                select: "select id as k from mfa_challenges \
                         where expires_at <= $1 or consumed_at is not null \
                            or failed_attempts >= $2",
                args: vec![now, Arg::Int(i64::from(cut.mfa_max_attempts))],
                counted: true,
            },
            Step {
                // "This wasn't me" links past their week, used or not: a late click finds no
                // link, which the page answers like a used one.
                table: "sign_in_alerts",
                key: tokens,
                select: "select token_hash as k from sign_in_alerts where expires_at <= $1",
                args: vec![now],
                counted: true,
            },
            Step {
                // Recovery proofs (security-question answers) that expired or were spent with
                // a reset: nothing can redeem them, and nothing counts them.
                table: "recovery_proofs",
                key: tokens,
                select: "select token_hash as k from recovery_proofs \
                         where expires_at <= $1 or used_at is not null",
                args: vec![now],
                counted: true,
            },
        ],
        Job::Sessions => vec![
            // The tokens first, in batches of their own: a session may have thousands (one per
            // rotation), which deleting the session would cascade to in one statement.
            Step {
                table: "refresh_tokens",
                key: tokens,
                select: ENDED_SESSIONS_TOKENS,
                args: vec![ended],
                counted: false,
            },
            Step {
                table: "sessions",
                key: ("id", Key::Id),
                select: "select id as k from sessions where revoked_at < $1 or expires_at < $1",
                args: vec![ended],
                counted: true,
            },
        ],
    }
}

/// A key read back, owned until its delete is bound.
enum KeyValue {
    Hash(String),
    Id(uuid::Uuid),
}

impl KeyValue {
    fn arg(&self) -> Arg<'_> {
        match self {
            Self::Hash(h) => Arg::Text(h),
            Self::Id(id) => Arg::Uuid(*id),
        }
    }
}

/// `delete from {table} where {key} in ($1, …, $n)`.
fn delete_sql(table: &str, key: &str, n: usize) -> String {
    let placeholders = (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>();
    format!(
        "delete from {table} where {key} in ({})",
        placeholders.join(", ")
    )
}

/// [`porteiro_core::store::MaintenanceStore::run_maintenance`].
///
/// # Errors
/// On store failure (the batches already committed stay removed).
pub async fn run(
    db: &dyn SqlDb,
    job: Job,
    cut: &Cutoffs,
    batch: u32,
    events: RunEvents<'_>,
) -> StoreResult<u64> {
    let batch = batch.max(1);
    let steps = steps(job, cut);
    let mut removed = 0;
    for (i, step) in steps.iter().enumerate() {
        let last_step = i + 1 == steps.len();
        let select = format!("{} limit ${}", step.select, step.args.len() + 1);
        let mut args = step.args.clone();
        args.push(Arg::Int(i64::from(batch)));
        let (key, kind) = step.key;
        loop {
            let keys = db
                .read(&select, &args)
                .await?
                .iter()
                .map(|row| match kind {
                    Key::Hash => row.text("k").map(KeyValue::Hash),
                    Key::Id => row.uuid("k").map(KeyValue::Id),
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let done = keys.len() < usize::try_from(batch).unwrap_or(usize::MAX);
            let with_events = done && last_step;
            if keys.is_empty() && !with_events {
                break;
            }
            let mut tx = db.begin(false).await?;
            if !keys.is_empty() {
                let bound: Vec<Arg<'_>> = keys.iter().map(KeyValue::arg).collect();
                let n = tx
                    .execute(&delete_sql(step.table, key, keys.len()), &bound)
                    .await?;
                if step.counted {
                    removed += n;
                }
            }
            if with_events {
                tx.write_events(&events(removed)).await?;
            }
            tx.commit().await?;
            if done {
                break;
            }
        }
    }
    Ok(removed)
}

/// Implements [`porteiro_core::store::MaintenanceStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb); the backend passes its own `try_maintenance_lock` function
/// (`async fn(&Store) -> StoreResult<Option<Box<dyn MaintenanceLock>>>`), since locking differs.
#[macro_export]
macro_rules! impl_maintenance_store {
    ($store:ty, $lock:path) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::MaintenanceStore for $store {
            async fn run_maintenance(
                &self,
                job: ::porteiro_core::domain::maintenance::Job,
                cut: &::porteiro_core::domain::maintenance::Cutoffs,
                batch: u32,
                events: ::porteiro_core::domain::maintenance::RunEvents<'_>,
            ) -> ::porteiro_core::store::StoreResult<u64> {
                $crate::maintenance::run(self, job, cut, batch, events).await
            }
            async fn try_maintenance_lock(
                &self,
            ) -> ::porteiro_core::store::StoreResult<
                Option<Box<dyn ::porteiro_core::store::MaintenanceLock>>,
            > {
                $lock(self).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_name_every_key() {
        assert_eq!(
            delete_sql("sessions", "id", 3),
            "delete from sessions where id in ($1, $2, $3)"
        );
    }
}
