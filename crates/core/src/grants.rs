//! The grants cache: what each user holds (roles and permissions), read on every authenticated
//! request without a database round trip.
//!
//! Entries are stamped with a *generation*. Any change to roles, permissions or assignments
//! moves the generation forward ([`GrantsCache::changed`]) — on this instance right after the
//! change commits, on the others when the store's event feed (PostgreSQL LISTEN/NOTIFY) reports
//! it — and an entry of an older generation is never served. A load that raced a change stores
//! its (possibly stale) result under the generation it started with, so the next request loads
//! again: a removed role stops working on the next request here, and within the feed's latency
//! elsewhere. Entries also expire after a minute, in case the feed was interrupted (it resyncs
//! anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

use crate::domain::rbac::{Grants, Permission};
use crate::error::Error;
use crate::service::Principal;
use crate::store::Store;

/// Per-user grants, generation-stamped.
#[derive(Clone)]
pub struct GrantsCache {
    entries: Cache<Uuid, (u64, Arc<Grants>)>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for GrantsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantsCache")
            .field("entries", &self.entries.entry_count())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

impl GrantsCache {
    /// A cache for up to `capacity` users.
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(60))
                .build(),
            generation: Arc::default(),
        }
    }

    /// What `user_id` holds now.
    ///
    /// # Errors
    /// On store failure.
    pub async fn get(&self, store: &dyn Store, user_id: Uuid) -> Result<Arc<Grants>, Error> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((stamp, grants)) = self.entries.get(&user_id).await
            && stamp == generation
        {
            return Ok(grants);
        }
        let grants = Arc::new(store.user_grants(user_id).await?);
        self.entries
            .insert(user_id, (generation, Arc::clone(&grants)))
            .await;
        Ok(grants)
    }

    /// Allows `principal` to change `user_id`'s account: their own; or, with `users:manage`, an
    /// account holding no permission the caller lacks — so `users:manage` alone cannot reset an
    /// administrator's password or factors, disable or delete them.
    ///
    /// # Errors
    /// `Forbidden`; on store failure.
    pub async fn ensure_manages(
        &self,
        store: &dyn Store,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<(), Error> {
        principal.ensure_self_or(user_id, Permission::UsersManage)?;
        if principal.user_id == user_id {
            return Ok(());
        }
        let mine = self.get(store, principal.user_id).await?;
        let theirs = self.get(store, user_id).await?;
        if theirs.permissions.iter().all(|p| mine.allows(p)) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// Roles, permissions or assignments changed: every entry is stale.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
