//! Bulk loading: whole batches as arrays through `unnest`, one statement per batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use porteiro_core::domain::NewUser;
use porteiro_core::domain::audit::NewAuditEvent;
use porteiro_core::domain::rbac::{ADMIN_ROLE_ID, USER_ROLE_ID};
use porteiro_core::store::{BulkStore, StoreResult};
use uuid::Uuid;

use crate::{PgStore, backend, on_unique};

#[async_trait]
impl BulkStore for PgStore {
    async fn insert_users_bulk(&self, users: &[NewUser]) -> StoreResult<u64> {
        let col = |f: fn(&NewUser) -> String| users.iter().map(f).collect::<Vec<_>>();
        let result = sqlx::query(
            "with x as (select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::boolean[], $9::text[], $10::timestamptz[]) \
               as x(id, username, username_key, email, first_name, last_name, password_hash, is_admin, locale, t)), \
             inserted as (insert into users (id, username, username_key, email, first_name, last_name, \
               password_hash, locale, created_at, updated_at) \
               select id, username, username_key, email, first_name, last_name, password_hash, locale, t, t from x \
               returning id) \
             insert into user_roles (user_id, role_id, created_at) \
             select x.id, $11, x.t from x join inserted using (id) \
             union all select x.id, $12, x.t from x join inserted using (id) where x.is_admin",
        )
        .bind(users.iter().map(|u| u.id).collect::<Vec<Uuid>>())
        .bind(col(|u| u.username.clone()))
        .bind(col(|u| u.username_key.clone()))
        .bind(col(|u| u.email.clone()))
        .bind(users.iter().map(|u| u.first_name.clone()).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.last_name.clone()).collect::<Vec<_>>())
        .bind(col(|u| u.password_hash.clone()))
        .bind(users.iter().map(|u| u.is_admin).collect::<Vec<_>>())
        .bind(col(|u| u.locale.clone()))
        .bind(users.iter().map(|u| u.now).collect::<Vec<DateTime<Utc>>>())
        .bind(USER_ROLE_ID)
        .bind(ADMIN_ROLE_ID)
        .execute(&self.pool)
        .await
        .map_err(on_unique)?;
        // One `user` row per account, one more per administrator.
        let admins = users.iter().filter(|u| u.is_admin).count() as u64;
        Ok(result.rows_affected() - admins)
    }

    async fn append_audit_bulk(&self, events: &[NewAuditEvent]) -> StoreResult<u64> {
        let result = sqlx::query(
            "insert into audit_events \
             (occurred_at, event_type, outcome, user_id, actor_id, ip_address, user_agent, details) \
             select * from unnest($1::timestamptz[], $2::text[], $3::text[], $4::uuid[], $5::uuid[], \
                                  $6::text[], $7::text[], $8::text[])",
        )
        .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_type).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.user_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.actor_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.ip_address.clone()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.user_agent.clone()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.details.to_string()).collect::<Vec<_>>())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(result.rows_affected())
    }
}
