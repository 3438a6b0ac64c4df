//! The append-only security event log.

use async_trait::async_trait;
use porteiro_core::domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use porteiro_core::domain::webhook::NOT_FANNED_OUT_PREFIX;
use porteiro_core::store::{AuditStore, StoreError, StoreResult};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};

use crate::rows::time;
use crate::{PgStore, backend};

/// Appends `events` on `conn` (inside the caller's transaction, or as one atomic statement per
/// event) and queues one webhook delivery per enabled endpoint subscribing to each event's type:
/// one round trip per event. Returns the id of the last event.
pub(crate) async fn write_events(
    conn: &mut PgConnection,
    events: &[NewAuditEvent],
) -> StoreResult<Option<i64>> {
    let mut last = None;
    for event in events {
        let id: i64 = sqlx::query_scalar(
            "with ev as ( \
                 insert into audit_events \
                 (occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8) returning id), \
             fan as ( \
                 insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, ev.id, $1, $1 from webhook_endpoints e, ev \
                 where $9 and e.enabled and e.event_types::jsonb ?| array[$2, '*']) \
             select id from ev",
        )
        .bind(event.occurred_at)
        .bind(event.event_type)
        .bind(event.outcome.as_str())
        .bind(event.user_id)
        .bind(event.actor_id)
        .bind(event.ip_address.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.details.to_string())
        .bind(!event.event_type.starts_with(NOT_FANNED_OUT_PREFIX))
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        last = Some(id);
    }
    Ok(last)
}

pub(crate) fn event_from_row(r: &PgRow) -> StoreResult<AuditEvent> {
    let details: String = r.try_get("details").map_err(backend)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(backend)?,
        occurred_at: time(r, "occurred_at")?,
        event_type: r.try_get("event_type").map_err(backend)?,
        outcome: r.try_get("outcome").map_err(backend)?,
        user_id: r.try_get("user_id").map_err(backend)?,
        actor_id: r.try_get("actor_id").map_err(backend)?,
        ip_address: r.try_get("ip_address").map_err(backend)?,
        user_agent: r.try_get("user_agent").map_err(backend)?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Backend(anyhow::anyhow!("bad audit details: {e}")))?,
    })
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        write_events(&mut conn, std::slice::from_ref(event)).await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "select id, occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details \
             from audit_events \
             where ($1::uuid is null or user_id = $1) \
               and ($2::text is null or event_type = $2) \
               and ($3::timestamptz is null or occurred_at >= $3) \
               and ($4::timestamptz is null or occurred_at < $4) \
               and ($5::bigint is null or id < $5) \
             order by id desc limit $6",
        )
        .bind(filter.user_id)
        .bind(filter.event_type.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(event_from_row).collect()
    }
}
