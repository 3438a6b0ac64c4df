//! Maintenance jobs ([`porteiro_core::store::MaintenanceStore::run_maintenance`]), for both
//! backends: which rows each job removes is decided in [`porteiro_core::domain::maintenance`];
//! the statements are here, once.
//!
//! Every statement deletes at most `$1` rows, chosen by primary key in a subquery (`delete …
//! where key in (select key … limit $1)`, which SQLite and PostgreSQL both accept), and runs in
//! a transaction of its own: a batch holds SQLite's writer, or PostgreSQL's row locks, for one
//! batch only, and sign-ins queue behind one batch at most. A step repeats until a batch comes
//! back short.

use porteiro_core::domain::maintenance::{Cutoffs, Job, RunEvents};
use porteiro_core::store::StoreResult;

use crate::{Arg, SqlDb};

/// One statement of a job, repeated until it deletes fewer than a batch.
struct Step<'a> {
    sql: &'static str,
    /// Bound after the batch size (`$1`): `$2`, `$3`, …
    args: Vec<Arg<'a>>,
    /// Whether its rows count towards the job's `removed`.
    counted: bool,
}

/// Every refresh token of a session that ended (revoked or expired) before `$2`.
const ENDED_SESSIONS_TOKENS: &str = "delete from refresh_tokens where token_hash in (\
     select t.token_hash from sessions s join refresh_tokens t on t.session_id = s.id \
     where s.revoked_at < $2 or s.expires_at < $2 limit $1)";

fn steps(job: Job, cut: &Cutoffs) -> Vec<Step<'static>> {
    let now = Arg::Time(cut.now);
    let ended = Arg::Time(cut.sessions_ended_before);
    match job {
        Job::Tokens => vec![
            Step {
                // Never spent and expired: nothing can redeem them. Spent ones stay with their
                // live session (reuse detection).
                sql: "delete from refresh_tokens where token_hash in (\
                      select token_hash from refresh_tokens \
                      where used_at is null and expires_at <= $2 limit $1)",
                args: vec![now],
                counted: true,
            },
            Step {
                sql: ENDED_SESSIONS_TOKENS,
                args: vec![ended],
                counted: true,
            },
            Step {
                sql: "delete from password_reset_tokens where token_hash in (\
                      select token_hash from password_reset_tokens \
                      where (expires_at <= $2 or used_at is not null) and created_at < $3 \
                      limit $1)",
                args: vec![now, Arg::Time(cut.resets_issued_before)],
                counted: true,
            },
        ],
        Job::VerificationCodes => vec![
            Step {
                sql: "delete from email_confirmation_tokens where token_hash in (\
                      select token_hash from email_confirmation_tokens \
                      where (expires_at <= $2 or used_at is not null) and created_at < $3 \
                      limit $1)",
                args: vec![now, Arg::Time(cut.confirmations_issued_before)],
                counted: true,
            },
            Step {
                sql: "delete from mfa_challenges where id in (\
                      select id from mfa_challenges \
                      where expires_at <= $2 or consumed_at is not null or failed_attempts >= $3 \
                      limit $1)",
                args: vec![now, Arg::Int(i64::from(cut.mfa_max_attempts))],
                counted: true,
            },
        ],
        Job::Sessions => vec![
            // The tokens first, in batches of their own: a session may have thousands (one per
            // rotation), which one cascading delete would remove in a single long statement.
            Step {
                sql: ENDED_SESSIONS_TOKENS,
                args: vec![ended],
                counted: false,
            },
            Step {
                sql: "delete from sessions where id in (\
                      select id from sessions where revoked_at < $2 or expires_at < $2 limit $1)",
                args: vec![ended],
                counted: true,
            },
        ],
    }
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
        let mut args = vec![Arg::Int(i64::from(batch))];
        args.extend(step.args.iter().copied());
        loop {
            let mut tx = db.begin(false).await?;
            let n = tx.execute(step.sql, &args).await?;
            if step.counted {
                removed += n;
            }
            let done = n < u64::from(batch);
            if done && last_step {
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

/// Implements the jobs of [`porteiro_core::store::MaintenanceStore`] for a store type that
/// implements [`SqlDb`](crate::SqlDb); the backend passes the path of its own
/// `try_maintenance_lock` function (`async fn(&Store) -> StoreResult<Option<Box<dyn
/// MaintenanceLock>>>`), since locking differs.
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
