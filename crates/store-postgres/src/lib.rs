//! [`Store`] on PostgreSQL: for several Porteiro instances behind a load balancer.
//!
//! Every method that revokes sessions or adds a signing key also calls `pg_notify` *inside its
//! transaction*, so the notice is delivered exactly when (and only if) the change commits. Each
//! instance LISTENs on [`CHANNEL`] through [`Store::subscribe`] and drops the revoked sessions from
//! its cache, which is how a revocation on one instance reaches the others within a second.
//! Concurrency comes from row locks: the conditional `UPDATE … WHERE used_at IS NULL` of refresh
//! rotation lets exactly one of several concurrent transactions win, under READ COMMITTED.

mod audit;
pub mod backup;
mod browser;
mod bulk;
mod mfa;
mod migrations;
mod rows;
mod sql;
pub mod testing;
mod webhooks;

use porteiro_store_sql::refresh::{replayable_session, replayed};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use porteiro_core::domain::NewAuditEvent;
use porteiro_core::domain::audit::failure_events;
use porteiro_core::domain::mfa::encode_names;
use porteiro_core::domain::session::{NewRefreshToken, RotateOutcome, Rotation};
use porteiro_core::domain::{
    NewSession, NewUser, ProfileUpdate, Session, SessionAuthState, User, UserId, UserQuery,
};
use porteiro_core::store::{
    HashCensus, KeyStore, OutboxStore, QueuedMail, RecoveryStore, SessionStore, Store, StoreError,
    StoreEvent, StoreResult, StoredKey, UserStore,
};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::audit::write_events;
use crate::rows::{session_from_row, user_from_row};
use porteiro_store_sql::rbac;
use porteiro_store_sql::users::{self, FilterArg, PrefixIndex};

/// The LISTEN/NOTIFY channel for cache invalidation.
pub const CHANNEL: &str = "porteiro_events";
/// Session ids per notification (payloads are limited to 8000 bytes).
const IDS_PER_NOTICE: usize = 100;

macro_rules! user_cols {
    () => {
        "id, username, email, first_name, last_name, password_hash, is_active, email_verified, \
         failed_login_attempts, locked_until, locale, credential_epoch, created_at, updated_at, email_verified_at, \
         login_alerts, password_reset_required, accept_messages, \
         (select string_agg(r.name, ',') from user_roles ur join roles r on r.id = ur.role_id where ur.user_id = users.id) as roles"
    };
}
macro_rules! session_cols {
    () => {
        "id, user_id, created_at, last_active_at, expires_at, revoked_at, ip_address, user_agent, device_name, \
         device_type, os, browser, amr"
    };
}

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e))
}

