//! The composition root: opens the store, loads keys, builds the service, binds the socket and
//! starts the background workers (mail delivery, webhook delivery, cross-instance cache
//! invalidation).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use porteiro_core::Auth;
use porteiro_core::clock::{Clock, SystemClock};
use porteiro_core::credentials::PasswordHasher;
use porteiro_core::crypto::MasterKey;
use porteiro_core::domain::maintenance::Job;
use porteiro_core::flows::email_confirmation::{ConfirmationSettings, EmailConfirmation};
use porteiro_core::flows::maintenance::{Maintenance, MaintenanceSettings};
use porteiro_core::flows::recovery_emails::{RecoveryEmailSettings, RecoveryEmails};
use porteiro_core::flows::webhooks::Webhooks;
use porteiro_core::mail::MailTransport;
use porteiro_core::store::Store;
use porteiro_store_postgres::PgStore;
use porteiro_store_sqlite::SqliteStore;
use porteiro_web::{AppState, WebSettings};
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use crate::config::{Config, TlsFiles};
use crate::mail::{DirectoryTransport, SmtpMailTransport};
use crate::serve;

/// Opens the configured database, applying migrations.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.is_postgres() {
        let store = PgStore::connect(&config.database_url, config.database_max_connections)
            .await
            .context("cannot open the PostgreSQL database named by DATABASE_URL")?;
        Ok(Arc::new(store))
    } else {
        if !config.data_dir.exists() {
            create_private_dir(&config.data_dir)?;
        }
        let store = SqliteStore::connect(&config.database_url)
            .await
            .with_context(|| format!("cannot open the SQLite database {}", config.database_url))?;
        Ok(Arc::new(store))
    }
}

/// Loads the master key from `MASTER_KEY`, or from `DATA_DIR/master.key`, creating it (mode 0600)
/// on first run.
///
/// # Errors
/// When the key is malformed or the file cannot be read or written.
pub fn load_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(encoded) = &config.master_key {
        let bytes = engine
            .decode(encoded.expose_secret().trim())
            .ok()
            .filter(|b| b.len() == 32);
        let bytes =
            bytes.context("configuration error: MASTER_KEY: must be base64 of exactly 32 bytes")?;
        return MasterKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("MASTER_KEY: {e}"));
    }
    let path = config.data_dir.join("master.key");
    if !path.exists() {
        create_private_dir(&config.data_dir)?;
        write_private(
            &path,
            engine
                .encode(porteiro_core::crypto::random_bytes::<32>())
                .as_bytes(),
        )?;
        tracing::info!(path = %path.display(), "generated a new master key");
    }
    warn_if_loose(&path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = engine
        .decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| format!("{} is not a valid master key", path.display()))?;
    MasterKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("master key: {e}"))
}

/// Creates a directory readable only by its owner (it holds the key, the database and mail).
///
/// # Errors
/// When the directory cannot be created.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(unix)]
fn warn_if_loose(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the master key is readable by other users; run chmod 600 on it");
    }
}

#[cfg(not(unix))]
fn warn_if_loose(_path: &Path) {}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

