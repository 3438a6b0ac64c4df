//! Multi-factor sign-in on PostgreSQL: TOTP credentials, backup codes and second steps in
//! progress. Decoding and the order of the steps that end a second step are shared with SQLite
//! (`porteiro_core::domain::mfa`); this file holds the SQL.
//!
//! Under READ COMMITTED, a spend is a conditional `UPDATE … WHERE <still unspent>` whose row
//! count is checked: a transaction that finds the row locked by another waits, then re-evaluates
//! the condition on the row as the other left it, so of concurrent spends of one challenge, TOTP
//! step or backup code exactly one changes the row. Ending a second step first locks the
//! account row: completions for one account then run one after another, and take their locks in
//! the order account deletion does (the account, then what it owns), so the two cannot deadlock.
//! Rows that reference the account are inserted from a `for key share` read of it, so an account
//! deleted meanwhile makes a refusal, not a foreign-key error.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::mfa::{
    CompleteOutcome, EmailCodeOutcome, FactorSteps, MfaChallenge, NewMfaChallenge, SpentFactor,
    TotpCredential, challenge_from_columns, complete_challenge, encode_methods, encode_names,
    reauthenticate, totp_credential_from_columns,
};
use porteiro_core::store::{MfaStore, StoreResult};
use porteiro_core::{mfa_challenge_columns, totp_credential_columns};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Executor, PgConnection, Postgres};
use uuid::Uuid;

use crate::rows::Cols;
use crate::{PgStore, backend, commit_if};

/// The steps of [`FactorSteps`] on the connection of one write transaction.
struct Steps<'c>(&'c mut PgConnection);

