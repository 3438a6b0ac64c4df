//! Bulk loading: one write transaction, one cached prepared statement, many rows.

use async_trait::async_trait;
use porteiro_core::domain::NewUser;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::store::{BulkStore, StoreResult};

use crate::rows::ms;
use crate::{SqliteStore, backend, on_unique};

#[async_trait]
impl BulkStore for SqliteStore {
    async fn insert_users_bulk(&self, users: &[NewUser]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        for u in users {
            sqlx::query(
                "insert into users (id, username, username_key, email, first_name, last_name, password_hash, \
                 is_admin, locale, created_at, updated_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )
            .bind(u.id.to_string())
            .bind(&u.username)
            .bind(&u.username_key)
            .bind(&u.email)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(&u.password_hash)
            .bind(u.is_admin)
            .bind(&u.locale)
            .bind(ms(u.now))
            .execute(&mut *tx)
            .await
            .map_err(on_unique)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(users.len() as u64)
    }

    async fn append_audit_bulk(&self, events: &[NewAuditEvent]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        for e in events {
            sqlx::query(
                "insert into audit_events \
                 (occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(ms(e.occurred_at))
            .bind(e.event_type)
            .bind(e.outcome.as_str())
            .bind(e.user_id.map(|u| u.to_string()))
            .bind(e.actor_id.map(|u| u.to_string()))
            .bind(e.ip_address.as_deref())
            .bind(e.user_agent.as_deref())
            .bind(e.details.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(events.len() as u64)
    }
}
