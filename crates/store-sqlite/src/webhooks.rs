//! Webhook endpoints and the delivery queue. Decoding and the rules of an attempt's outcome are
//! shared with PostgreSQL (`porteiro_core::domain::webhook`); this file holds the SQL.
//!
//! Claims need no row locks: the single writer connection and `BEGIN IMMEDIATE` make the
//! select-then-update of a claim exclusive.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::webhook::{
    AttemptResult, ClaimedDelivery, MAX_REPLAY_EVENTS, NewWebhookEndpoint, Replay, WebhookDelivery,
    WebhookEndpoint, WebhookUpdate, delivery_from_columns, encode_event_types,
    endpoint_from_columns, not_fanned_out_pattern,
};
use porteiro_core::store::{StoreResult, WebhookStore};
use porteiro_core::{webhook_delivery_columns, webhook_endpoint_columns};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row as _, Sqlite};
use uuid::Uuid;

use crate::audit::{event_from_row, write_events};
use crate::rows::{Cols, ms, opt_ms, opt_time, uuid};
use crate::{SqliteStore, backend};

fn endpoint(r: &SqliteRow) -> StoreResult<WebhookEndpoint> {
    endpoint_from_columns(&Cols(r))
}

fn deliveries(rows: &[SqliteRow]) -> StoreResult<Vec<WebhookDelivery>> {
    rows.iter()
        .map(|r| delivery_from_columns(&Cols(r)))
        .collect()
}