/// Maps a unique violation to `Conflict` naming the field; everything else is a backend error.
fn on_unique(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let what = db.constraint().unwrap_or_else(|| db.message());
        let field = if what.contains("email") {
            "email"
        } else {
            "username"
        };
        return StoreError::Conflict { field };
    }
    backend(e)
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        migrations::migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    pub(crate) async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(backend)
    }

    /// Applies pending migrations (already done by [`PgStore::connect`]).
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrations::migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Queues a notice of revoked sessions; delivered when `tx` commits.
async fn notify_revoked(tx: &mut Transaction<'static, Postgres>, ids: &[Uuid]) -> StoreResult<()> {
    for chunk in ids.chunks(IDS_PER_NOTICE) {
        let payload = format!(
            "s:{}",
            chunk
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

fn parse_event(payload: &str) -> Option<StoreEvent> {
    match payload.split_once(':') {
        Some(("s", ids)) => Some(StoreEvent::SessionsRevoked(
            ids.split(',')
                .filter_map(|id| Uuid::parse_str(id).ok())
                .collect(),
        )),
        Some(("k", _)) => Some(StoreEvent::KeysChanged),
        Some(("g", _)) => Some(StoreEvent::GrantsChanged),
        // A restore replaced the database's contents: every cached state is stale.
        Some(("r", _)) => Some(StoreEvent::Resync),
        _ => None,
    }
}

/// Moves the user's credential epoch forward (see [`SessionStore::create_session`]). It must run
/// before the sessions are revoked: the row lock it takes makes a concurrent session insert wait
/// and then see the new epoch, or else finish first and be revoked with the rest.
/// Commits `tx`, with `events` when `changed` (a call that changed nothing writes no event).
/// Returns `changed`.
async fn commit_if(
    mut tx: Transaction<'static, Postgres>,
    changed: bool,
    events: &[NewAuditEvent],
) -> StoreResult<bool> {
    if changed {
        write_events(&mut tx, events).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(changed)
}

async fn bump_epoch(tx: &mut Transaction<'static, Postgres>, user_id: UserId) -> StoreResult<()> {
    sqlx::query("update users set credential_epoch = credential_epoch + 1 where id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    // Outstanding reset links end with the sessions: a link asked for before a disable or a
    // "revoke all" must not work after it.
    sqlx::query("delete from password_reset_tokens where user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn revoke_where_user(
    tx: &mut Transaction<'static, Postgres>,
    user_id: UserId,
    keep: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Uuid>> {
    let rows = sqlx::query(
        "update sessions set revoked_at = $1, revoke_reason = $2, updated_at = $1 \
         where user_id = $3 and revoked_at is null and expires_at > $1 and ($4 is null or id <> $4) returning id",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .bind(keep)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    let ids = rows
        .iter()
        .map(|r| rows::uuid(r, "id"))
        .collect::<StoreResult<Vec<_>>>()?;
    notify_revoked(tx, &ids).await?;
    Ok(ids)
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, u: &NewUser, events: &[NewAuditEvent]) -> StoreResult<User> {
        let mut tx = sql::Tx(self.write_tx().await?);
        let row = sqlx::query(concat!(
            "insert into users (id, username, username_key, email, first_name, last_name, password_hash, \
             locale, created_at, updated_at, email_verified, email_verified_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, case when $10 then $9 end) returning ",
            user_cols!()
        ))
        .bind(u.id)
        .bind(&u.username)
        .bind(&u.username_key)
        .bind(&u.email)
        .bind(&u.first_name)
        .bind(&u.last_name)
        .bind(&u.password_hash)
        .bind(&u.locale)
        .bind(u.now)
        .bind(u.email_verified)
        .fetch_one(&mut *tx.0)
        .await
        .map_err(on_unique)?;
        let mut user = user_from_row(&row)?;
        user.roles = rbac::give_initial_roles(&mut tx, u.id, u.is_admin, u.now).await?;
        write_events(&mut tx.0, events).await?;
        tx.0.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query(concat!(
            "select ",
            user_cols!(),
            " from users where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(concat!(
            "select ",
            user_cols!(),
            " from users where username_key = $1 or email = $1 limit 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(concat!(
            "select ",
            user_cols!(),
            " from users where email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn users_with_non_ascii_email(&self) -> StoreResult<Vec<(UserId, String)>> {
        let rows = sqlx::query(
            "select id, email from users where email ~ '[^ -~]' order by created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| Ok((rows::uuid(r, "id")?, r.try_get("email").map_err(backend)?)))
            .collect()
    }

    async fn rewrite_email(
        &self,
        id: UserId,
        old: &str,
        new: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "update users set email = $3, updated_at = $4 where id = $1 and email = $2",
        )
        .bind(id)
        .bind(old)
        .bind(new)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(on_unique)?;
        commit_if(tx, done.rows_affected() == 1, events).await
    }

    async fn list_users(
        &self,
        query: &UserQuery,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<User>, u64)> {
        let list = users::list_sql(query, PrefixIndex::Like, offset, limit);
        let args: Vec<_> = list.args.iter().map(FilterArg::as_arg).collect();
        let page = format!(
            "select {} from users where id in ({}) order by created_at, id",
            user_cols!(),
            list.page_ids
        );
        let (rows, n) = tokio::try_join!(
            sql::bind(&page, &args).fetch_all(&self.pool),
            sql::bind(&list.count, &args[..list.count_args]).fetch_one(&self.pool),
        )
        .map_err(backend)?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let total: i64 = n.try_get("n").map_err(backend)?;
        Ok((users, u64::try_from(total).unwrap_or(0)))
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("select count(*) from users")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn active_administrators(&self, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(concat!(
            "select ",
            user_cols!(),
            " from users where is_active and exists (select 1 from user_roles ur where ur.user_id = users.id \
             and ur.role_id = '00000000-0000-4000-8000-000000000001') order by created_at, id limit $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_profile(
        &self,
        id: UserId,
        p: &ProfileUpdate,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<User> {
        // Disabling can remove the last administrator: serialised with the role changes.
        let disabling = p.is_active == Some(false);
        let mut tx = sql::Tx::begin(self, disabling).await?;
        let before = if disabling {
            Some(rbac::admins_present(&mut tx).await?)
        } else {
            None
        };
        let row = sqlx::query(concat!(
            "update users set \
               first_name = case when $2 then $3 else first_name end, \
               last_name = case when $4 then $5 else last_name end, \
               locale = coalesce($6, locale), \
               is_active = coalesce($7, is_active), \
               login_alerts = coalesce($9, login_alerts), \
               accept_messages = coalesce($10, accept_messages), \
               updated_at = $8 \
             where id = $1 returning ",
            user_cols!()
        ))
        .bind(id)
        .bind(p.first_name.is_some())
        .bind(p.first_name.clone().flatten())
        .bind(p.last_name.is_some())
        .bind(p.last_name.clone().flatten())
        .bind(&p.locale)
        .bind(p.is_active)
        .bind(now)
        .bind(p.login_alerts)
        .bind(p.accept_messages)
        .fetch_optional(&mut *tx.0)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        let user = user_from_row(&row)?;
        if let Some(before) = before {
            rbac::still_administered(&mut tx, before).await?;
        }
        write_events(&mut tx.0, events).await?;
        tx.0.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn delete_user(
        &self,
        id: UserId,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>> {
        // Serialised with the role changes (advisory lock), so the last-administrator check sees
        // every concurrent removal.
        let mut tx = sql::Tx::begin(self, true).await?;
        let before = rbac::admins_present(&mut tx).await?;
        let sessions =
            sqlx::query("select id from sessions where user_id = $1 and revoked_at is null")
                .bind(id)
                .fetch_all(&mut *tx.0)
                .await
                .map_err(backend)?;
        let now = events
            .first()
            .map_or_else(chrono::Utc::now, |e| e.occurred_at);
        porteiro_store_sql::envelope::shred(&mut tx, id, now).await?;
        let deleted = sqlx::query("delete from users where id = $1")
            .bind(id)
            .execute(&mut *tx.0)
            .await
            .map_err(backend)?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        rbac::still_administered(&mut tx, before).await?;
        let ids = sessions
            .iter()
            .map(|r| rows::uuid(r, "id"))
            .collect::<StoreResult<Vec<_>>>()?;
        notify_revoked(&mut tx.0, &ids).await?;
        write_events(&mut tx.0, events).await?;
        tx.0.commit().await.map_err(backend)?;
        Ok(Some(ids))
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("update users set password_hash = $3 where id = $1 and password_hash = $2")
                .bind(id)
                .bind(old_hash)
                .bind(new_hash)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn password_hash_census(
        &self,
        current_prefix: &str,
        limit: u32,
    ) -> StoreResult<HashCensus> {
        let total = self.count_users().await?;
        let stale_prefixes: Vec<String> = sqlx::query_scalar(
            "select substr(password_hash, 1, $3) from users \
             where substr(password_hash, 1, $2) <> $1 limit $4",
        )
        .bind(current_prefix)
        .bind(i32::try_from(current_prefix.chars().count()).unwrap_or(i32::MAX))
        .bind(i32::try_from(porteiro_core::store::HASH_PREFIX_CHARS).unwrap_or(48))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        // Fewer than `limit` stale rows: they are all here, so counting them needs no second
        // scan of the table.
        let stale = if stale_prefixes.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            i64::try_from(stale_prefixes.len()).unwrap_or(i64::MAX)
        } else {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from users where substr(password_hash, 1, $2) <> $1",
            )
            .bind(current_prefix)
            .bind(i32::try_from(current_prefix.chars().count()).unwrap_or(i32::MAX))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
            n
        };
        Ok(HashCensus {
            total,
            stale: u64::try_from(stale).unwrap_or(0),
            stale_prefixes,
        })
    }

    async fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        failed: &NewAuditEvent,
        locked: &NewAuditEvent,
    ) -> StoreResult<bool> {
        // While locked: nothing changes. After a lock ran out the count starts again at 1.
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "update users set \
               failed_login_attempts = case \
                 when locked_until > $2 then failed_login_attempts \
                 when locked_until is not null then 1 \
                 else failed_login_attempts + 1 end, \
               locked_until = case \
                 when locked_until > $2 then locked_until \
                 when (case when locked_until is not null then 1 else failed_login_attempts + 1 end) >= $3 then $4 \
                 else null end, \
               updated_at = $2 \
             where id = $1 \
             returning locked_until",
        )
        .bind(id)
        .bind(now)
        .bind(max_attempts)
        .bind(lock_until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(false);
        };
        // The lock this failure would set is `lock_until`; an older lock has an earlier end.
        let locked_now =
            row.try_get::<Option<DateTime<Utc>>, _>(0).ok().flatten() == Some(lock_until);
        write_events(&mut tx, &failure_events(failed, locked, locked_now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(locked_now)
    }

    async fn record_failed_login_unknown(
        &self,
        identifier_hash: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "insert into login_failures (identifier_hash, failed_login_attempts, locked_until, created_at, updated_at) \
             values ($1, 1, case when 1 >= $3 then $4 else null end, $2, $2) \
             on conflict (identifier_hash) do update set \
               failed_login_attempts = case \
                 when login_failures.locked_until > $2 then login_failures.failed_login_attempts \
                 when login_failures.locked_until is not null then 1 \
                 else login_failures.failed_login_attempts + 1 end, \
               locked_until = case \
                 when login_failures.locked_until > $2 then login_failures.locked_until \
                 when (case when login_failures.locked_until is not null then 1 \
                            else login_failures.failed_login_attempts + 1 end) >= $3 then $4 \
                 else null end, \
               updated_at = $2",
        )
        .bind(identifier_hash)
        .bind(now)
        .bind(max_attempts)
        .bind(lock_until)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)
    }

    async fn unknown_login_state(
        &self,
        identifier_hash: &str,
    ) -> StoreResult<Option<(i32, Option<DateTime<Utc>>)>> {
        let row = sqlx::query("select failed_login_attempts, locked_until from login_failures where identifier_hash = $1")
            .bind(identifier_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok((
                r.try_get("failed_login_attempts").map_err(backend)?,
                r.try_get("locked_until").map_err(backend)?,
            ))
        })
        .transpose()
    }

    async fn record_successful_login(&self, id: UserId, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "update users set failed_login_attempts = 0, locked_until = null, updated_at = $2 \
             where id = $1 and (locked_until is null or locked_until <= $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlock_user(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done =
            sqlx::query("update users set failed_login_attempts = 0, locked_until = null, updated_at = $2 where id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        commit_if(tx, done.rows_affected() == 1, events).await
    }

    async fn change_password(
        &self,
        id: UserId,
        new_hash: &str,
        keep: Option<Uuid>,
        expected_epoch: Option<i64>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>> {
        let mut tx = self.write_tx().await?;
        // Under READ COMMITTED a concurrent change blocks on the row lock, then re-checks the
        // epoch against the committed row: the second of two racing changes matches nothing.
        let updated = sqlx::query(
            "update users set password_hash = $2, credential_epoch = credential_epoch + 1, \
               password_reset_required = false, updated_at = $3 \
             where id = $1 and ($4::bigint is null or credential_epoch = $4)",
        )
        .bind(id)
        .bind(new_hash)
        .bind(now)
        .bind(expected_epoch)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("delete from password_reset_tokens where user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let revoked = revoke_where_user(&mut tx, id, keep, "password_change", now).await?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        s: &NewSession,
        r: &NewRefreshToken,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Session>> {
        let Some((mut tx, session)) = open_session(self, s, r).await? else {
            return Ok(None);
        };
        tx.write_events(events).await?;
        tx.commit().await?;
        Ok(Some(session))
    }

    async fn session_by_id(&self, id: Uuid) -> StoreResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "select ",
            session_cols!(),
            " from sessions where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_auth_state(&self, id: Uuid) -> StoreResult<Option<SessionAuthState>> {
        let row = sqlx::query(
            "select s.user_id, (s.revoked_at is null and u.is_active) as usable, s.expires_at \
             from sessions s join users u on u.id = s.user_id where s.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(SessionAuthState {
                user_id: rows::uuid(&r, "user_id")?,
                usable: r.try_get("usable").map_err(backend)?,
                expires_at: rows::time(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn list_active_sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(concat!(
            "select ",
            session_cols!(),
            " from sessions where user_id = $1 and revoked_at is null and expires_at > $2 \
              order by last_active_at desc, id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn rename_session(
        &self,
        user_id: UserId,
        id: Uuid,
        name: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "update sessions set device_name = $3, updated_at = $4 \
             where id = $1 and user_id = $2 and revoked_at is null and expires_at > $4 returning ",
            session_cols!()
        ))
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn revoke_session(
        &self,
        user_id: UserId,
        id: Uuid,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "update sessions set revoked_at = $3, revoke_reason = 'revoked', updated_at = $3 \
             where id = $1 and user_id = $2 and revoked_at is null",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let revoked = done.rows_affected() == 1;
        if revoked {
            notify_revoked(&mut tx, &[id]).await?;
        }
        commit_if(tx, revoked, events).await
    }

    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.write_tx().await?;
        bump_epoch(&mut tx, user_id).await?;
        let revoked = revoke_where_user(&mut tx, user_id, keep, "revoked_all", now).await?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(revoked)
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: &str,
        next_expires_at: DateTime<Utc>,
        max_lifetime: chrono::Duration,
        ip_address: Option<&str>,
        now: DateTime<Utc>,
        reuse_since: Option<DateTime<Utc>>,
        on_reuse: &(dyn Fn(UserId, Uuid) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<RotateOutcome> {
        let mut tx = sql::Tx(self.write_tx().await?);
        let spent = sqlx::query(
            "update refresh_tokens set used_at = $2, updated_at = $2 \
             where token_hash = $1 and used_at is null and expires_at > $2 returning session_id",
        )
        .bind(presented_hash)
        .bind(now)
        .fetch_optional(&mut *tx.0)
        .await
        .map_err(backend)?;
        let outcome = if let Some(row) = spent {
            let session_id: Uuid = row.try_get("session_id").map_err(backend)?;
            let session = sqlx::query(concat!(
                "update sessions set last_active_at = $2, \
                   expires_at = least($3, created_at + $5 * interval '1 millisecond'), \
                   ip_address = coalesce($4, ip_address), updated_at = $2 \
                 where id = $1 and revoked_at is null and expires_at > $2 returning ",
                session_cols!()
            ))
            .bind(session_id)
            .bind(now)
            .bind(next_expires_at)
            .bind(ip_address)
            .bind(max_lifetime.num_milliseconds())
            .fetch_optional(&mut *tx.0)
            .await
            .map_err(backend)?;
            match session {
                Some(row) => {
                    let session = session_from_row(&row)?;
                    // The next token and the account in one round trip.
                    let user = sqlx::query(concat!(
                        "with next as (insert into refresh_tokens \
                           (token_hash, session_id, expires_at, created_at, updated_at) \
                           values ($1, $2, $3, $4, $4)) \
                         select ",
                        user_cols!(),
                        " from users where id = $5"
                    ))
                    .bind(next_hash)
                    .bind(session_id)
                    .bind(session.expires_at)
                    .bind(now)
                    .bind(session.user_id)
                    .fetch_optional(&mut *tx.0)
                    .await
                    .map_err(backend)?;
                    match user {
                        Some(user) => RotateOutcome::Rotated(Box::new(Rotation {
                            session,
                            user: user_from_row(&user)?,
                        })),
                        None => RotateOutcome::Invalid,
                    }
                }
                None => RotateOutcome::Invalid,
            }
        } else if let Some(session_id) =
            replayable_session(&mut tx, presented_hash, next_hash, reuse_since, now).await?
        {
            tx.0.commit().await.map_err(backend)?;
            return replayed(self, session_id, now).await;
        } else {
            let previous = sqlx::query("select session_id from refresh_tokens where token_hash = $1 and used_at is not null")
                .bind(presented_hash)
                .fetch_optional(&mut *tx.0)
                .await
                .map_err(backend)?;
            match previous {
                Some(row) => {
                    let session_id: Uuid = row.try_get("session_id").map_err(backend)?;
                    let owner = sqlx::query(
                        "update sessions set revoked_at = coalesce(revoked_at, $2), \
                           revoke_reason = coalesce(revoke_reason, 'refresh_reuse'), updated_at = $2 \
                         where id = $1 returning user_id",
                    )
                    .bind(session_id)
                    .bind(now)
                    .fetch_one(&mut *tx.0)
                    .await
                    .map_err(backend)?;
                    notify_revoked(&mut tx.0, &[session_id]).await?;
                    let user_id = rows::uuid(&owner, "user_id")?;
                    write_events(&mut tx.0, &[on_reuse(user_id, session_id)]).await?;
                    RotateOutcome::ReuseDetected {
                        session_id,
                        user_id,
                    }
                }
                None => RotateOutcome::Invalid,
            }
        };
        tx.0.commit().await.map_err(backend)?;
        Ok(outcome)
    }

    async fn refresh_token_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "select ",
            session_cols!(),
            " from sessions where id = (select session_id from refresh_tokens \
               where token_hash = $1 and used_at is null and expires_at > $2) \
              and revoked_at is null and expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }
}

#[async_trait]
impl RecoveryStore for PgStore {
    async fn replace_reset_token(
        &self,
        user_id: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
        limit: u32,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // Locking the user row serialises concurrent requests for one account.
        let exists = sqlx::query("select 1 from users where id = $1 for update")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(false);
        }
        let recent: i64 = sqlx::query_scalar(
            "select count(*) from password_reset_tokens where user_id = $1 and created_at > $2",
        )
        .bind(user_id)
        .bind(window_start)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        if recent >= i64::from(limit) {
            return Ok(false);
        }
        sqlx::query("delete from password_reset_tokens where user_id = $1 and created_at <= $2")
            .bind(user_id)
            .bind(window_start)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "update password_reset_tokens set used_at = $2, updated_at = $2 \
             where user_id = $1 and used_at is null",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "insert into password_reset_tokens (token_hash, user_id, expires_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn reset_token_owner(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserId>> {
        let row = sqlx::query(
            "select user_id from password_reset_tokens where token_hash = $1 and used_at is null and expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| rows::uuid(&r, "user_id")).transpose()
    }

    async fn complete_reset(
        &self,
        token_hash: &str,
        owner: UserId,
        new_hash: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>> {
        self.complete_reset_inner(token_hash, None, owner, new_hash, now, events)
            .await
    }
}

impl PgStore {
    /// `complete_reset`, and with `proof` the recovery proof that an account with security
    /// questions needs: spent in the same transaction as the token (both or neither). Without a
    /// proof, an account with at least `MIN_ANSWERS` answers to active questions is refused.
    pub(crate) async fn complete_reset_inner(
        &self,
        token_hash: &str,
        proof: Option<&str>,
        owner: UserId,
        new_hash: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<Vec<Uuid>>> {
        let mut tx = self.write_tx().await?;
        // The account first, as every change to its recovery does (answers, proofs).
        sqlx::query("select 1 from users where id = $1 for update")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let spent = sqlx::query(
            "update password_reset_tokens set used_at = $3, updated_at = $3 \
             where token_hash = $1 and user_id = $2 and used_at is null and expires_at > $3",
        )
        .bind(token_hash)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if spent.rows_affected() != 1 {
            return Ok(None);
        }
        let updated = if let Some(proof) = proof {
            let proved = sqlx::query(
                "update recovery_proofs set used_at = $3 \
                 where token_hash = $1 and user_id = $2 and used_at is null and expires_at > $3",
            )
            .bind(proof)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if proved.rows_affected() != 1 {
                return Ok(None);
            }
            // A disabled account cannot complete a reset issued before it was disabled.
            sqlx::query(
                "update users set password_hash = $2, failed_login_attempts = 0, locked_until = null, \
                   question_failed_attempts = 0, question_locked_until = null, \
                   credential_epoch = credential_epoch + 1, password_reset_required = false, updated_at = $3 \
                 where id = $1 and is_active",
            )
            .bind(owner)
            .bind(new_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
        } else {
            // Without a proof: only an account whose security questions are not in use.
            sqlx::query(
                "update users set password_hash = $2, failed_login_attempts = 0, locked_until = null, \
                   credential_epoch = credential_epoch + 1, password_reset_required = false, updated_at = $3 \
                 where id = $1 and is_active \
                   and (select count(*) from user_security_answers a \
                        join security_questions q on q.id = a.question_id \
                        where a.user_id = $1 and q.is_active) < $4",
            )
            .bind(owner)
            .bind(new_hash)
            .bind(now)
            .bind(i64::try_from(porteiro_core::domain::security_question::MIN_ANSWERS).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
        };
        if updated.rows_affected() != 1 {
            return Ok(None);
        }
        let revoked = revoke_where_user(&mut tx, owner, None, "password_reset", now).await?;
        // Proofs left over are of no use once the password changed.
        sqlx::query("delete from recovery_proofs where user_id = $1 and used_at is null")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(revoked))
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_signing_key(&self, k: &StoredKey, events: &[NewAuditEvent]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "insert into signing_keys (kid, algorithm, public_key, private_key_enc, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.public_key)
        .bind(&k.private_key_enc)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("select pg_notify($1, 'k:')")
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "select kid, algorithm, public_key, private_key_enc, created_at, retired_at from signing_keys \
             order by created_at desc, kid desc",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(StoredKey {
                    kid: r.try_get("kid").map_err(backend)?,
                    algorithm: r.try_get("algorithm").map_err(backend)?,
                    public_key: r.try_get("public_key").map_err(backend)?,
                    private_key_enc: r.try_get("private_key_enc").map_err(backend)?,
                    created_at: rows::time(r, "created_at")?,
                    retired_at: r.try_get("retired_at").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn retire_signing_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "update signing_keys set retired_at = $2, private_key_enc = ''::bytea, updated_at = $2 \
             where kid = $1 and retired_at is null",
        )
        .bind(kid)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let retired = done.rows_affected() == 1;
        if retired {
            // Other instances reload their keys, as after a rotation.
            sqlx::query("select pg_notify($1, 'k:')")
                .bind(CHANNEL)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        commit_if(tx, retired, events).await
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn enqueue_mail(&self, id: Uuid, payload: &[u8], now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "insert into mail_outbox (id, payload, next_attempt_at, created_at, updated_at) values ($1, $2, $3, $3, $3)",
        )
        .bind(id)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn claim_mail(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        let rows = sqlx::query(
            "update mail_outbox set lease_until = $2, attempts = attempts + 1, updated_at = $1 \
             where id in (select id from mail_outbox \
                          where status = 'pending' and next_attempt_at <= $1 \
                            and (lease_until is null or lease_until <= $1) \
                          order by next_attempt_at limit $3 for update skip locked) \
             returning id, payload, attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(QueuedMail {
                    id: rows::uuid(r, "id")?,
                    payload: r
                        .try_get::<Option<Vec<u8>>, _>("payload")
                        .map_err(backend)?
                        .unwrap_or_default(),
                    attempts: r.try_get("attempts").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn mail_sent(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "update mail_outbox set status = 'sent', payload = null, lease_until = null, last_error = null, \
             updated_at = $2 where id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn mail_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "update mail_outbox set \
               status = case when $3 is null then 'failed' else 'pending' end, \
               payload = case when $3 is null then null else payload end, \
               next_attempt_at = coalesce($3, next_attempt_at), lease_until = null, last_error = $2, updated_at = $4 \
             where id = $1",
        )
        .bind(id)
        .bind(error.chars().take(500).collect::<String>())
        .bind(retry_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn pending_mail_count(&self) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("select count(*) from mail_outbox where status = 'pending'")
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn purge_expired(
        &self,
        before: DateTime<Utc>,
        devices_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut removed = sqlx::query("delete from known_devices where updated_at < $1")
            .bind(devices_before)
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
        removed += sqlx::query(
            "delete from login_failures where updated_at < $1 and (locked_until is null or locked_until < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(removed)
    }

    async fn subscribe(&self) -> StoreResult<Option<BoxStream<'static, StoreEvent>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        listener.listen(CHANNEL).await.map_err(backend)?;
        let events = futures::stream::unfold(listener, |mut listener| async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notice)) => {
                        if let Some(event) = parse_event(notice.payload()) {
                            return Some((event, listener));
                        }
                    }
                    // The connection dropped; the next call reconnects. Notices may have been
                    // missed in between, so caches must start over.
                    Ok(None) => return Some((StoreEvent::Resync, listener)),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(Some(Box::pin(events)))
    }
    fn pool_stats(&self) -> Vec<porteiro_core::store::PoolStats> {
        vec![pool_stats("main", &self.pool)]
    }
}

/// The use of one connection pool, for the metrics.
fn pool_stats<DB: sqlx::Database>(
    pool: &'static str,
    of: &sqlx::Pool<DB>,
) -> porteiro_core::store::PoolStats {
    let open = of.size();
    porteiro_core::store::PoolStats {
        pool,
        open,
        idle: u32::try_from(of.num_idle()).unwrap_or(open).min(open),
        max: of.options().get_max_connections(),
    }
}

/// Opens a session as [`SessionStore::create_session`] does (and only while the account is not
/// waiting for a password reset after a "this wasn't me"), in a write transaction handed back
/// uncommitted, so a caller can add to it (see `porteiro_store_sql::impl_sign_in_alert_store!`).
pub(crate) async fn open_session<'a>(
    store: &'a PgStore,
    s: &NewSession,
    r: &NewRefreshToken,
) -> StoreResult<Option<(Box<dyn porteiro_store_sql::SqlTx + 'a>, Session)>> {
    let mut tx = store.write_tx().await?;
    // FOR SHARE: an epoch change in flight (its row lock) makes this wait and then re-check
    // the committed row; one that starts later waits for this insert and then revokes it.
    let row = sqlx::query(concat!(
        "insert into sessions (id, user_id, last_active_at, expires_at, ip_address, user_agent, device_name, \
         device_type, os, browser, amr, created_at, updated_at) \
         select $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $12, $3, $3 from users \
         where id = $2 and is_active and credential_epoch = $11 and not password_reset_required for share returning ",
        session_cols!()
    ))
    .bind(s.id)
    .bind(s.user_id)
    .bind(s.now)
    .bind(s.expires_at)
    .bind(&s.ip_address)
    .bind(&s.user_agent)
    .bind(&s.device_name)
    .bind(&s.device_type)
    .bind(&s.os)
    .bind(&s.browser)
    .bind(s.credential_epoch)
    .bind(encode_names(s.amr.iter().map(String::as_str)))
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    sqlx::query(
        "insert into refresh_tokens (token_hash, session_id, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $4)",
    )
    .bind(&r.token_hash)
    .bind(r.session_id)
    .bind(r.expires_at)
    .bind(r.now)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(Some((Box::new(sql::Tx(tx)), session_from_row(&row)?)))
}
