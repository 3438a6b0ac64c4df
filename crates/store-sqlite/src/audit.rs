//! The append-only security event log.

use async_trait::async_trait;
use porteiro_core::domain::audit::{AuditEvent, AuditFilter, NewAuditEvent};
use porteiro_core::domain::webhook::NOT_FANNED_OUT_PREFIX;
use porteiro_core::store::{AuditStore, StoreError, StoreResult};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteConnection};

use crate::rows::{ms, opt_ms, parse_uuid, time};
use crate::{SqliteStore, backend};

/// Appends `events` on `conn` (inside the caller's transaction) and queues one webhook delivery
/// per enabled endpoint subscribing to each event's type. Returns the id of the last event.
pub(crate) async fn write_events(
    conn: &mut SqliteConnection,
    events: &[NewAuditEvent],
) -> StoreResult<Option<i64>> {
    let mut last = None;
    for event in events {
        let id: i64 = sqlx::query_scalar(
            "insert into audit_events \
             (occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) returning id",
        )
        .bind(ms(event.occurred_at))
        .bind(event.event_type)
        .bind(event.outcome.as_str())
        .bind(event.user_id.map(|u| u.to_string()))
        .bind(event.actor_id.map(|u| u.to_string()))
        .bind(event.ip_address.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.details.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        if !event.event_type.starts_with(NOT_FANNED_OUT_PREFIX) {
            sqlx::query(
                "insert into webhook_deliveries (endpoint_id, event_id, next_attempt_at, created_at) \
                 select e.id, ?1, ?2, ?2 from webhook_endpoints e \
                 where e.enabled = 1 \
                   and exists (select 1 from json_each(e.event_types) t where t.value in (?3, '*'))",
            )
            .bind(id)
            .bind(ms(event.occurred_at))
            .bind(event.event_type)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        last = Some(id);
    }
    Ok(last)
}

pub(crate) fn event_from_row(r: &SqliteRow) -> StoreResult<AuditEvent> {
    let opt_uuid = |col: &str| -> StoreResult<_> {
        r.try_get::<Option<String>, _>(col)
            .map_err(backend)?
            .as_deref()
            .map(parse_uuid)
            .transpose()
    };
    let details: String = r.try_get("details").map_err(backend)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(backend)?,
        occurred_at: time(r, "occurred_at")?,
        event_type: r.try_get("event_type").map_err(backend)?,
        outcome: r.try_get("outcome").map_err(backend)?,
        user_id: opt_uuid("user_id")?,
        actor_id: opt_uuid("actor_id")?,
        ip_address: r.try_get("ip_address").map_err(backend)?,
        user_agent: r.try_get("user_agent").map_err(backend)?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Backend(anyhow::anyhow!("bad audit details: {e}")))?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        write_events(&mut tx, std::slice::from_ref(event)).await?;
        tx.commit().await.map_err(backend)
    }

    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "select id, occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details \
             from audit_events \
             where (?1 is null or user_id = ?1) \
               and (?2 is null or event_type = ?2) \
               and (?3 is null or occurred_at >= ?3) \
               and (?4 is null or occurred_at < ?4) \
               and (?5 is null or id < ?5) \
             order by id desc limit ?6",
        )
        .bind(filter.user_id.map(|u| u.to_string()))
        .bind(filter.event_type.as_deref())
        .bind(opt_ms(filter.since))
        .bind(opt_ms(filter.until))
        .bind(filter.before_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter().map(event_from_row).collect()
    }
}