impl SqliteStore {
    /// Runs an update of one endpoint that returns its row; writes `events` in the same
    /// transaction only when there was such an endpoint.
    async fn change_endpoint(
        &self,
        query: Query<'static, Sqlite, SqliteArguments>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let mut tx = self.write_tx().await?;
        let Some(row) = query.fetch_optional(&mut *tx).await.map_err(backend)? else {
            return Ok(None);
        };
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        endpoint(&row).map(Some)
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook(
        &self,
        new: &NewWebhookEndpoint,
        events: &[NewAuditEvent],
    ) -> StoreResult<WebhookEndpoint> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "insert into webhook_endpoints \
             (id, url, description, event_types, enabled, secret_enc, created_at, updated_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) returning ",
            webhook_endpoint_columns!()
        ))
        .bind(new.id.to_string())
        .bind(&new.url)
        .bind(&new.description)
        .bind(encode_event_types(&new.event_types))
        .bind(new.enabled)
        .bind(&new.secret_enc)
        .bind(ms(new.now))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        endpoint(&row)
    }

    async fn webhook_by_id(&self, id: Uuid) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query(concat!(
            "select ",
            webhook_endpoint_columns!(),
            " from webhook_endpoints where id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(endpoint).transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(concat!(
            "select ",
            webhook_endpoint_columns!(),
            " from webhook_endpoints order by created_at, id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(endpoint).collect()
    }

    async fn update_webhook(
        &self,
        id: Uuid,
        update: &WebhookUpdate,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let query = sqlx::query(concat!(
            "update webhook_endpoints set \
               url = coalesce(?2, url), description = coalesce(?3, description), \
               event_types = coalesce(?4, event_types), enabled = coalesce(?5, enabled), \
               failing_since = case when ?5 then null else failing_since end, \
               disabled_reason = case when ?5 then null when not ?5 then ?6 else disabled_reason end, \
               updated_at = ?7 \
             where id = ?1 returning ",
            webhook_endpoint_columns!()
        ))
        .bind(id.to_string())
        .bind(update.url.as_deref())
        .bind(update.description.as_deref())
        .bind(update.event_types.as_deref().map(encode_event_types))
        .bind(update.enabled)
        .bind(update.disabled_reason.as_deref())
        .bind(ms(now));
        self.change_endpoint(query, events).await
    }

    async fn delete_webhook(&self, id: Uuid, events: &[NewAuditEvent]) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("delete from webhook_endpoints where id = ?1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret_enc: &[u8],
        previous_until: DateTime<Utc>,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let query = sqlx::query(concat!(
            "update webhook_endpoints set previous_secret_enc = secret_enc, \
               previous_secret_until = ?3, secret_enc = ?2, updated_at = ?4 \
             where id = ?1 returning ",
            webhook_endpoint_columns!()
        ))
        .bind(id.to_string())
        .bind(secret_enc)
        .bind(ms(previous_until))
        .bind(ms(now));
        self.change_endpoint(query, events).await
    }

    async fn endpoints_with_due_deliveries(&self, now: DateTime<Utc>) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query(
            // One index probe per endpoint (`webhook_deliveries_due`), whatever the backlog.
            "select e.id as endpoint_id from webhook_endpoints e \
             where e.enabled and exists (select 1 from webhook_deliveries d \
               where d.endpoint_id = e.id and d.status = 'pending' and d.next_attempt_at <= ?1) \
             order by e.created_at, e.id",
        )
        .bind(ms(now))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(|r| uuid(r, "endpoint_id")).collect()
    }

    async fn claim_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "select d.id as delivery_id, d.attempts + 1 as attempts, a.id, a.occurred_at, a.event_type, \
               a.outcome, a.user_id, a.actor_id, a.ip_address, a.user_agent, a.details \
             from webhook_deliveries d \
             join webhook_endpoints e on e.id = d.endpoint_id \
             join audit_events a on a.id = d.event_id \
             where d.endpoint_id = ?1 and e.enabled and d.status = 'pending' \
               and d.next_attempt_at <= ?2 \
             order by d.next_attempt_at, d.id limit ?3",
        )
        .bind(endpoint_id.to_string())
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("delivery_id").map_err(backend)?;
            sqlx::query(
                "update webhook_deliveries set attempts = attempts + 1, next_attempt_at = ?2 \
                 where id = ?1",
            )
            .bind(id)
            .bind(ms(lease_until))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            claimed.push(ClaimedDelivery {
                id,
                endpoint_id,
                attempts: r.try_get("attempts").map_err(backend)?,
                event: event_from_row(r)?,
            });
        }
        tx.commit().await.map_err(backend)?;
        Ok(claimed)
    }

    async fn finish_webhook_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let outcome = result.outcome();
        let mut tx = self.write_tx().await?;
        let endpoint_id: Option<String> = sqlx::query_scalar(
            "update webhook_deliveries set status = ?2, \
               next_attempt_at = coalesce(?3, next_attempt_at), completed_at = ?4, \
               last_attempt_at = ?5, last_status_code = ?6, last_latency_ms = ?7, last_error = ?8 \
             where id = ?1 and status = 'pending' returning endpoint_id",
        )
        .bind(delivery_id)
        .bind(outcome.status.as_str())
        .bind(opt_ms(outcome.next_attempt_at))
        .bind(opt_ms(outcome.completed_at))
        .bind(ms(result.at))
        .bind(result.status_code)
        .bind(result.latency_ms)
        .bind(result.error.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(endpoint_id) = endpoint_id else {
            return Ok(None);
        };
        let row = sqlx::query(
            "update webhook_endpoints set \
               failing_since = case when ?2 then null else coalesce(failing_since, ?3) end \
             where id = ?1 returning failing_since",
        )
        .bind(endpoint_id)
        .bind(result.delivered)
        .bind(ms(result.at))
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        opt_time(&row, "failing_since")
    }

    async fn list_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(concat!(
            "select ",
            webhook_delivery_columns!(),
            " from webhook_deliveries d join audit_events a on a.id = d.event_id \
             where d.endpoint_id = ?1 and (?2 is null or d.id < ?2) order by d.id desc limit ?3"
        ))
        .bind(endpoint_id.to_string())
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        deliveries(&rows)
    }

    async fn dead_letters(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(concat!(
            "select ",
            webhook_delivery_columns!(),
            " from webhook_deliveries d join audit_events a on a.id = d.event_id \
             where d.status = 'dead' and (?1 is null or d.id < ?1) order by d.id desc limit ?2"
        ))
        .bind(before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        deliveries(&rows)
    }

    async fn replay_webhook_events(
        &self,
        endpoint_id: Uuid,
        replay: Replay,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let query = match replay {
            Replay::Event(event_id) => sqlx::query(
                "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, a.id, ?2, ?2 from webhook_endpoints e join audit_events a on a.id = ?4 \
                 where e.id = ?1 and a.event_type not like ?3",
            )
            .bind(endpoint_id.to_string())
            .bind(ms(now))
            .bind(not_fanned_out_pattern())
            .bind(event_id),
            Replay::Range { from, to } => sqlx::query(
                "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, a.id, ?2, ?2 from webhook_endpoints e \
                 join audit_events a on a.occurred_at >= ?4 and a.occurred_at < ?5 \
                 where e.id = ?1 and a.event_type not like ?3 \
                   and exists (select 1 from json_each(e.event_types) t \
                               where t.value in (a.event_type, '*')) \
                 order by a.id limit ?6",
            )
            .bind(endpoint_id.to_string())
            .bind(ms(now))
            .bind(not_fanned_out_pattern())
            .bind(ms(from))
            .bind(ms(to))
            .bind(i64::from(MAX_REPLAY_EVENTS)),
        };
        let queued = query
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if queued > 0 {
            write_events(&mut tx, events).await?;
            tx.commit().await.map_err(backend)?;
        }
        Ok(queued)
    }

    async fn queue_test_event(
        &self,
        endpoint_id: Uuid,
        event: &NewAuditEvent,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let Some(event_id) = write_events(&mut tx, std::slice::from_ref(event)).await? else {
            return Ok(None);
        };
        let id: Option<i64> = sqlx::query_scalar(
            "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
             select id, ?2, ?3, ?3 from webhook_endpoints where id = ?1 returning id",
        )
        .bind(endpoint_id.to_string())
        .bind(event_id)
        .bind(ms(event.occurred_at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if id.is_some() {
            tx.commit().await.map_err(backend)?;
        }
        Ok(id)
    }

    async fn webhook_backlog(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from webhook_deliveries d \
             join webhook_endpoints e on e.id = d.endpoint_id \
             where e.enabled and d.status = 'pending'",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(count(n))
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(
            "delete from webhook_deliveries \
             where status in ('delivered', 'dead') and completed_at < ?1",
        )
        .bind(ms(before))
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
