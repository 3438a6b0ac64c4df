//! Address-confirmation links. The statements are shared with PostgreSQL
//! (`porteiro_core::domain::email_confirmation::sql`); this file binds SQLite's representation of
//! their values (ids as text, times as Unix milliseconds). No row lock is needed: the single
//! writer connection and `BEGIN IMMEDIATE` serialise issuing and confirming.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::email_confirmation::{NewEmailConfirmation, sql};
use porteiro_core::domain::{NewAuditEvent, UserId};
use porteiro_core::store::{EmailConfirmationStore, StoreResult};
use sqlx::{Row as _, Sqlite, Transaction};

use crate::rows::{ms, uuid};
use crate::{SqliteStore, backend, commit_if, on_unique};

/// Spends the account's live tokens other than `keep`.
async fn retire_others(
    tx: &mut Transaction<'static, Sqlite>,
    user_id: &str,
    now: DateTime<Utc>,
    keep: &str,
) -> StoreResult<()> {
    sqlx::query(sql::RETIRE_OTHERS)
        .bind(user_id)
        .bind(ms(now))
        .bind(keep)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl EmailConfirmationStore for SqliteStore {
    async fn issue_email_confirmation(
        &self,
        c: &NewEmailConfirmation,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let user_id = c.user_id.to_string();
        let issued = sqlx::query(sql::ISSUE)
            .bind(&c.token_hash)
            .bind(&user_id)
            .bind(&c.email)
            .bind(ms(c.expires_at))
            .bind(ms(c.now))
            .bind(ms(window_start))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if issued {
            retire_others(&mut tx, &user_id, c.now, &c.token_hash).await?;
        }
        commit_if(tx, issued, events).await
    }

    async fn confirmation_token_owner(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>> {
        let row = sqlx::query(sql::OWNER)
            .bind(token_hash)
            .bind(ms(now))
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.map(|r| uuid(&r, "user_id")).transpose()
    }

    async fn confirm_email(
        &self,
        token_hash: &str,
        owner: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let owner = owner.to_string();
        let spent = sqlx::query(sql::SPEND)
            .bind(token_hash)
            .bind(ms(now))
            .bind(&owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(spent) = spent else {
            return Ok(false);
        };
        // Dropping the transaction without a commit rolls the spend back.
        let confirmed = sqlx::query(sql::CONFIRM)
            .bind(&owner)
            .bind(spent.try_get::<String, _>("email").map_err(backend)?)
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if !confirmed {
            return Ok(false);
        }
        retire_others(&mut tx, &owner, now, token_hash).await?;
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
        let user_id = c.user_id.to_string();
        let issued = sqlx::query(sql::ISSUE_CHANGE)
            .bind(&c.token_hash)
            .bind(&user_id)
            .bind(&c.email)
            .bind(ms(c.expires_at))
            .bind(ms(c.now))
            .bind(ms(window_start))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if issued {
            retire_others(&mut tx, &user_id, c.now, &c.token_hash).await?;
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
        let owner = owner.to_string();
        let spent = sqlx::query(sql::SPEND)
            .bind(token_hash)
            .bind(ms(now))
            .bind(&owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(spent) = spent else {
            return Ok(false);
        };
        // Dropping the transaction without a commit rolls the spend back: a refused change
        // (the address taken meanwhile) leaves the token live.
        let changed = sqlx::query(sql::CHANGE)
            .bind(&owner)
            .bind(spent.try_get::<String, _>("email").map_err(backend)?)
            .bind(ms(now))
            .bind(current)
            .execute(&mut *tx)
            .await
            .map_err(on_unique)?
            .rows_affected()
            == 1;
        if !changed {
            return Ok(false);
        }
        retire_others(&mut tx, &owner, now, token_hash).await?;
        sqlx::query(sql::FORGET_RESET_LINKS)
            .bind(&owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit_if(tx, true, events).await
    }
}
