//! Address-confirmation links. The statements are shared with SQLite
//! (`porteiro_core::domain::email_confirmation::sql`); this file binds PostgreSQL's types and
//! takes the one lock SQLite does without: issuing and confirming lock the account row first, so
//! concurrent requests for one account count each other's tokens (the per-account limit is
//! exact) and take their locks in one order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::email_confirmation::{NewEmailConfirmation, sql};
use porteiro_core::domain::{NewAuditEvent, UserId};
use porteiro_core::store::{EmailConfirmationStore, StoreResult};
use sqlx::{Postgres, Row as _, Transaction};

use crate::{PgStore, backend, commit_if, on_unique};

/// Spends the account's live tokens other than `keep`.
async fn retire_others(
    tx: &mut Transaction<'static, Postgres>,
    user_id: UserId,
    now: DateTime<Utc>,
    keep: &str,
) -> StoreResult<()> {
    sqlx::query(sql::RETIRE_OTHERS)
        .bind(user_id)
        .bind(now)
        .bind(keep)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl EmailConfirmationStore for PgStore {
    async fn issue_email_confirmation(
        &self,
        c: &NewEmailConfirmation,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        lock_account(&mut tx, c.user_id).await?;
        let issued = sqlx::query(sql::ISSUE)
            .bind(&c.token_hash)
            .bind(c.user_id)
            .bind(&c.email)
            .bind(c.expires_at)
            .bind(c.now)
            .bind(window_start)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if issued {
            retire_others(&mut tx, c.user_id, c.now, &c.token_hash).await?;
        }
        commit_if(tx, issued, events).await
    }

    async fn confirmation_token_owner(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>> {
        sqlx::query_scalar(sql::OWNER)
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn confirm_email(
        &self,
        token_hash: &str,
        owner: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        lock_account(&mut tx, owner).await?;
        let spent = sqlx::query(sql::SPEND)
            .bind(token_hash)
            .bind(now)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(spent) = spent else {
            return Ok(false);
        };
        // Dropping the transaction without a commit rolls the spend back.
        let confirmed = sqlx::query(sql::CONFIRM)
            .bind(owner)
            .bind(spent.try_get::<String, _>("email").map_err(backend)?)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if !confirmed {
            return Ok(false);
        }
        retire_others(&mut tx, owner, now, token_hash).await?;
        commit_if(tx, true, events).await
    }

    async fn issue_email_change(
        &self,
        c: &NewEmailConfirmation,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        lock_account(&mut tx, c.user_id).await?;
        let issued = sqlx::query(sql::ISSUE_CHANGE)
            .bind(&c.token_hash)
            .bind(c.user_id)
            .bind(&c.email)
            .bind(c.expires_at)
            .bind(c.now)
            .bind(window_start)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if issued {
            retire_others(&mut tx, c.user_id, c.now, &c.token_hash).await?;
        }
        commit_if(tx, issued, events).await
    }

    async fn confirm_email_change(
        &self,
        token_hash: &str,
        owner: UserId,
        current: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        lock_account(&mut tx, owner).await?;
        let spent = sqlx::query(sql::SPEND)
            .bind(token_hash)
            .bind(now)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(spent) = spent else {
            return Ok(false);
        };
        // Dropping the transaction without a commit rolls the spend back: a refused change
        // (the address taken meanwhile) leaves the token live.
        let changed = sqlx::query(sql::CHANGE)
            .bind(owner)
            .bind(spent.try_get::<String, _>("email").map_err(backend)?)
            .bind(now)
            .bind(current)
            .execute(&mut *tx)
            .await
            .map_err(on_unique)?
            .rows_affected()
            == 1;
        if !changed {
            return Ok(false);
        }
        retire_others(&mut tx, owner, now, token_hash).await?;
        sqlx::query(sql::FORGET_RESET_LINKS)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit_if(tx, true, events).await
    }
}

/// Locks the account row first, so that issuing and confirming for one account run in turn
/// (each also writes the account's token rows: taking the account first keeps the order of
/// locks the same in both, so they never deadlock).
async fn lock_account(tx: &mut Transaction<'static, Postgres>, user_id: UserId) -> StoreResult<()> {
    sqlx::query("select 1 from users where id = $1 for update")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}