/// Builds the domain service over an open store.
///
/// # Errors
/// When the keys cannot be loaded.
pub async fn build_auth(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Auth>> {
    let master = Arc::new(load_master_key(config)?);
    build_auth_with_key(config, store, clock, master).await
}

/// Builds the domain service with an already loaded master key.
///
/// # Errors
/// When the keys cannot be loaded.
pub async fn build_auth_with_key(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
) -> anyhow::Result<Arc<Auth>> {
    let scheme = config.hash_scheme;
    let (workers, queue) = (config.hash_workers, config.hash_queue);
    let hasher =
        tokio::task::spawn_blocking(move || PasswordHasher::new(scheme, workers, queue)).await??;
    let mut auth = Auth::new(store, clock, master, hasher, config.auth_config()).await?;
    if let Some(path) = &config.geoip_database {
        let geo = porteiro_core::geo::GeoIp::open(path)
            .map_err(|e| anyhow::anyhow!("configuration error: GEOIP_DATABASE: {e}"))?;
        auth = auth.with_geoip(geo);
    }
    Ok(Arc::new(auth))
}

/// The address-confirmation service beside `auth`: same store and outbox, links to
/// `EMAIL_BASE_URL`.
#[must_use]
pub fn build_email_confirmation(auth: &Auth, clock: Arc<dyn Clock>) -> Arc<EmailConfirmation> {
    Arc::new(EmailConfirmation::new(
        Arc::clone(auth.store()),
        clock,
        auth.outbox().clone(),
        ConfirmationSettings::new(
            auth.config().email_base_url.clone(),
            auth.config().product_name.clone(),
        ),
    ))
}

/// The recovery-address service beside `auth`: same store and outbox, links to
/// `EMAIL_BASE_URL`.
#[must_use]
pub fn build_recovery_emails(auth: &Auth, clock: Arc<dyn Clock>) -> Arc<RecoveryEmails> {
    Arc::new(RecoveryEmails::new(
        Arc::clone(auth.store()),
        clock,
        auth.outbox().clone(),
        RecoveryEmailSettings::new(
            auth.config().email_base_url.clone(),
            auth.config().product_name.clone(),
            auth.config().email_policy,
        ),
    ))
}

/// The maintenance service beside `auth`: same store and clock; what it keeps follows the
/// refresh lifetime and the issuance windows of recovery and confirmation links.
#[must_use]
pub fn build_maintenance(
    auth: &Auth,
    email_confirmation: &EmailConfirmation,
    clock: Arc<dyn Clock>,
) -> Arc<Maintenance> {
    Arc::new(Maintenance::new(
        Arc::clone(auth.store()),
        clock,
        MaintenanceSettings::new(auth.config(), email_confirmation.settings()),
    ))
}

/// Loads the certificate chain and key into a rustls configuration: TLS 1.2 and 1.3 only, the
/// aws-lc-rs provider's default (forward-secret, AEAD-only) cipher suites, HTTP/2 and HTTP/1.1.
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub fn tls_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow::anyhow!("TLS_CERT_FILE: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("configuration error: TLS_CERT_FILE: no certificate in the file");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("configuration error: TLS_KEY_FILE: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("configuration error: TLS_KEY_FILE: does not match TLS_CERT_FILE")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A built, bound, not-yet-running server.
pub struct Application {
    listener: TcpListener,
    auth: Arc<Auth>,
    webhooks: Arc<Webhooks>,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    serving: serve::Settings,
    /// The separate metrics listener (`METRICS_ADDR`) and its router.
    metrics: Option<(TcpListener, axum::Router)>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds everything with the system clock.
    ///
    /// # Errors
    /// On any start-up failure (database, keys, socket, first administrator).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds everything with an injected clock (tests).
    ///
    /// # Errors
    /// On any start-up failure.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        let master = Arc::new(load_master_key(&config)?);
        let auth =
            build_auth_with_key(&config, Arc::clone(&store), clock.clone(), master.clone()).await?;
        let email_confirmation = build_email_confirmation(&auth, clock.clone());
        let maintenance = build_maintenance(&auth, &email_confirmation, clock.clone());
        let recovery_emails = build_recovery_emails(&auth, clock.clone());
        let messages = Arc::new(porteiro_core::flows::messages::Messages::new(
            Arc::clone(auth.store()),
            Arc::clone(auth.envelope()),
            clock.clone(),
            config.messages,
        ));
        let mut webhooks = Webhooks::new(
            store,
            auth.envelope().clone(),
            clock,
            config.webhooks.clone(),
        );
        if config.mail.enabled {
            webhooks = webhooks.with_admin_notices(porteiro_core::flows::webhooks::AdminNotices {
                outbox: auth.outbox().clone(),
                base_url: auth.config().email_base_url.clone(),
                product: auth.config().product_name.clone(),
            });
        }
        let webhooks = Arc::new(webhooks);
        ensure_first_admin(&config, &auth).await?;
        auth.record_startup(startup_facts(&config)).await;

        if config.mail.enabled {
            let transport: Arc<dyn MailTransport> = match &config.mail.smtp {
                Some(smtp) => Arc::new(SmtpMailTransport::new(smtp, &config.mail)?),
                None => Arc::new(DirectoryTransport::new(&config.mail)?),
            };
            tokio::spawn(
                auth.outbox()
                    .clone()
                    .run_worker(transport, config.mail.poll_interval),
            );
        }
        crate::webhooks::spawn(Arc::clone(&webhooks))?;
        tokio::spawn(Arc::clone(&auth).follow_store_events());
        let canonicalizing = Arc::clone(&auth);
        tokio::spawn(async move {
            if let Err(e) = canonicalizing.canonicalize_stored_emails().await {
                tracing::warn!(error = %e, "rewriting stored emails to their canonical form failed");
            }
        });
        tokio::spawn(maintain(
            Arc::clone(&auth),
            Arc::clone(&maintenance),
            config.maintenance_interval,
        ));
        crate::cli::backup::spawn_schedule(&config);
        tokio::spawn(porteiro_web::metrics::upkeep());
        tokio::spawn(keep_keys(
            Arc::clone(auth.envelope()),
            config.maintenance_interval,
        ));

        let tls = config
            .tls
            .as_ref()
            .map(tls_config)
            .transpose()?
            .map(Arc::new);
        if tls.is_none() && !config.secure_origin() {
            // Only reachable with ALLOW_INSECURE_COOKIES=true: configuration refuses it otherwise.
            tracing::warn!(
                public_url = %config.public_url,
                "ALLOW_INSECURE_COOKIES: PUBLIC_URL is plain HTTP on a non-loopback host, so browser cookies cannot be Secure or __Host- prefixed and sign-in is open to login CSRF by cookie tossing; serve HTTPS or set an https PUBLIC_URL behind a TLS proxy"
            );
        }
        warn_about_metrics_exposure(&config);
        let settings = WebSettings {
            request_timeout: config.request_timeout,
            introspection_client: config.introspection_client.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            rate_limits: config.rate_limits.clone(),
            cors: config.cors.clone(),
            tls: tls.is_some() || config.public_url.starts_with("https://"),
            cookies: porteiro_web::cookies::CookiePolicy {
                secure: tls.is_some() || config.secure_origin(),
            },
            metrics: porteiro_web::MetricsAccess {
                token: config.metrics_token.clone(),
                separate_listener: config.metrics_addr.is_some(),
            },
            // Extra scrape-time gauges are added here (`scrape_hooks.add(..)`).
            scrape_hooks: porteiro_web::metrics::ScrapeHooks::default(),
            default_language: config.default_language,
            ..WebSettings::default()
        };
        let state = AppState::new(porteiro_web::state::Services {
            auth: Arc::clone(&auth),
            webhooks: Arc::clone(&webhooks),
            email_confirmation,
            two_factor: Arc::new(porteiro_core::flows::mfa::TwoFactor::new(&auth)),
            rbac: Arc::new(porteiro_core::flows::rbac::Rbac::new(&auth)),
            recovery_emails,
            maintenance,
            security_questions: Arc::new(
                porteiro_core::flows::security_questions::SecurityQuestions::new(Arc::clone(&auth)),
            ),
            messages,
            settings: Arc::new(settings),
        });
        let metrics = match config.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
                Some((listener, porteiro_web::metrics_app(state.clone())))
            }
            None => None,
        };
        let router = porteiro_web::app(state);
        let serving = serving_settings(&config);
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            auth,
            webhooks,
            router,
            tls,
            serving,
            metrics,
        })
    }

    /// The bound address of the separate metrics listener (`METRICS_ADDR`), if any.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The bound address.
    ///
    /// # Panics
    /// Never: the socket is bound.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    /// The domain service (tests use it to reach the store).
    #[must_use]
    pub fn auth(&self) -> Arc<Auth> {
        Arc::clone(&self.auth)
    }

    /// The webhook service (tests use it to reach the delivery queue).
    #[must_use]
    pub fn webhooks(&self) -> Arc<Webhooks> {
        Arc::clone(&self.webhooks)
    }

    /// Serves until `shutdown` resolves (see [`serve::run`]).
    ///
    /// # Errors
    /// On a fatal socket error.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.local_addr();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %format!("{scheme}://{addr}"), "listening");
        let Some((listener, router)) = self.metrics else {
            return serve::run(self.listener, self.router, self.tls, self.serving, shutdown).await;
        };
        // One shutdown signal for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Ok(metrics_addr) = listener.local_addr() {
            tracing::info!(addr = %format!("http://{metrics_addr}/metrics"), "metrics listening");
        }
        // The metrics listener is for a scraper or two: small caps, the same deadlines.
        let metrics_serving = serve::Settings {
            caps: serve::Caps {
                total: 64,
                per_ip: 16,
            },
            ..self.serving.clone()
        };
        let metrics = tokio::spawn(serve::run(
            listener,
            router,
            None,
            metrics_serving,
            until(stopped.clone()),
        ));
        let main = serve::run(
            self.listener,
            self.router,
            self.tls,
            self.serving,
            until(stopped),
        )
        .await;
        match metrics.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener failed"),
            Err(e) => tracing::warn!(error = %e, "the metrics listener task failed"),
            Ok(Ok(())) => {}
        }
        main
    }
}

