//! Bulk loading: a whole batch travels as one JSON array and is inserted by one statement
//! through `json_each`, so a batch costs one round trip to the database thread, not one per row.

use async_trait::async_trait;
use porteiro_core::domain::NewUser;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::rbac::{ADMIN_ROLE_ID, USER_ROLE_ID};
use porteiro_core::store::{BulkStore, StoreResult};
use serde_json::json;

use crate::rows::ms;
use crate::{SqliteStore, backend, on_unique};

#[async_trait]
impl BulkStore for SqliteStore {
    async fn insert_users_bulk(&self, users: &[NewUser]) -> StoreResult<u64> {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                json!([
                    u.id.to_string(),
                    u.username,
                    u.username_key,
                    u.email,
                    u.first_name,
                    u.last_name,
                    u.password_hash,
                    u.is_admin,
                    u.locale,
                    ms(u.now)
                ])
            })
            .collect();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "insert into users (id, username, username_key, email, first_name, last_name, password_hash, \
             locale, created_at, updated_at) \
             select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                    value ->> 8, value ->> 9, value ->> 9 \
             from json_each(?1)",
        )
        .bind(serde_json::Value::Array(rows.clone()).to_string())
        .execute(&mut *tx)
        .await
        .map_err(on_unique)?
        .rows_affected();
        // Every account has the `user` role; flagged ones the `admin` role too.
        sqlx::query(
            "insert into user_roles (user_id, role_id, created_at) \
             select value ->> 0, ?2, value ->> 9 from json_each(?1) \
             union all select value ->> 0, ?3, value ->> 9 from json_each(?1) where value ->> 7",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(USER_ROLE_ID.to_string())
        .bind(ADMIN_ROLE_ID.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done)
    }

    async fn append_audit_bulk(&self, events: &[NewAuditEvent]) -> StoreResult<u64> {
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                json!([
                    ms(e.occurred_at),
                    e.event_type,
                    e.outcome.as_str(),
                    e.user_id.map(|u| u.to_string()),
                    e.actor_id.map(|u| u.to_string()),
                    e.ip_address,
                    e.user_agent,
                    e.details.to_string()
                ])
            })
            .collect();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "insert into audit_events \
             (occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details) \
             select value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                    value ->> 6, value ->> 7 \
             from json_each(?1)",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(done)
    }
}