#[async_trait]
impl FactorSteps for Steps<'_> {
    async fn consume_challenge(
        &mut self,
        id: Uuid,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<MfaChallenge>> {
        // The account row first: see the module documentation.
        sqlx::query(
            "select 1 from users u join mfa_challenges c on c.user_id = u.id \
             where c.id = $1 for no key update of u",
        )
        .bind(id)
        .execute(&mut *self.0)
        .await
        .map_err(backend)?;
        let row = sqlx::query(concat!(
            "update mfa_challenges set consumed_at = $3 \
             where id = $1 and consumed_at is null and expires_at > $3 and failed_attempts < $2 \
             returning ",
            mfa_challenge_columns!()
        ))
        .bind(id)
        .bind(max_attempts)
        .bind(now)
        .fetch_optional(&mut *self.0)
        .await
        .map_err(backend)?;
        row.map(|r| challenge_from_columns(&Cols(&r))).transpose()
    }

    async fn spend_totp_step(
        &mut self,
        user_id: UserId,
        step: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let query = sqlx::query(
            "update totp_credentials set last_step = $2, updated_at = $3 \
             where user_id = $1 and enabled_at is not null and (last_step is null or last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .bind(now);
        changed_one(&mut *self.0, query).await
    }

    async fn spend_backup_code(
        &mut self,
        user_id: UserId,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let query = sqlx::query(
            "update backup_codes set used_at = $3 \
             where user_id = $1 and code_hash = $2 and used_at is null \
               and exists (select 1 from totp_credentials t \
                           where t.user_id = $1 and t.enabled_at is not null)",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(now);
        changed_one(&mut *self.0, query).await
    }

    async fn clear_failures(&mut self, user_id: UserId, now: DateTime<Utc>) -> StoreResult<bool> {
        let query = sqlx::query(
            "update users set failed_login_attempts = 0, locked_until = null, updated_at = $2 \
             where id = $1 and (locked_until is null or locked_until <= $2)",
        )
        .bind(user_id)
        .bind(now);
        changed_one(&mut *self.0, query).await
    }
}

/// Runs a conditional write; whether it changed a row.
async fn changed_one<'c>(
    conn: impl Executor<'c, Database = Postgres>,
    query: Query<'static, Postgres, PgArguments>,
) -> StoreResult<bool> {
    Ok(query.execute(conn).await.map_err(backend)?.rows_affected() == 1)
}

/// Makes `code_hashes` the account's backup codes, dropping the old set.
async fn replace_codes(
    conn: &mut PgConnection,
    user_id: UserId,
    code_hashes: &[String],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("delete from backup_codes where user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query(
        "insert into backup_codes (user_id, code_hash, created_at) \
         select $1, code_hash, $2 from unnest($3::text[]) as code_hash on conflict do nothing",
    )
    .bind(user_id)
    .bind(now)
    .bind(code_hashes)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl MfaStore for PgStore {
    async fn totp_credential(&self, user_id: UserId) -> StoreResult<Option<TotpCredential>> {
        let row = sqlx::query(concat!(
            "select ",
            totp_credential_columns!(),
            " from totp_credentials t where t.user_id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| totp_credential_from_columns(&Cols(&r)))
            .transpose()
    }

    async fn begin_totp_setup(
        &self,
        user_id: UserId,
        secret_enc: &[u8],
        code_hashes: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // Selecting from `users` makes an unknown account a refusal, not a foreign-key error.
        let query = sqlx::query(
            "insert into totp_credentials (user_id, secret_enc, created_at, updated_at) \
             select id, $2, $3, $3 from users where id = $1 for key share \
             on conflict (user_id) do update set secret_enc = excluded.secret_enc, last_step = null, \
               created_at = excluded.created_at, updated_at = excluded.updated_at \
             where totp_credentials.enabled_at is null",
        )
        .bind(user_id)
        .bind(secret_enc)
        .bind(now);
        let started = changed_one(&mut *tx, query).await?;
        if started {
            replace_codes(&mut tx, user_id, code_hashes, now).await?;
        }
        commit_if(tx, started, &[]).await
    }

    async fn enable_totp(
        &self,
        user_id: UserId,
        secret_enc: &[u8],
        step: i64,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let query = sqlx::query(
            "update totp_credentials set enabled_at = $4, last_step = $3, updated_at = $4 \
             where user_id = $1 and secret_enc = $2 and enabled_at is null",
        )
        .bind(user_id)
        .bind(secret_enc)
        .bind(step)
        .bind(now);
        let done = changed_one(&mut *tx, query).await?;
        commit_if(tx, done, events).await
    }

    async fn disable_totp(
        &self,
        user_id: UserId,
        _now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let enabled: Option<bool> = sqlx::query_scalar(
            "delete from totp_credentials where user_id = $1 \
             returning enabled_at is not null",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("delete from backup_codes where user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit_if(tx, enabled == Some(true), events).await
    }

    async fn replace_backup_codes(
        &self,
        user_id: UserId,
        code_hashes: &[String],
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let query = sqlx::query(
            "update totp_credentials set updated_at = $2 \
             where user_id = $1 and enabled_at is not null",
        )
        .bind(user_id)
        .bind(now);
        let enabled = changed_one(&mut *tx, query).await?;
        if enabled {
            replace_codes(&mut tx, user_id, code_hashes, now).await?;
        }
        commit_if(tx, enabled, events).await
    }

    async fn spend_factor(
        &self,
        user_id: UserId,
        factor: &SpentFactor,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let spent = reauthenticate(&mut Steps(&mut tx), user_id, factor, now).await?;
        commit_if(tx, spent, events).await
    }

    async fn insert_mfa_challenge(
        &self,
        c: &NewMfaChallenge,
        events: &[NewAuditEvent],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let (code_hash, code_expires_at) = c.email_code.clone().unzip();
        let query = sqlx::query(
            "insert into mfa_challenges (id, token_hash, user_id, credential_epoch, client_hash, \
               device_hash, known_device, methods, amr, email_code_hash, email_code_expires_at, \
               email_codes_sent, email_last_sent_at, expires_at, created_at) \
             select $1, $2, id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
             from users where id = $3 for key share",
        )
        .bind(c.id)
        .bind(&c.token_hash)
        .bind(c.user_id)
        .bind(c.credential_epoch)
        .bind(&c.client_hash)
        .bind(&c.device_hash)
        .bind(c.known_device)
        .bind(encode_methods(&c.methods))
        .bind(encode_names(c.amr.iter().map(String::as_str)))
        .bind(code_hash)
        .bind(code_expires_at)
        .bind(i32::from(c.email_code.is_some()))
        .bind(c.email_code.as_ref().map(|_| c.now))
        .bind(c.expires_at)
        .bind(c.now);
        let inserted = changed_one(&mut *tx, query).await?;
        commit_if(tx, inserted, events).await?;
        Ok(())
    }

    async fn mfa_challenge(
        &self,
        token_hash: &str,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<MfaChallenge>> {
        let row = sqlx::query(concat!(
            "select ",
            mfa_challenge_columns!(),
            " from mfa_challenges where token_hash = $1 and consumed_at is null \
              and expires_at > $3 and failed_attempts < $2"
        ))
        .bind(token_hash)
        .bind(max_attempts)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| challenge_from_columns(&Cols(&r))).transpose()
    }

    async fn fail_mfa_challenge(
        &self,
        id: Uuid,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i32>> {
        sqlx::query_scalar(
            "update mfa_challenges set failed_attempts = failed_attempts + 1 \
             where id = $1 and consumed_at is null and expires_at > $3 and failed_attempts < $2 \
             returning failed_attempts",
        )
        .bind(id)
        .bind(max_attempts)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
    }

    async fn complete_mfa_challenge(
        &self,
        id: Uuid,
        factor: &SpentFactor,
        max_attempts: i32,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<CompleteOutcome> {
        let mut tx = self.write_tx().await?;
        let outcome =
            complete_challenge(&mut Steps(&mut tx), id, factor, max_attempts, now).await?;
        // A refusal drops `tx`, which rolls back what its steps wrote (the challenge marked
        // spent, a factor spent before the account lock refused).
        if outcome == CompleteOutcome::Completed {
            commit_if(tx, true, events).await?;
        }
        Ok(outcome)
    }

    async fn set_mfa_email_code(
        &self,
        id: Uuid,
        code_hash: &str,
        code_expires_at: DateTime<Utc>,
        not_since: DateTime<Utc>,
        max_sends: i32,
        max_attempts: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<EmailCodeOutcome> {
        let query = sqlx::query(
            "update mfa_challenges set email_code_hash = $2, email_code_expires_at = $3, \
               email_codes_sent = email_codes_sent + 1, email_last_sent_at = $7 \
             where id = $1 and consumed_at is null and expires_at > $7 and failed_attempts < $6 \
               and email_codes_sent < $5 and (email_last_sent_at is null or email_last_sent_at <= $4)",
        )
        .bind(id)
        .bind(code_hash)
        .bind(code_expires_at)
        .bind(not_since)
        .bind(max_sends)
        .bind(max_attempts)
        .bind(now);
        let stored = changed_one(&self.pool, query).await?;
        if stored {
            return Ok(EmailCodeOutcome::Stored);
        }
        let codes_sent: Option<i32> = sqlx::query_scalar(
            "select email_codes_sent from mfa_challenges \
             where id = $1 and consumed_at is null and expires_at > $3 and failed_attempts < $2",
        )
        .bind(id)
        .bind(max_attempts)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(EmailCodeOutcome::refusal(codes_sent, max_sends))
    }
}