/// Raises the descriptor limit and derives the connection caps and deadlines from the
/// configuration.
/// Settings that leave `/metrics` open wider than they seem to.
fn warn_about_metrics_exposure(config: &Config) {
    if config.metrics_token.is_some() {
        return;
    }
    match config.metrics_addr {
        Some(addr) if !addr.ip().is_loopback() => tracing::warn!(
            %addr,
            "METRICS_ADDR listens beyond loopback without METRICS_TOKEN: anyone who reaches it reads the metrics"
        ),
        Some(_) => {}
        None => {
            let local_proxy = ["127.0.0.1", "::1"]
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .any(|ip| config.trusted_proxies.trusts(ip));
            if local_proxy {
                tracing::warn!(
                    "a reverse proxy on this host (TRUSTED_PROXIES) and no METRICS_TOKEN: /metrics refuses everything through the proxy, but a proxy that adds no forwarding header would make remote clients look local; set METRICS_TOKEN or METRICS_ADDR"
                );
            }
        }
    }
}

fn serving_settings(config: &Config) -> serve::Settings {
    let limits = config.connections;
    let descriptors = serve::raise_descriptor_limit();
    let caps = serve::Caps::effective(&limits, descriptors, config.database_max_connections);
    tracing::info!(
        max_connections = caps.total,
        max_connections_per_ip = caps.per_ip,
        descriptor_limit = descriptors,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        "connection limits"
    );
    if limits.idle_timeout < config.request_timeout {
        tracing::warn!(
            "IDLE_TIMEOUT is shorter than REQUEST_TIMEOUT: a request whose handler works longer than IDLE_TIMEOUT without the connection moving a byte is cut off"
        );
    }
    serve::Settings {
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        caps,
        trusted_proxies: config.trusted_proxies.clone(),
        shutdown_grace: config.request_timeout,
    }
}

