//! Device cookies and session cookies.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::audit::failure_events;
use porteiro_core::domain::{NewAuditEvent, UserId};
use porteiro_core::store::{BrowserStore, KnownDevice, MAX_KNOWN_DEVICES, StoreResult};
use sqlx::Row as _;
use uuid::Uuid;

use crate::{PgStore, backend};

#[async_trait]
impl BrowserStore for PgStore {
    async fn remember_device(
        &self,
        user_id: UserId,
        device_hash: &str,
        ip_address: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "insert into known_devices (user_id, device_hash, ip_address, failed_login_attempts, created_at, updated_at) \
             values ($1, $2, $3, 0, $4, $4) \
             on conflict (user_id, device_hash) do update set \
               ip_address = excluded.ip_address, failed_login_attempts = 0, locked_until = null, \
               updated_at = excluded.updated_at \
             where known_devices.locked_until is null or known_devices.locked_until <= excluded.updated_at",
        )
        .bind(user_id)
        .bind(device_hash)
        .bind(ip_address)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        sqlx::query(
            "delete from known_devices where user_id = $1 and device_hash not in \
             (select device_hash from known_devices where user_id = $1 \
              order by updated_at desc, device_hash limit $2)",
        )
        .bind(user_id)
        .bind(MAX_KNOWN_DEVICES)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done)
    }

    async fn forget_devices(&self, user_id: UserId) -> StoreResult<()> {
        sqlx::query("delete from known_devices where user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn known_device(
        &self,
        user_id: UserId,
        device_hash: &str,
    ) -> StoreResult<Option<KnownDevice>> {
        let row = sqlx::query(
            "select user_id, ip_address, failed_login_attempts, locked_until \
             from known_devices where user_id = $1 and device_hash = $2",
        )
        .bind(user_id)
        .bind(device_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(KnownDevice {
                user_id: r.try_get("user_id").map_err(backend)?,
                ip_address: r.try_get("ip_address").map_err(backend)?,
                failed_login_attempts: r.try_get("failed_login_attempts").map_err(backend)?,
                locked_until: r.try_get("locked_until").map_err(backend)?,
            })
        })
        .transpose()
    }

    async fn record_device_failure(
        &self,
        user_id: UserId,
        device_hash: &str,
        now: DateTime<Utc>,
        max_attempts: i32,
        lock_until: DateTime<Utc>,
        failed: &NewAuditEvent,
        locked: &NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "update known_devices set \
               failed_login_attempts = case \
                 when locked_until > $3 then failed_login_attempts \
                 when locked_until is not null then 1 \
                 else failed_login_attempts + 1 end, \
               locked_until = case \
                 when locked_until > $3 then locked_until \
                 when (case when locked_until is not null then 1 else failed_login_attempts + 1 end) >= $4 then $5 \
                 else null end, \
               updated_at = $3 \
             where user_id = $1 and device_hash = $2 \
             returning locked_until",
        )
        .bind(user_id)
        .bind(device_hash)
        .bind(now)
        .bind(max_attempts)
        .bind(lock_until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            return Ok(false);
        };
        let locked_now =
            row.try_get::<Option<DateTime<Utc>>, _>(0).ok().flatten() == Some(lock_until);
        crate::audit::write_events(&mut tx, &failure_events(failed, locked, locked_now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(locked_now)
    }

    async fn attach_session_cookie(&self, session_id: Uuid, cookie_hash: &str) -> StoreResult<()> {
        sqlx::query("update sessions set cookie_hash = $2 where id = $1")
            .bind(session_id)
            .bind(cookie_hash)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn session_by_cookie(&self, cookie_hash: &str) -> StoreResult<Option<(Uuid, UserId)>> {
        let row = sqlx::query("select id, user_id from sessions where cookie_hash = $1")
            .bind(cookie_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok((
                r.try_get("id").map_err(backend)?,
                r.try_get("user_id").map_err(backend)?,
            ))
        })
        .transpose()
    }
}
