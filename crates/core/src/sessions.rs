//! The session-state cache that makes self-contained access tokens revocable.
//!
//! Every authenticated request checks its token's session (`sid`) through [`SessionCache`]: a Moka
//! cache of the joined session/user state, loaded from the store on a miss. Revocation goes through
//! [`SessionCache::revoked`], which records the id in a *tombstone* set before invalidating the
//! entry. The tombstones are checked first and never un-set, so a load that raced a revocation and
//! re-inserted stale "usable" state still cannot resurrect the session. Other instances learn of
//! revocations from the store's event feed (PostgreSQL LISTEN/NOTIFY) and call the same method.
//!
//! Verified JWTs are cached too (by token), which saves the signature check on repeat use; the
//! session check still runs on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

use crate::domain::SessionAuthState;
use crate::error::Error;
use crate::keys::AccessClaims;
use crate::store::Store;

/// How long a cached session state may be served without asking the store.
const STATE_TTL: Duration = Duration::from_secs(60);

/// Session-state and verified-token caches.
#[derive(Clone)]
pub struct SessionCache {
    states: Cache<Uuid, SessionAuthState>,
    tombstones: Cache<Uuid, ()>,
    verified: Cache<Arc<str>, VerifiedToken>,
    /// Session-state look-ups answered from the cache, and those that asked the store.
    lookups: Arc<Lookups>,
}

#[derive(Debug, Default)]
struct Lookups {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A snapshot of the session-state cache, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCacheStats {
    /// Session states held (approximate: Moka counts lazily).
    pub entries: u64,
    /// Look-ups answered from the cache since start-up.
    pub hits: u64,
    /// Look-ups that asked the store since start-up.
    pub misses: u64,
}

/// A token whose signature and claims were checked, and until when that check holds (Unix
/// seconds, exclusive): its expiry plus the leeway, or sooner when its signing key stops
/// verifying (superseded, see [`crate::keys`]).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The verified claims.
    pub claims: Arc<AccessClaims>,
    /// The check holds while the time in seconds is below this.
    pub until: i64,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("states", &self.states.entry_count())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache sized for `capacity` sessions. Tombstones live as long as access tokens can.
    #[must_use]
    pub fn new(capacity: u64, access_ttl: Duration) -> Self {
        Self {
            states: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(STATE_TTL)
                .build(),
            tombstones: Cache::builder()
                .max_capacity(capacity.saturating_mul(4))
                .time_to_live(access_ttl + Duration::from_secs(60))
                .build(),
            verified: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(access_ttl)
                .build(),
            lookups: Arc::default(),
        }
    }

    /// The state of session `sid`, from the cache or the store. `None` for unknown or revoked.
    ///
    /// # Errors
    /// On store failure.
    pub async fn state(
        &self,
        store: &dyn Store,
        sid: Uuid,
    ) -> Result<Option<SessionAuthState>, Error> {
        if self.tombstones.contains_key(&sid) {
            return Ok(None);
        }
        if let Some(state) = self.states.get(&sid).await {
            self.lookups.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(state));
        }
        self.lookups.misses.fetch_add(1, Ordering::Relaxed);
        let Some(state) = store.session_auth_state(sid).await? else {
            return Ok(None);
        };
        self.states.insert(sid, state).await;
        // A revocation may have landed while we were loading: the tombstone wins.
        if self.tombstones.contains_key(&sid) {
            self.states.invalidate(&sid).await;
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// Entries and hit counts (relaxed loads: a snapshot for the metrics).
    #[must_use]
    pub fn stats(&self) -> SessionCacheStats {
        SessionCacheStats {
            entries: self.states.entry_count(),
            hits: self.lookups.hits.load(Ordering::Relaxed),
            misses: self.lookups.misses.load(Ordering::Relaxed),
        }
    }

    /// Records that these sessions are revoked. Call after the store committed the revocation.
    pub async fn revoked(&self, sids: &[Uuid]) {
        for sid in sids {
            self.tombstones.insert(*sid, ()).await;
            self.states.invalidate(sid).await;
        }
    }

    /// Forgets every cached state (the event feed may have missed revocations).
    pub fn clear(&self) {
        self.states.invalidate_all();
        self.verified.invalidate_all();
    }

    /// Forgets every verified token (keys were retired: each must be checked again).
    pub fn forget_verified(&self) {
        self.verified.invalidate_all();
    }

    /// A previously verified token.
    pub async fn verified_claims(&self, token: &str) -> Option<VerifiedToken> {
        self.verified.get(token).await
    }

    /// Remembers a verified token.
    pub async fn remember_verified(&self, token: &str, verified: VerifiedToken) {
        self.verified.insert(Arc::from(token), verified).await;
    }
}