/// At start-up and every `MAINTENANCE_INTERVAL`: a census of the stored password-hash parameters
/// (each instance sets its own verification padding) and the retirement of signing keys that no
/// live token can need; and, from one interval after start-up on, the maintenance round (expired
/// tokens, codes and sessions, stale failure counters and unused known devices; see
/// [`Maintenance::run_scheduled`] — on PostgreSQL one instance at a time, the others skip it).
/// The round waits an interval so that instances restarted together do not all queue for the
/// lock at once, and so that a test's fresh server never cleans behind the test's back.
async fn maintain(auth: Arc<Auth>, maintenance: Arc<Maintenance>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tick.tick().await;
        if let Err(e) = auth.calibrate_password_hashing().await {
            tracing::warn!(error = %e, "maintenance: password-hash census failed");
        }
        if !std::mem::take(&mut first) {
            clean(&maintenance).await;
        }
        if let Err(e) = auth.retire_superseded_keys().await {
            tracing::warn!(error = %e, "maintenance: retiring superseded signing keys failed");
        }
    }
}

/// Data keys re-wrapped, or old-style values moved, per batch.
const KEY_BATCH: u32 = 500;

/// Background key upkeep: every 30 seconds (or `MAINTENANCE_INTERVAL` if shorter), re-wraps
/// the data keys a `keys rotate-kek` left on an older key-encryption key version and retires
/// versions nothing refers to (idle checks are index look-ups); at start-up and every
/// `MAINTENANCE_INTERVAL`, moves values still sealed directly under the master key onto data
/// keys. Safe on several instances at once: every change applies only to what it read.
async fn keep_keys(envelope: Arc<porteiro_core::envelope::Envelope>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every.min(std::time::Duration::from_secs(30)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reseal: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        if last_reseal.is_none_or(|t| t.elapsed() >= every) {
            last_reseal = Some(std::time::Instant::now());
            if let Err(e) = envelope.reseal_legacy_all(KEY_BATCH).await {
                tracing::warn!(error = %e, "key upkeep: moving old-style sealed values failed");
            }
        }
        if let Err(e) = envelope.rewrap_all(KEY_BATCH).await {
            tracing::warn!(error = %e, "key upkeep: re-wrapping data keys failed");
        }
    }
}

