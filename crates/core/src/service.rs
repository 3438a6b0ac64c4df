//! [`Auth`]: the one service the web layer calls. Each flow lives in `flows/<name>.rs` as an
//! `impl Auth` block; this file holds construction and the helpers flows share.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::AuthConfig;
use crate::credentials::PasswordHasher;
use crate::crypto::MasterKey;
use crate::domain::User;
use crate::domain::rbac::{PermSet, Permission};
use crate::error::Error;
use crate::grants::GrantsCache;
use crate::keys::KeyRing;
use crate::mail::Outbox;
use crate::sessions::SessionCache;
use crate::store::{Store, StoreEvent};

/// Who is calling, as far as the network tells.
#[derive(Clone, Default)]
pub struct ClientContext {
    /// Client IP (after trusted-proxy resolution).
    pub ip: Option<String>,
    /// Raw `User-Agent`.
    pub user_agent: Option<String>,
    /// `Accept-Language`, for the language of mail to new accounts.
    pub accept_language: Option<String>,
    /// The device cookie a browser presented (see the lockout rule in the README).
    pub device: Option<String>,
}

impl std::fmt::Debug for ClientContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientContext")
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .field("accept_language", &self.accept_language)
            .field("device", &self.device.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Runs `work` in the background, under one of `slots`, within the current request's span and
/// client context (so its log lines and audit events carry them); a failure is logged as `what`.
/// For answers that must not depend on what the work finds: recovery and confirmation mails.
pub(crate) fn in_background<F>(slots: &Arc<tokio::sync::Semaphore>, what: &'static str, work: F)
where
    F: Future<Output = Result<(), Error>> + Send + 'static,
{
    let slots = Arc::clone(slots);
    let client = ClientContext::current();
    tokio::spawn(tracing::Instrument::in_current_span(client.scope(
        async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            if let Err(e) = work.await {
                tracing::error!(error = %e, "{what}");
            }
        },
    )));
}

/// An authenticated caller, with the built-in permissions they hold at this request (read
/// through the grants cache, see [`crate::flows::rbac`]: a removed role stops working at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// The session the access token belongs to.
    pub session_id: Uuid,
    /// Built-in permissions held.
    pub perms: PermSet,
}

impl Principal {
    /// Whether the caller holds `permission`.
    #[must_use]
    pub const fn can(&self, permission: Permission) -> bool {
        self.perms.has(permission)
    }

    /// # Errors
    /// `Forbidden` unless the caller holds `permission`.
    pub const fn ensure(&self, permission: Permission) -> Result<(), Error> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// Allows the caller to act on `user_id`: themselves, or anyone with `permission`.
    ///
    /// # Errors
    /// `Forbidden` otherwise.
    pub const fn ensure_self_or(&self, user_id: Uuid, permission: Permission) -> Result<(), Error> {
        if self.user_id.as_u128() == user_id.as_u128() {
            Ok(())
        } else {
            self.ensure(permission)
        }
    }
}

/// A successful sign-in or refresh.
#[derive(Clone)]
pub struct Authenticated {
    /// Signed access JWT.
    pub access_token: String,
    /// Opaque refresh token (shown once, stored hashed).
    pub refresh_token: String,
    /// Access-token lifetime in seconds.
    pub expires_in: i64,
    /// The session.
    pub session_id: Uuid,
    /// The user.
    pub user: User,
    /// A new device cookie to give the client, when sign-in created one.
    pub device_token: Option<String>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user.id)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The authentication service.
