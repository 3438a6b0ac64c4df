//! Webhook endpoints and the delivery queue on PostgreSQL. Decoding and the rules of an
//! attempt's outcome are shared with SQLite (`porteiro_core::domain::webhook`); this file holds
//! the SQL.
//!
//! Several server instances may share the queue: a claim locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED` and moves their `next_attempt_at` to the end of the lease in the same
//! statement, so no two instances hold the same attempt.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::webhook::{
    AttemptResult, ClaimedDelivery, MAX_REPLAY_EVENTS, NewWebhookEndpoint, Replay, WebhookDelivery,
    WebhookEndpoint, WebhookUpdate, delivery_from_columns, encode_event_types,
    endpoint_from_columns, not_fanned_out_pattern,
};
use porteiro_core::store::{StoreError, StoreResult, WebhookStore};
use porteiro_core::{webhook_delivery_columns, webhook_endpoint_columns};
use sqlx::Row as _;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use uuid::Uuid;

use crate::audit::{event_from_row, write_events};
use crate::rows::Cols;
use crate::{PgStore, backend};

type PgQuery = Query<'static, sqlx::Postgres, PgArguments>;

impl PgStore {
    /// Runs one statement that changes at most one endpoint and returns its row, and writes
    /// `events` in the same transaction only when it changed one.
    async fn change_endpoint(
        &self,
        query: PgQuery,
        events: &[NewAuditEvent],
    ) -> StoreResult<Option<WebhookEndpoint>> {
        let mut tx = self.write_tx().await?;
        let Some(row) = query.fetch_optional(&mut *tx).await.map_err(backend)? else {
            return Ok(None);
        };
        write_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)?;
        endpoint_from_columns(&Cols(&row)).map(Some)
    }

    /// Runs a statement, and writes `events` in the same transaction only when it touched a row.
    /// Returns how many it touched.
    async fn change_rows(&self, query: PgQuery, events: &[NewAuditEvent]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let n = query
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if n > 0 {
            write_events(&mut tx, events).await?;
            tx.commit().await.map_err(backend)?;
        }
        Ok(n)
    }

    async fn deliveries(&self, query: PgQuery) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = query.fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter()
            .map(|r| delivery_from_columns(&Cols(r)))
            .collect()
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn insert_webhook(
        &self,
        new: &NewWebhookEndpoint,
        events: &[NewAuditEvent],
    ) -> StoreResult<WebhookEndpoint> {
        let query = sqlx::query(concat!(
            "insert into webhook_endpoints \
             (id, url, description, event_types, enabled, secret_enc, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $7) returning ",
            webhook_endpoint_columns!()
        ))
        .bind(new.id)
        .bind(&new.url)
        .bind(&new.description)
        .bind(encode_event_types(&new.event_types))
        .bind(new.enabled)
        .bind(&new.secret_enc)
        .bind(new.now);
        // An insert always returns its row; `NotFound` cannot happen.
        self.change_endpoint(query, events)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn webhook_by_id(&self, id: Uuid) -> StoreResult<Option<WebhookEndpoint>> {
        let row = sqlx::query(concat!(
            "select ",
            webhook_endpoint_columns!(),
            " from webhook_endpoints where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| endpoint_from_columns(&Cols(&r))).transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(concat!(
            "select ",
            webhook_endpoint_columns!(),
            " from webhook_endpoints order by created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| endpoint_from_columns(&Cols(r)))
            .collect()
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
               url = coalesce($2, url), description = coalesce($3, description), \
               event_types = coalesce($4, event_types), enabled = coalesce($5::boolean, enabled), \
               failing_since = case when $5::boolean then null else failing_since end, \
               disabled_reason = case when $5::boolean then null \
                                      when not $5::boolean then $6::text \
                                      else disabled_reason end, \
               updated_at = $7 \
             where id = $1 returning ",
            webhook_endpoint_columns!()
        ))
        .bind(id)
        .bind(update.url.as_deref())
        .bind(update.description.as_deref())
        .bind(update.event_types.as_deref().map(encode_event_types))
        .bind(update.enabled)
        .bind(update.disabled_reason.as_deref())
        .bind(now);
        self.change_endpoint(query, events).await
    }

    async fn delete_webhook(&self, id: Uuid, events: &[NewAuditEvent]) -> StoreResult<bool> {
        let query = sqlx::query("delete from webhook_endpoints where id = $1").bind(id);
        Ok(self.change_rows(query, events).await? > 0)
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
               previous_secret_until = $3, secret_enc = $2, updated_at = $4 \
             where id = $1 returning ",
            webhook_endpoint_columns!()
        ))
        .bind(id)
        .bind(secret_enc)
        .bind(previous_until)
        .bind(now);
        self.change_endpoint(query, events).await
    }

    async fn endpoints_with_due_deliveries(&self, now: DateTime<Utc>) -> StoreResult<Vec<Uuid>> {
        sqlx::query_scalar(
            // One index probe per endpoint (`webhook_deliveries_due`), whatever the backlog.
            "select e.id as endpoint_id from webhook_endpoints e \
             where e.enabled and exists (select 1 from webhook_deliveries d \
               where d.endpoint_id = e.id and d.status = 'pending' and d.next_attempt_at <= $1) \
             order by e.created_at, e.id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn claim_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // A row another instance is claiming is skipped; one it claimed and committed meanwhile
        // is re-checked by the lock and no longer due.
        let rows = sqlx::query(
            "with claimed as ( \
               update webhook_deliveries set attempts = attempts + 1, next_attempt_at = $3 \
               where id in ( \
                 select d.id from webhook_deliveries d \
                 join webhook_endpoints e on e.id = d.endpoint_id \
                 where d.endpoint_id = $1 and e.enabled and d.status = 'pending' \
                   and d.next_attempt_at <= $2 \
                 order by d.next_attempt_at, d.id limit $4 \
                 for update of d skip locked) \
               returning id as delivery_id, attempts, event_id) \
             select c.delivery_id, c.attempts, a.id, a.occurred_at, a.event_type, a.outcome, \
               a.user_id, a.actor_id, a.ip_address, a.user_agent, a.details \
             from claimed c join audit_events a on a.id = c.event_id order by c.delivery_id",
        )
        .bind(endpoint_id)
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedDelivery {
                    id: r.try_get("delivery_id").map_err(backend)?,
                    endpoint_id,
                    attempts: r.try_get("attempts").map_err(backend)?,
                    event: event_from_row(r)?,
                })
            })
            .collect()
    }

    async fn finish_webhook_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let outcome = result.outcome();
        // One statement: the delivery and its endpoint change together or not at all.
        let row: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "with done as ( \
               update webhook_deliveries set status = $2, \
                 next_attempt_at = coalesce($3, next_attempt_at), completed_at = $4, \
                 last_attempt_at = $5, last_status_code = $6, last_latency_ms = $7, last_error = $8 \
               where id = $1 and status = 'pending' returning endpoint_id) \
             update webhook_endpoints e set \
               failing_since = case when $9 then null else coalesce(e.failing_since, $5) end \
             from done where e.id = done.endpoint_id returning e.failing_since",
        )
        .bind(delivery_id)
        .bind(outcome.status.as_str())
        .bind(outcome.next_attempt_at)
        .bind(outcome.completed_at)
        .bind(result.at)
        .bind(result.status_code)
        .bind(result.latency_ms)
        .bind(result.error.as_deref())
        .bind(result.delivered)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.flatten())
    }

    async fn list_webhook_deliveries(
        &self,
        endpoint_id: Uuid,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.deliveries(
            sqlx::query(concat!(
                "select ",
                webhook_delivery_columns!(),
                " from webhook_deliveries d join audit_events a on a.id = d.event_id \
                 where d.endpoint_id = $1 and ($2::bigint is null or d.id < $2) \
                 order by d.id desc limit $3"
            ))
            .bind(endpoint_id)
            .bind(before_id)
            .bind(i64::from(limit)),
        )
        .await
    }

    async fn dead_letters(
        &self,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        self.deliveries(
            sqlx::query(concat!(
                "select ",
                webhook_delivery_columns!(),
                " from webhook_deliveries d join audit_events a on a.id = d.event_id \
                 where d.status = 'dead' and ($1::bigint is null or d.id < $1) \
                 order by d.id desc limit $2"
            ))
            .bind(before_id)
            .bind(i64::from(limit)),
        )
        .await
    }

    async fn replay_webhook_events(
        &self,
        endpoint_id: Uuid,
        replay: Replay,
        now: DateTime<Utc>,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64> {
        let query = match replay {
            Replay::Event(event_id) => sqlx::query(
                "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, a.id, $2, $2 from webhook_endpoints e join audit_events a on a.id = $4 \
                 where e.id = $1 and a.event_type not like $3",
            )
            .bind(endpoint_id)
            .bind(now)
            .bind(not_fanned_out_pattern())
            .bind(event_id),
            Replay::Range { from, to } => sqlx::query(
                "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, a.id, $2, $2 from webhook_endpoints e \
                 join audit_events a on a.occurred_at >= $4 and a.occurred_at < $5 \
                 where e.id = $1 and a.event_type not like $3 \
                   and e.event_types::jsonb ?| array[a.event_type, '*'] \
                 order by a.id limit $6",
            )
            .bind(endpoint_id)
            .bind(now)
            .bind(not_fanned_out_pattern())
            .bind(from)
            .bind(to)
            .bind(i64::from(MAX_REPLAY_EVENTS)),
        };
        self.change_rows(query, events).await
    }

    async fn queue_test_event(
        &self,
        endpoint_id: Uuid,
        event: &NewAuditEvent,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.write_tx().await?;
        // The key-share lock keeps the endpoint from being deleted before the delivery is in.
        let exists = sqlx::query("select 1 from webhook_endpoints where id = $1 for key share")
            .bind(endpoint_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(None);
        }
        let Some(event_id) = write_events(&mut tx, std::slice::from_ref(event)).await? else {
            return Ok(None);
        };
        let id: i64 = sqlx::query_scalar(
            "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
             values ($1, $2, $3, $3) returning id",
        )
        .bind(endpoint_id)
        .bind(event_id)
        .bind(event.occurred_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(id))
    }

    async fn webhook_backlog(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from webhook_deliveries d \
             join webhook_endpoints e on e.id = d.endpoint_id \
             where e.enabled and d.status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn purge_webhook_deliveries(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(
            "delete from webhook_deliveries \
             where status in ('delivered', 'dead') and completed_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