/// One scheduled maintenance round, logged.
async fn clean(maintenance: &Maintenance) {
    match maintenance.run_scheduled().await {
        Ok(Some(round)) => {
            let removed = |job| {
                round
                    .jobs
                    .iter()
                    .find(|(j, _)| *j == job)
                    .map_or(0, |(_, n)| *n)
            };
            tracing::info!(
                tokens = removed(Job::Tokens),
                verification_codes = removed(Job::VerificationCodes),
                sessions = removed(Job::Sessions),
                counters_and_devices = round.counters_and_devices,
                "maintenance: expired rows removed"
            );
        }
        Ok(None) => tracing::info!("maintenance: another instance is running the round; skipped"),
        Err(e) => tracing::warn!(error = %e, "maintenance round failed"),
    }
}

/// The security-relevant configuration, for the `server.started` audit event. No secrets.
fn startup_facts(config: &Config) -> serde_json::Value {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backend": if config.is_postgres() { "postgres" } else { "sqlite" },
        "tls": config.tls.is_some(),
        "public_url": config.public_url,
        "allow_insecure_cookies": config.allow_insecure_cookies,
        "email_allow_unicode": config.email_allow_unicode,
        "mfa": {
            "email_code": config.email_code.as_str(),
            "email_fallback": config.mfa_email_fallback,
            "require_verified_email": config.require_verified_email,
        },
        "password_hash": match config.hash_scheme {
            porteiro_core::credentials::HashScheme::Argon2id { m_kib, t, p } =>
                format!("argon2id m={m_kib} t={t} p={p}"),
            porteiro_core::credentials::HashScheme::Bcrypt { cost } => format!("bcrypt cost={cost}"),
        },
        "access_ttl_secs": config.access_ttl.num_seconds(),
        "refresh_ttl_secs": config.refresh_ttl.num_seconds(),
        "session_max_lifetime_secs": config.session_max_lifetime.num_seconds(),
        "lockout": {"attempts": config.lockout_attempts, "duration_secs": config.lockout_duration.num_seconds()},
        "rate_limits": {
            "enabled": config.rate_limits.enabled,
            "capacity": config.rate_limits.general.capacity,
            "refill_per_sec": config.rate_limits.general.refill_per_sec,
            "strict_capacity": config.rate_limits.strict.capacity,
            "strict_refill_per_sec": config.rate_limits.strict.refill_per_sec,
        },
        "trusted_proxies": !config.trusted_proxies.is_empty(),
        "cors": match &config.cors {
            porteiro_web::CorsOrigins::None => serde_json::json!("none"),
            porteiro_web::CorsOrigins::Any => serde_json::json!("*"),
            porteiro_web::CorsOrigins::List(list) => serde_json::json!(list),
        },
        "mail": if !config.mail.enabled { "disabled" } else if config.mail.smtp.is_some() { "smtp" } else { "files" },
        "introspection_client": config.introspection_client.is_some(),
        "metrics": match (config.metrics_addr.is_some(), config.metrics_token.is_some()) {
            (true, true) => "separate listener, token",
            (true, false) => "separate listener",
            (false, true) => "token",
            (false, false) => "loopback only",
        },
        "webhook_allow_private": config.webhooks.allow_private,
        "require_verified_email": config.require_verified_email,
    })
}

async fn ensure_first_admin(config: &Config, auth: &Auth) -> anyhow::Result<()> {
    let created = auth
        .ensure_first_admin(
            &config.admin_email,
            &config.admin_username,
            config.admin_password.clone(),
            config.admin_name.as_deref(),
        )
        .await
        .map_err(|e| match e {
            porteiro_core::Error::WeakPassword(issues) => anyhow::anyhow!(
                "configuration error: ADMIN_PASSWORD: {}",
                issues
                    .iter()
                    .map(|i| i.message())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            other => anyhow::anyhow!("cannot create the first administrator: {other}"),
        })?;
    if let Some((user, generated)) = created {
        tracing::info!(user_id = %user.id, username = %user.username, "first administrator created");
        if let Some(password) = generated {
            // Printed once, to the terminal only (not the log), so the operator can sign in.
            println!(
                "\nFirst administrator created:\n  username: {}\n  email:    {}\n  password: {password}\nChange it after signing in; it will not be shown again.\n",
                user.username, user.email
            );
        }
    }
    Ok(())
}