pub struct Auth {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: AuthConfig,
    pub(crate) hasher: PasswordHasher,
    pub(crate) keys: KeyRing,
    pub(crate) cache: SessionCache,
    /// What each user holds, checked on every authenticated request.
    pub(crate) grants: GrantsCache,
    pub(crate) outbox: Outbox,
    pub(crate) master: Arc<MasterKey>,
    /// The key hierarchy that encrypts secrets at rest.
    pub(crate) envelope: Arc<crate::envelope::Envelope>,
    /// Browser session cookies (hash → session, owner); revocation is still checked per request.
    pub(crate) cookie_sessions: moka::future::Cache<String, (Uuid, Uuid)>,
    /// Accounts as `GET /api/auth/me` shows them, for one second: a client polling its profile
    /// does not cost a database read per request. Changes made here drop the entry at once;
    /// changes made by another instance show within the second. Never used to authorise.
    pub(crate) profiles: moka::future::Cache<Uuid, User>,
    /// Bounds concurrent background recovery work (look-up, token, mail) under a flood.
    pub(crate) recovery_slots: Arc<tokio::sync::Semaphore>,
    /// New-device alerts of sign-ins (see [`crate::flows::sign_in_alerts`]).
    pub(crate) alerts: crate::flows::sign_in_alerts::SignInAlerts,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds the service: loads (or creates) the signing keys.
    ///
    /// # Errors
    /// When the keys cannot be loaded or opened.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        hasher: PasswordHasher,
        config: AuthConfig,
    ) -> Result<Self, Error> {
        let envelope = Arc::new(
            crate::envelope::Envelope::load(master.clone(), store.clone(), clock.now()).await?,
        );
        let keys = KeyRing::load(
            store.clone(),
            envelope.clone(),
            config.issuer.clone(),
            config.audience.clone(),
            config.access_ttl,
            clock.now(),
        )
        .await?;
        let access = config
            .access_ttl
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(300));
        let outbox = Outbox::new(store.clone(), envelope.clone(), clock.clone());
        let alerts = crate::flows::sign_in_alerts::SignInAlerts::new(
            store.clone(),
            master.clone(),
            outbox.clone(),
            &config,
        );
        Ok(Self {
            alerts,
            cache: SessionCache::new(200_000, access),
            grants: GrantsCache::new(200_000),
            outbox,
            master,
            envelope,
            profiles: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(1))
                .build(),
            cookie_sessions: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(300))
                .build(),
            recovery_slots: Arc::new(tokio::sync::Semaphore::new(16)),
            store,
            clock,
            config,
            hasher,
            keys,
        })
    }

    /// The store (for health checks and the CLI).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The key hierarchy that encrypts secrets at rest.
    #[must_use]
    pub fn envelope(&self) -> &Arc<crate::envelope::Envelope> {
        &self.envelope
    }

    /// The mail outbox (the server runs its worker).
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The domain settings.
    #[must_use]
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The password hasher.
    #[must_use]
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// The current time from the injected clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    /// Applies one event from the store's change feed to the local caches.
    pub async fn apply_event(&self, event: StoreEvent) {
        match event {
            StoreEvent::SessionsRevoked(ids) => self.cache.revoked(&ids).await,
            StoreEvent::KeysChanged => self.reload_keys().await,
            StoreEvent::GrantsChanged => self.grants.changed(),
            StoreEvent::Resync => {
                self.cache.clear();
                self.grants.changed();
            }
        }
    }

    /// Follows the store's change feed for the life of the server. If the feed cannot be opened
    /// or ends, caches are cleared (notices may have been missed) and it is reopened with backoff.
    /// Without a feed (SQLite), signing keys are re-read every minute instead.
    pub async fn follow_store_events(self: Arc<Self>) {
        use futures::StreamExt as _;
        let mut backoff = std::time::Duration::from_millis(250);
        loop {
            match self.store.subscribe().await {
                Ok(Some(mut events)) => {
                    backoff = std::time::Duration::from_millis(250);
                    while let Some(event) = events.next().await {
                        self.apply_event(event).await;
                    }
                    tracing::warn!("store event feed ended; reopening");
                }
                Ok(None) => loop {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    self.reload_keys().await;
                },
                Err(e) => {
                    tracing::error!(error = %e, "subscribing to store events failed; retrying")
                }
            }
            self.cache.clear();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// Re-reads the signing keys. When one was retired, the next authentication forgets the
    /// tokens verified so far (see [`Auth::authenticate_claims`]).
    pub async fn reload_keys(&self) {
        if let Err(e) = self.keys.reload().await {
            tracing::error!(error = %e, "reloading signing keys failed");
        }
    }

    /// Retires signing keys superseded for longer than any token they signed can live (run by
    /// maintenance), recording each in the audit log.
    ///
    /// # Errors
    /// On store failure.
    pub async fn retire_superseded_keys(&self) -> Result<Vec<String>, Error> {
        let retired = self.keys.retire_superseded(self.now()).await?;
        for kid in &retired {
            tracing::info!(%kid, "superseded signing key retired");
        }
        Ok(retired)
    }

    /// Takes a census of the stored password hashes and sets the hasher's verification floor from
    /// the older parameters still in use (see [`PasswordHasher::calibrate`]). Run at start-up and
    /// by maintenance.
    ///
    /// # Errors
    /// On store failure.
    pub async fn calibrate_password_hashing(
        &self,
    ) -> Result<crate::credentials::HashStatus, Error> {
        let status =
            crate::credentials::hash_status(self.store.as_ref(), self.hasher.scheme()).await?;
        let stale: Vec<_> = status.stale_schemes.iter().map(|(s, _)| *s).collect();
        let before = self.hasher.floor();
        let floor = self.hasher.calibrate(&stale).await?;
        if floor != before {
            if floor.is_zero() {
                tracing::info!(
                    "every password hash uses the configured parameters: no verification padding"
                );
            } else {
                tracing::warn!(
                    stale_accounts = status.stale,
                    floor_ms = floor.as_millis(),
                    "accounts with older password-hash parameters remain: every verification is padded to the slowest (see `porteiro user rehash-status`)"
                );
            }
        }
        Ok(status)
    }

    /// Drops the cached profile of an account this instance just changed (also for changes
    /// made by another service, such as an address confirmation).
    pub async fn profile_changed(&self, user_id: Uuid) {
        self.profiles.invalidate(&user_id).await;
    }

    pub(crate) async fn sessions_revoked(&self, ids: &[Uuid]) {
        self.cache.revoked(ids).await;
    }
}
