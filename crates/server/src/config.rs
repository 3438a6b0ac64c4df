//! Configuration from the environment (and `.env`), with the variable names of seed 004.
//!
//! Parsing is explicit rather than derived so that every invalid value stops start-up with one
//! line naming the variable: `configuration error: SERVER_PORT: "http" is not a port number`.
//! Secrets are `SecretString` and never printed; `porteiro config check` shows the rest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chrono::Duration;
use porteiro_core::credentials::HashScheme;
use porteiro_core::flows::webhooks::WebhookSettings;
use porteiro_web::CorsOrigins;
use porteiro_web::guard::{Quota, RateLimitSettings, TrustedProxies};
use secrecy::SecretString;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// How outgoing mail is secured (`EMAIL_SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (local relays and tests only).
    None,
    /// STARTTLS upgrade (port 587).
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
}

/// SMTP settings; absent means "write `.eml` files to the outbox directory".
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// Optional credentials.
    pub credentials: Option<(String, SecretString)>,
}

/// Mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Whether mail is sent at all (`EMAIL_ENABLED`).
    pub enabled: bool,
    /// SMTP relay, or `None` for the outbox directory.
    pub smtp: Option<SmtpConfig>,
    /// Directory for `.eml` files when SMTP is not configured.
    pub outbox_dir: PathBuf,
    /// Sender address.
    pub from: String,
    /// Sender display name.
    pub from_name: String,
    /// Base of links in mail.
    pub base_url: String,
    /// How often the worker looks for due mail when not woken.
    pub poll_interval: StdDuration,
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub host: IpAddr,
    /// Listen port (0 picks a free one).
    pub port: u16,
    /// `sqlite://…`, a file path, or `postgres://…`.
    pub database_url: String,
    /// PostgreSQL pool size.
    pub database_max_connections: u32,
    /// Directory for the SQLite file, master key and mail outbox.
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes; when absent, `DATA_DIR/master.key` is used (created on first run).
    pub master_key: Option<SecretString>,
    /// Public base URL (token issuer).
    pub public_url: String,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Refresh lifetime.
    pub refresh_ttl: Duration,
    /// Absolute session lifetime (`SESSION_MAX_LIFETIME`): refreshes never extend past it.
    pub session_max_lifetime: Duration,
    /// Grace window for a just-rotated refresh token (`REFRESH_REUSE_INTERVAL`, 0 = off).
    pub refresh_reuse_interval: Duration,
    /// The language of API messages for requests that name none (`DEFAULT_LANGUAGE`).
    pub default_language: porteiro_core::mail::Locale,
    /// Password hashing.
    pub hash_scheme: HashScheme,
    /// Concurrent hashes.
    pub hash_workers: usize,
    /// Hashes allowed to wait.
    pub hash_queue: usize,
    /// Failures before a lock.
    pub lockout_attempts: i32,
    /// Lock duration.
    pub lockout_duration: Duration,
    /// Mail.
    pub mail: MailConfig,
    /// Accept non-ASCII local parts in new email addresses (`EMAIL_ALLOW_UNICODE`).
    pub email_allow_unicode: bool,
    /// Issuer shown by authenticator apps (`TOTP_ISSUER`).
    pub totp_issuer: String,
    /// When sign-in asks for an emailed code (`EMAIL_VERIFICATION_ENABLED`).
    pub email_code: porteiro_core::config::EmailCodeRule,
    /// Accounts with an authenticator app may use an emailed code instead (`MFA_EMAIL_FALLBACK`).
    pub mfa_email_fallback: bool,
    /// First administrator's email.
    pub admin_email: String,
    /// First administrator's username.
    pub admin_username: String,
    /// First administrator's password (random, printed once, when absent).
    pub admin_password: Option<SecretString>,
    /// First administrator's display name.
    pub admin_name: Option<String>,
    /// `tracing` filter directive.
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
    /// Request timeout.
    pub request_timeout: StdDuration,
    /// HTTP Basic credentials for `/api/auth/introspect`.
    pub introspection_client: Option<(String, SecretString)>,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Token buckets (`RATE_LIMIT_*`).
    pub rate_limits: RateLimitSettings,
    /// `CORS_ALLOWED_ORIGINS`.
    pub cors: CorsOrigins,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM): serve HTTPS directly.
    pub tls: Option<TlsFiles>,
    /// `GEOIP_DATABASE`: a local MaxMind City database (`.mmdb`) for the approximate place in
    /// new-device alerts. Unset: alerts name no place (never a network look-up).
    pub geoip_database: Option<PathBuf>,
    /// `ALLOW_INSECURE_COOKIES`: serve a plain-HTTP, non-loopback `PUBLIC_URL` anyway.
    pub allow_insecure_cookies: bool,
    /// Connection deadlines and caps (`HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`, `MAX_CONNECTIONS`,
    /// `MAX_CONNECTIONS_PER_IP`).
    pub connections: ConnectionLimits,
    /// `METRICS_TOKEN`: the bearer token `/metrics` requires.
    pub metrics_token: Option<SecretString>,
    /// `METRICS_ADDR`: serve `/metrics` on this address (plain HTTP) instead of the main one.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Webhook delivery (`WEBHOOK_*`).
    pub webhooks: WebhookSettings,
    /// `REQUIRE_VERIFIED_EMAIL`: refuse sign-in to accounts whose address is unconfirmed.
    pub require_verified_email: bool,
    /// `MAINTENANCE_INTERVAL`: how often the maintenance round runs (expired tokens, codes and
    /// sessions; on PostgreSQL on one instance at a time).
    pub maintenance_interval: StdDuration,
    /// Private messages (`MESSAGES_PER_HOUR`: how many one account may send per hour, 1 to
    /// 1,000,000, default 60).
    pub messages: porteiro_core::flows::messages::MessageSettings,
    /// Backup keys and the backups `serve` takes (`BACKUP_*`).
    pub backup: BackupSettings,
}

/// Connection deadlines and caps as configured. The caps in force also depend on the descriptor
/// limit: see [`crate::serve::Caps::effective`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a new connection may take to deliver its first request head (TLS handshake
    /// included), and an HTTP/1 keep-alive connection its next one.
    pub header_read_timeout: StdDuration,
    /// A connection on which no byte moves in either direction for this long is closed.
    pub idle_timeout: StdDuration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (an IPv6 /64), except from
    /// `TRUSTED_PROXIES`.
    pub max_connections_per_ip: usize,
}

/// Certificate chain and private key for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

struct Env<'a>(&'a HashMap<String, String>);

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

impl Env<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn string(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_owned()
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| err(var, format!("{v:?} is not {what}"))),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(err(var, format!("{v:?} is not true or false"))),
        }
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| {
                err(
                    var,
                    format!("{v:?} is not a duration (e.g. 300, 90s, 5m, 2h, 7d, 250ms)"),
                )
            }),
        }
    }

    fn secret(&self, var: &'static str) -> Option<SecretString> {
        self.get(var).map(|v| SecretString::from(v.to_owned()))
    }
}

/// Parses `300`, `300s`, `5m`, `2h`, `7d`, and `250ms`.
fn parse_duration(v: &str) -> Option<Duration> {
    let (number, unit) = v
        .find(|c: char| !c.is_ascii_digit())
        .map_or((v, ""), |i| v.split_at(i));
    let n: i64 = number.parse().ok()?;
    // The checked constructors turn absurd values into a config error instead of a panic.
    match unit.trim() {
        "" | "s" => Duration::try_seconds(n),
        "ms" => Duration::try_milliseconds(n),
        "m" | "min" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
}

/// Whether browsers treat `url` as a secure origin: HTTPS, or a loopback host.
fn is_secure_origin(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            || match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    })
}

fn is_http_url(v: &str) -> bool {
    url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

impl Config {
    /// Reads the process environment (after loading `.env`, if present).
    ///
    /// # Errors
    /// The first invalid variable.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_env(&std::env::vars().collect())
    }

    /// Parses a variable map.
    ///
    /// # Errors
    /// The first invalid variable.
    #[allow(clippy::too_many_lines)]
    pub fn from_env(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let host: IpAddr =
            env.parse("SERVER_HOST", IpAddr::from([127, 0, 0, 1]), "an IP address")?;
        let port: u16 = env.parse("SERVER_PORT", 8080, "a port number")?;
        let data_dir = PathBuf::from(env.string("DATA_DIR", "./data"));
        let default_db = data_dir.join("porteiro.db").to_string_lossy().into_owned();
        let database_url = env.string("DATABASE_URL", &default_db);
        if database_url.starts_with("mysql:")
            || (database_url.contains("://")
                && !database_url.starts_with("sqlite:")
                && !database_url.starts_with("postgres"))
        {
            return Err(err(
                "DATABASE_URL",
                "use a SQLite path, sqlite://… or postgres://…",
            ));
        }
        let database_max_connections = env.parse("DATABASE_MAX_CONNECTIONS", 16, "a number")?;
        let public_url = env.string(
            "PUBLIC_URL",
            &format!("http://{}", std::net::SocketAddr::new(host, port)),
        );
        if !is_http_url(&public_url) {
            return Err(err("PUBLIC_URL", "must be an http(s) URL"));
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        let issuer = env.string("JWT_ISSUER", &public_url);
        let audience = env.string("JWT_AUDIENCE", "porteiro");

        let access_ttl = env.duration("JWT_EXPIRATION", Duration::minutes(5))?;
        if access_ttl < Duration::seconds(10) || access_ttl > Duration::minutes(5) {
            return Err(err(
                "JWT_EXPIRATION",
                "access tokens must live between 10 seconds and 5 minutes",
            ));
        }
        let days: i64 = env.parse("JWT_REFRESH_EXPIRATION_DAYS", 7, "a number of days")?;
        let days = Duration::try_days(days)
            .filter(|d| *d >= Duration::zero())
            .ok_or_else(|| err("JWT_REFRESH_EXPIRATION_DAYS", "is out of range"))?;
        let refresh_ttl = env.duration("JWT_REFRESH_EXPIRATION", days)?;
        if refresh_ttl < access_ttl + Duration::minutes(15) {
            let var = if env.get("JWT_REFRESH_EXPIRATION").is_some() {
                "JWT_REFRESH_EXPIRATION"
            } else {
                "JWT_REFRESH_EXPIRATION_DAYS"
            };
            return Err(err(
                var,
                "refresh tokens must live at least 15 minutes longer than access tokens",
            ));
        }
        if refresh_ttl > Duration::days(365) {
            return Err(err("JWT_REFRESH_EXPIRATION_DAYS", "at most 365 days"));
        }
        let session_max_lifetime = env.duration("SESSION_MAX_LIFETIME", Duration::days(30))?;
        if session_max_lifetime < access_ttl + Duration::minutes(15)
            || session_max_lifetime > Duration::days(365)
        {
            return Err(err(
                "SESSION_MAX_LIFETIME",
                "must be between the access-token lifetime plus 15 minutes and 365 days",
            ));
        }

        let refresh_reuse_interval =
            env.duration("REFRESH_REUSE_INTERVAL", Duration::seconds(10))?;
        if refresh_reuse_interval > Duration::minutes(1) {
            return Err(err(
                "REFRESH_REUSE_INTERVAL",
                "at most 1 minute (0 turns the grace window off)",
            ));
        }

        let default_language = match env.get("DEFAULT_LANGUAGE").map(str::trim) {
            None | Some("en") => porteiro_core::mail::Locale::En,
            Some("pt-BR" | "pt") => porteiro_core::mail::Locale::PtBr,
            Some(other) => {
                return Err(err(
                    "DEFAULT_LANGUAGE",
                    format!("{other:?} is not a supported language (en or pt-BR)"),
                ));
            }
        };

        let bcrypt = match env
            .get("PASSWORD_HASH")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => !env.bool("USE_ARGON2", true)?,
            Some("argon2id" | "argon2") => false,
            Some("bcrypt") => true,
            Some(v) => {
                return Err(err(
                    "PASSWORD_HASH",
                    format!("{v:?} is not argon2id or bcrypt"),
                ));
            }
        };
        let hash_scheme = if bcrypt {
            HashScheme::Bcrypt {
                cost: env.parse("PASSWORD_SALT_ROUNDS", 12, "a bcrypt cost")?,
            }
        } else {
            HashScheme::Argon2id {
                m_kib: env.parse("ARGON2_MEMORY_KIB", 19_456, "a size in KiB")?,
                t: env.parse("ARGON2_ITERATIONS", 2, "a number")?,
                p: env.parse("ARGON2_PARALLELISM", 1, "a number")?,
            }
        };
        hash_scheme.validate().map_err(|m| {
            err(
                if bcrypt {
                    "PASSWORD_SALT_ROUNDS"
                } else {
                    "ARGON2_MEMORY_KIB"
                },
                m,
            )
        })?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let hash_workers: usize = env.parse("HASH_WORKERS", cores, "a number")?;
        if hash_workers == 0 {
            return Err(err("HASH_WORKERS", "must be at least 1"));
        }
        let hash_queue = env.parse("HASH_QUEUE", hash_workers * 32, "a number")?;

        let lockout_attempts: i32 = env.parse("SECURITY_LOCKOUT_ATTEMPTS", 5, "a number")?;
        if !(1..=100).contains(&lockout_attempts) {
            return Err(err(
                "SECURITY_LOCKOUT_ATTEMPTS",
                "must be between 1 and 100",
            ));
        }
        let lockout_secs: i64 =
            env.parse("SECURITY_LOCKOUT_DURATION", 300, "a number of seconds")?;
        if !(1..=86_400).contains(&lockout_secs) {
            return Err(err(
                "SECURITY_LOCKOUT_DURATION",
                "must be between 1 and 86400 seconds",
            ));
        }

        let mail = Self::mail(&env, &data_dir, &public_url)?;
        let email_allow_unicode = env.bool("EMAIL_ALLOW_UNICODE", false)?;
        let totp_issuer = env.string("TOTP_ISSUER", "Porteiro");
        if totp_issuer.is_empty()
            || totp_issuer.chars().count() > 64
            || totp_issuer.contains(':')
            || totp_issuer.chars().any(char::is_control)
        {
            return Err(err(
                "TOTP_ISSUER",
                "must be 1-64 characters, without ':' or control characters",
            ));
        }
        let email_code = match env.get("EMAIL_VERIFICATION_ENABLED") {
            None => porteiro_core::config::EmailCodeRule::Off,
            Some(v) => porteiro_core::config::EmailCodeRule::parse(v).ok_or_else(|| {
                err(
                    "EMAIL_VERIFICATION_ENABLED",
                    format!("{v:?} is not off, new_device or always (or false/true)"),
                )
            })?,
        };
        let mfa_email_fallback = env.bool("MFA_EMAIL_FALLBACK", false)?;
        if !mail.enabled {
            // A code that cannot be mailed would lock every such account out.
            if email_code != porteiro_core::config::EmailCodeRule::Off {
                return Err(err(
                    "EMAIL_VERIFICATION_ENABLED",
                    "needs EMAIL_ENABLED=true: the codes are sent by mail",
                ));
            }
            if mfa_email_fallback {
                return Err(err(
                    "MFA_EMAIL_FALLBACK",
                    "needs EMAIL_ENABLED=true: the codes are sent by mail",
                ));
            }
        }
        let admin_email = env.string("ADMIN_EMAIL", "admin@example.com");
        porteiro_core::domain::Email::parse(
            &admin_email,
            porteiro_core::domain::EmailPolicy {
                allow_unicode: email_allow_unicode,
            },
        )
        .map_err(|e| err("ADMIN_EMAIL", e.to_string()))?;
        let admin_username = env.string("ADMIN_USERNAME", "admin");
        porteiro_core::domain::Username::parse(&admin_username)
            .map_err(|e| err("ADMIN_USERNAME", e.to_string()))?;

        let log_level = env.string("LOG_LEVEL", "info");
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| err("LOG_LEVEL", e.to_string()))?;
        let log_json = match env
            .get("LOG_FORMAT")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("text" | "pretty") => false,
            Some("json") => true,
            Some(v) => return Err(err("LOG_FORMAT", format!("{v:?} is not text or json"))),
        };
        let timeout = env.duration("REQUEST_TIMEOUT", Duration::seconds(30))?;
        let introspection_client = match (
            env.get("INTROSPECTION_CLIENT_ID"),
            env.secret("INTROSPECTION_CLIENT_SECRET"),
        ) {
            (Some(id), Some(secret)) => Some((id.to_owned(), secret)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "INTROSPECTION_CLIENT_SECRET",
                    "set both INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET",
                ));
            }
        };
        let tls = Self::tls(&env)?;
        let geoip_database = match env.get("GEOIP_DATABASE") {
            None => None,
            Some(path) if std::path::Path::new(path).is_file() => Some(PathBuf::from(path)),
            Some(path) => {
                return Err(err(
                    "GEOIP_DATABASE",
                    format!("{path:?} is not a readable file"),
                ));
            }
        };
        let allow_insecure_cookies = env.bool("ALLOW_INSECURE_COOKIES", false)?;
        if tls.is_none() && !is_secure_origin(&public_url) && !allow_insecure_cookies {
            // Without `Secure`, a cookie set over plain HTTP (by anyone on the path, or by a
            // sibling host) is sent back to us: an attacker can toss a pre-sign-in CSRF pair of
            // their own into a victim's browser and sign it in to the attacker's account.
            return Err(err(
                "PUBLIC_URL",
                format!(
                    "{public_url:?} is plain HTTP on a non-loopback host, where cookies cannot be Secure; use an https PUBLIC_URL (TLS here or at a proxy), or set ALLOW_INSECURE_COOKIES=true to accept the risk"
                ),
            ));
        }
        let metrics_token = env.secret("METRICS_TOKEN");
        if let Some(token) = &metrics_token {
            use secrecy::ExposeSecret as _;
            let token = token.expose_secret();
            if token.chars().count() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(err(
                    "METRICS_TOKEN",
                    "must be at least 16 printable ASCII characters without spaces",
                ));
            }
        }
        let metrics_addr = match env.get("METRICS_ADDR") {
            None => None,
            Some(v) => Some(v.parse::<std::net::SocketAddr>().map_err(|_| {
                err(
                    "METRICS_ADDR",
                    format!("{v:?} is not an address and port (e.g. 127.0.0.1:9090, [::1]:9090)"),
                )
            })?),
        };
        if let Some(addr) = metrics_addr
            && addr.ip() == host
            && addr.port() == port
            && port != 0
        {
            return Err(err(
                "METRICS_ADDR",
                "must differ from SERVER_HOST:SERVER_PORT",
            ));
        }
        let maintenance_interval = env.duration("MAINTENANCE_INTERVAL", Duration::minutes(10))?;
        if maintenance_interval < Duration::seconds(1) || maintenance_interval > Duration::days(1) {
            return Err(err(
                "MAINTENANCE_INTERVAL",
                "must be between 1 second and 24 hours",
            ));
        }
        let require_verified_email = env.bool("REQUIRE_VERIFIED_EMAIL", false)?;
        if require_verified_email && !mail.enabled {
            return Err(err(
                "REQUIRE_VERIFIED_EMAIL",
                "needs EMAIL_ENABLED=true: without mail no account could confirm its address",
            ));
        }
        Ok(Self {
            host,
            port,
            database_url,
            database_max_connections,
            data_dir,
            master_key: env.secret("MASTER_KEY"),
            public_url,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            session_max_lifetime,
            refresh_reuse_interval,
            default_language,
            hash_scheme,
            hash_workers,
            hash_queue,
            lockout_attempts,
            lockout_duration: Duration::seconds(lockout_secs),
            mail,
            email_allow_unicode,
            totp_issuer,
            email_code,
            mfa_email_fallback,
            admin_email,
            admin_username,
            admin_password: env.secret("ADMIN_PASSWORD"),
            admin_name: env.get("ADMIN_NAME").map(ToOwned::to_owned),
            log_level,
            log_json,
            request_timeout: timeout.to_std().unwrap_or(StdDuration::from_secs(30)),
            introspection_client,
            trusted_proxies: TrustedProxies::parse(env.get("TRUSTED_PROXIES").unwrap_or(""))
                .map_err(|m| err("TRUSTED_PROXIES", m))?,
            rate_limits: Self::rate_limits(&env)?,
            cors: Self::cors(&env)?,
            tls,
            geoip_database,
            allow_insecure_cookies,
            connections: Self::connections(&env)?,
            metrics_token,
            metrics_addr,
            webhooks: Self::webhooks(&env)?,
            require_verified_email,
            maintenance_interval: maintenance_interval
                .to_std()
                .unwrap_or(StdDuration::from_secs(600)),
            messages: Self::messages(&env)?,
            backup: Self::backup(&env)?,
        })
    }

    fn messages(
        env: &Env<'_>,
    ) -> Result<porteiro_core::flows::messages::MessageSettings, ConfigError> {
        let per_hour: u32 = env.parse(
            "MESSAGES_PER_HOUR",
            porteiro_core::flows::messages::DEFAULT_PER_HOUR,
            "a number",
        )?;
        if !(1..=1_000_000).contains(&per_hour) {
            return Err(err("MESSAGES_PER_HOUR", "must be 1 to 1000000"));
        }
        Ok(porteiro_core::flows::messages::MessageSettings { per_hour })
    }

    fn webhooks(env: &Env<'_>) -> Result<WebhookSettings, ConfigError> {
        let within = |var, default: Duration, min: Duration, max: Duration, range: &str| {
            let value = env.duration(var, default)?;
            if value < min || value > max {
                return Err(err(var, format!("must be between {range}")));
            }
            Ok(value)
        };
        let std = |d: Duration| d.to_std().unwrap_or(StdDuration::from_secs(1));
        let timeout = within(
            "WEBHOOK_TIMEOUT",
            Duration::seconds(10),
            Duration::seconds(1),
            Duration::seconds(120),
            "1 second and 120 seconds",
        )?;
        let retry_base = within(
            "WEBHOOK_RETRY_BASE",
            Duration::seconds(30),
            Duration::seconds(1),
            Duration::hours(1),
            "1 second and 1 hour",
        )?;
        let disable_after = within(
            "WEBHOOK_DISABLE_AFTER",
            Duration::days(5),
            Duration::minutes(1),
            Duration::days(90),
            "1 minute and 90 days",
        )?;
        let poll = within(
            "WEBHOOK_POLL_INTERVAL",
            Duration::seconds(1),
            Duration::milliseconds(10),
            Duration::minutes(1),
            "10ms and 1 minute",
        )?;
        let max_attempts: i32 = env.parse("WEBHOOK_MAX_ATTEMPTS", 8, "a number of attempts")?;
        if !(1..=20).contains(&max_attempts) {
            return Err(err("WEBHOOK_MAX_ATTEMPTS", "must be between 1 and 20"));
        }
        let concurrency: u32 =
            env.parse("WEBHOOK_CONCURRENCY", 4, "a number of concurrent attempts")?;
        if !(1..=64).contains(&concurrency) {
            return Err(err("WEBHOOK_CONCURRENCY", "must be between 1 and 64"));
        }
        Ok(WebhookSettings {
            allow_private: env.bool("WEBHOOK_ALLOW_PRIVATE", false)?,
            timeout: std(timeout),
            retry_base,
            max_attempts,
            disable_after,
            concurrency,
            poll_interval: std(poll),
        })
    }

    fn connections(env: &Env<'_>) -> Result<ConnectionLimits, ConfigError> {
        let seconds = |var, default: i64, max: i64| -> Result<StdDuration, ConfigError> {
            let value = env.duration(var, Duration::seconds(default))?;
            if value < Duration::seconds(1) || value > Duration::seconds(max) {
                return Err(err(
                    var,
                    format!("must be between 1 second and {max} seconds"),
                ));
            }
            Ok(value.to_std().unwrap_or(StdDuration::from_secs(1)))
        };
        let count = |var, default: usize| -> Result<usize, ConfigError> {
            let value: usize = env.parse(var, default, "a number of connections")?;
            if !(1..=1_000_000).contains(&value) {
                return Err(err(var, "must be between 1 and 1000000"));
            }
            Ok(value)
        };
        Ok(ConnectionLimits {
            header_read_timeout: seconds("HEADER_READ_TIMEOUT", 10, 300)?,
            idle_timeout: seconds("IDLE_TIMEOUT", 60, 86_400)?,
            max_connections: count("MAX_CONNECTIONS", 4096)?,
            max_connections_per_ip: count("MAX_CONNECTIONS_PER_IP", 256)?,
        })
    }

    fn rate_limits(env: &Env<'_>) -> Result<RateLimitSettings, ConfigError> {
        let defaults = RateLimitSettings::default();
        let quota = |cap_var, rate_var, default: Quota| -> Result<Quota, ConfigError> {
            let capacity: u32 = env.parse(cap_var, default.capacity, "a number of requests")?;
            if capacity == 0 {
                return Err(err(cap_var, "must be at least 1"));
            }
            let refill_per_sec: f64 = env.parse(
                rate_var,
                default.refill_per_sec,
                "a number of tokens per second",
            )?;
            if !refill_per_sec.is_finite() || refill_per_sec <= 0.0 {
                return Err(err(rate_var, "must be a positive number"));
            }
            Ok(Quota {
                capacity,
                refill_per_sec,
            })
        };
        let general = quota(
            "RATE_LIMIT_CAPACITY",
            "RATE_LIMIT_REFILL_RATE",
            defaults.general,
        )?;
        let strict = quota(
            "RATE_LIMIT_STRICT_CAPACITY",
            "RATE_LIMIT_STRICT_REFILL_RATE",
            Quota::strict_from(general),
        )?;
        let introspection = quota(
            "RATE_LIMIT_INTROSPECTION_CAPACITY",
            "RATE_LIMIT_INTROSPECTION_REFILL_RATE",
            Quota::introspection_from(general),
        )?;
        let max_clients: u64 =
            env.parse("RATE_LIMIT_MAX_CLIENTS", defaults.max_clients, "a number")?;
        if max_clients < 1_000 {
            return Err(err("RATE_LIMIT_MAX_CLIENTS", "must be at least 1000"));
        }
        Ok(RateLimitSettings {
            enabled: env.bool("RATE_LIMIT_ENABLED", true)?,
            general,
            strict,
            introspection,
            max_clients,
        })
    }

    fn cors(env: &Env<'_>) -> Result<CorsOrigins, ConfigError> {
        let Some(list) = env.get("CORS_ALLOWED_ORIGINS") else {
            return Ok(CorsOrigins::None);
        };
        if list == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let origin = url::Url::parse(entry)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none())
                .filter(|u| u.username().is_empty() && u.password().is_none())
                .map(|u| u.origin().ascii_serialization())
                .ok_or_else(|| {
                    err(
                        "CORS_ALLOWED_ORIGINS",
                        format!(
                            "{entry:?} is not an origin (scheme://host[:port]); use * alone for any origin without credentials"
                        ),
                    )
                })?;
            origins.push(origin);
        }
        Ok(if origins.is_empty() {
            CorsOrigins::None
        } else {
            CorsOrigins::List(origins)
        })
    }

    fn tls(env: &Env<'_>) -> Result<Option<TlsFiles>, ConfigError> {
        match (env.get("TLS_CERT_FILE"), env.get("TLS_KEY_FILE")) {
            (None, None) => Ok(None),
            (Some(cert), _) if !std::path::Path::new(cert).is_file() => Err(err(
                "TLS_CERT_FILE",
                format!("{cert:?} is not a readable file"),
            )),
            (Some(cert), Some(key)) => {
                for (var, path) in [("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)] {
                    if !std::path::Path::new(path).is_file() {
                        return Err(err(var, format!("{path:?} is not a readable file")));
                    }
                }
                Ok(Some(TlsFiles {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                }))
            }
            (Some(_), None) => Err(err("TLS_KEY_FILE", "set it together with TLS_CERT_FILE")),
            (None, Some(_)) => Err(err("TLS_CERT_FILE", "set it together with TLS_KEY_FILE")),
        }
    }

    fn mail(
        env: &Env<'_>,
        data_dir: &std::path::Path,
        public_url: &str,
    ) -> Result<MailConfig, ConfigError> {
        let base_url = env
            .string("EMAIL_BASE_URL", public_url)
            .trim_end_matches('/')
            .to_owned();
        if !is_http_url(&base_url) {
            return Err(err("EMAIL_BASE_URL", "must be an http(s) URL"));
        }
        let tls = match env
            .get("EMAIL_SMTP_TLS")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("tls" | "ssl" | "smtps") => SmtpTls::Tls,
            Some("none" | "plain" | "off") => SmtpTls::None,
            Some(v) => {
                return Err(err(
                    "EMAIL_SMTP_TLS",
                    format!("{v:?} is not none, starttls or tls"),
                ));
            }
        };
        let smtp = match env.get("EMAIL_SMTP_SERVER") {
            None => None,
            Some(host) => {
                let default_port = match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                };
                let credentials = match (env.get("EMAIL_USERNAME"), env.secret("EMAIL_PASSWORD")) {
                    (Some(user), Some(pass)) => Some((user.to_owned(), pass)),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(err(
                            "EMAIL_PASSWORD",
                            "is required when EMAIL_USERNAME is set",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(err(
                            "EMAIL_USERNAME",
                            "is required when EMAIL_PASSWORD is set",
                        ));
                    }
                };
                Some(SmtpConfig {
                    host: host.to_owned(),
                    port: env.parse("EMAIL_SMTP_PORT", default_port, "a port number")?,
                    tls,
                    credentials,
                })
            }
        };
        let from = env.string("EMAIL_FROM", "noreply@localhost");
        if !from.contains('@') || from.contains(['\r', '\n', '<', '>']) {
            return Err(err("EMAIL_FROM", "is not an email address"));
        }
        let from_name = env.string("EMAIL_FROM_NAME", "Porteiro");
        if from_name.contains(['\r', '\n']) {
            return Err(err("EMAIL_FROM_NAME", "must be one line"));
        }
        let poll = env.duration("EMAIL_POLL_INTERVAL", Duration::seconds(5))?;
        Ok(MailConfig {
            enabled: env.bool("EMAIL_ENABLED", true)?,
            smtp,
            outbox_dir: PathBuf::from(env.string(
                "EMAIL_OUTBOX_DIR",
                &data_dir.join("outbox").to_string_lossy(),
            )),
            from,
            from_name,
            base_url,
            poll_interval: poll.to_std().unwrap_or(StdDuration::from_secs(5)),
        })
    }

    /// The domain settings derived from this configuration.
    #[must_use]
    pub fn auth_config(&self) -> porteiro_core::config::AuthConfig {
        porteiro_core::config::AuthConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            session_max_lifetime: self.session_max_lifetime,
            refresh_reuse_interval: self.refresh_reuse_interval,
            reset_ttl: Duration::minutes(30),
            recovery_mail_limit: 3,
            recovery_window: Duration::minutes(15),
            lockout_attempts: self.lockout_attempts,
            lockout_duration: self.lockout_duration,
            email_base_url: self.mail.base_url.clone(),
            product_name: self.mail.from_name.clone(),
            email_policy: porteiro_core::domain::EmailPolicy {
                allow_unicode: self.email_allow_unicode,
            },
            require_verified_email: self.require_verified_email,
            mfa: porteiro_core::config::MfaConfig {
                totp_issuer: self.totp_issuer.clone(),
                email_code: self.email_code,
                email_fallback: self.mfa_email_fallback,
                ..porteiro_core::config::MfaConfig::default()
            },
        }
    }

    /// Whether browsers treat `PUBLIC_URL` as a secure origin (HTTPS, or a loopback host), so
    /// cookies can be `Secure` and `__Host-`-prefixed.
    #[must_use]
    pub fn secure_origin(&self) -> bool {
        is_secure_origin(&self.public_url)
    }

    /// Whether the database is PostgreSQL.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }
}

/// Backups (`porteiro backup`, `restore`, and the ones `serve` takes): how they are encrypted and
/// read, and where and how often the server writes them.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// `BACKUP_RECIPIENT`: age X25519 public keys (`age1…`, comma-separated) backups are
    /// encrypted to. Preferred over the passphrase when both are set.
    pub recipients: Vec<String>,
    /// `BACKUP_PASSPHRASE`: encrypts (when no recipient is set) and decrypts backups (age scrypt).
    pub passphrase: Option<SecretString>,
    /// `BACKUP_IDENTITY_FILE`: an age identity file (`age-keygen` output) that decrypts backups.
    pub identity_file: Option<PathBuf>,
    /// `BACKUP_DIR`: where `serve` writes scheduled backups; unset means none.
    pub dir: Option<PathBuf>,
    /// `BACKUP_INTERVAL`: time between scheduled backups (at least 1 second; default 24 hours).
    pub interval: StdDuration,
    /// `BACKUP_KEEP`: how many scheduled backups are kept (older ones are deleted; default 7).
    pub keep: usize,
}

impl Config {
    fn backup(env: &Env<'_>) -> Result<BackupSettings, ConfigError> {
        let recipients: Vec<String> = env
            .get("BACKUP_RECIPIENT")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(ToOwned::to_owned)
            .collect();
        for r in &recipients {
            if r.parse::<age::x25519::Recipient>().is_err() {
                return Err(err(
                    "BACKUP_RECIPIENT",
                    format!("{r:?} is not an age public key (age1…, from age-keygen)"),
                ));
            }
        }
        let passphrase = env.secret("BACKUP_PASSPHRASE");
        let identity_file = env.get("BACKUP_IDENTITY_FILE").map(PathBuf::from);
        let dir = env.get("BACKUP_DIR").map(PathBuf::from);
        if dir.is_some() && recipients.is_empty() && passphrase.is_none() {
            return Err(err(
                "BACKUP_DIR",
                "needs BACKUP_RECIPIENT or BACKUP_PASSPHRASE to encrypt the backups",
            ));
        }
        let interval = env.duration("BACKUP_INTERVAL", Duration::hours(24))?;
        if interval < Duration::seconds(1) || interval > Duration::days(366) {
            return Err(err(
                "BACKUP_INTERVAL",
                "must be between 1 second and 366 days",
            ));
        }
        let keep: usize = env.parse("BACKUP_KEEP", 7, "a number")?;
        if keep == 0 || keep > 10_000 {
            return Err(err("BACKUP_KEEP", "must be between 1 and 10000"));
        }
        Ok(BackupSettings {
            recipients,
            passphrase,
            identity_file,
            dir,
            interval: interval.to_std().unwrap_or(StdDuration::from_secs(86_400)),
            keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_product_spec() {
        let c = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.database_url, "./data/porteiro.db");
        assert_eq!(c.access_ttl, Duration::minutes(5));
        assert_eq!(c.refresh_ttl, Duration::days(7));
        assert_eq!(c.session_max_lifetime, Duration::days(30));
        assert_eq!(c.refresh_reuse_interval, Duration::seconds(10));
        assert_eq!(c.default_language, porteiro_core::mail::Locale::En);
        assert_eq!(
            c.hash_scheme,
            HashScheme::Argon2id {
                m_kib: 19_456,
                t: 2,
                p: 1
            }
        );
        assert!(c.mail.smtp.is_none());
        assert_eq!(c.mail.base_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn require_verified_email_is_off_by_default_and_needs_mail() {
        let off = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert!(!off.require_verified_email && !off.auth_config().require_verified_email);
        let on = Config::from_env(&env(&[("REQUIRE_VERIFIED_EMAIL", "true")])).expect("valid");
        assert!(on.require_verified_email && on.auth_config().require_verified_email);
        for bad in [
            env(&[("REQUIRE_VERIFIED_EMAIL", "maybe")]),
            env(&[
                ("REQUIRE_VERIFIED_EMAIL", "yes"),
                ("EMAIL_ENABLED", "false"),
            ]),
        ] {
            let e = Config::from_env(&bad).expect_err("refused");
            assert_eq!(e.var, "REQUIRE_VERIFIED_EMAIL", "{e}");
        }
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("SERVER_PORT", "http"),
            ("SERVER_HOST", "localhost:80"),
            ("JWT_EXPIRATION", "15m"),
            ("JWT_EXPIRATION", "soon"),
            ("EMAIL_SMTP_TLS", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("PASSWORD_HASH", "md5"),
            ("EMAIL_BASE_URL", "javascript:alert(1)"),
            ("DATABASE_URL", "mysql://x"),
            ("ADMIN_EMAIL", "nobody"),
            ("JWT_REFRESH_EXPIRATION_DAYS", "99999999999"),
            ("SECURITY_LOCKOUT_DURATION", "-5"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
            ("RATE_LIMIT_CAPACITY", "0"),
            ("RATE_LIMIT_REFILL_RATE", "-1"),
            ("RATE_LIMIT_REFILL_RATE", "NaN"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example.com/path"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example.com, *"),
            ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
            ("SESSION_MAX_LIFETIME", "10m"),
            ("SESSION_MAX_LIFETIME", "400d"),
            ("REFRESH_REUSE_INTERVAL", "2m"),
            ("REFRESH_REUSE_INTERVAL", "-1"),
            ("REFRESH_REUSE_INTERVAL", "soon"),
            ("DEFAULT_LANGUAGE", "fr"),
            ("EMAIL_ALLOW_UNICODE", "maybe"),
            ("EMAIL_VERIFICATION_ENABLED", "sometimes"),
            ("MFA_EMAIL_FALLBACK", "perhaps"),
            ("TOTP_ISSUER", "Acme:Corp"),
            ("ALLOW_INSECURE_COOKIES", "sometimes"),
            ("ADMIN_EMAIL", "j\u{00F6}rg@example.com"),
            ("ADMIN_EMAIL", "\u{0430}dmin@example.com"),
            ("PUBLIC_URL", "http://id.example.com"),
            ("HEADER_READ_TIMEOUT", "0"),
            ("HEADER_READ_TIMEOUT", "1h"),
            ("HEADER_READ_TIMEOUT", "soon"),
            ("IDLE_TIMEOUT", "0s"),
            ("IDLE_TIMEOUT", "2d"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("MAX_CONNECTIONS", "-1"),
            ("MAX_CONNECTIONS_PER_IP", "0"),
            ("MAX_CONNECTIONS_PER_IP", "2000000"),
            ("METRICS_TOKEN", "short"),
            ("METRICS_TOKEN", "a token with spaces in it"),
            ("METRICS_ADDR", "9090"),
            ("METRICS_ADDR", "metrics.local:9090"),
            ("METRICS_ADDR", "127.0.0.1:8080"),
            ("WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("WEBHOOK_TIMEOUT", "0"),
            ("WEBHOOK_TIMEOUT", "1h"),
            ("WEBHOOK_RETRY_BASE", "soon"),
            ("WEBHOOK_RETRY_BASE", "2h"),
            ("WEBHOOK_MAX_ATTEMPTS", "0"),
            ("WEBHOOK_MAX_ATTEMPTS", "21"),
            ("WEBHOOK_CONCURRENCY", "0"),
            ("WEBHOOK_CONCURRENCY", "many"),
            ("WEBHOOK_POLL_INTERVAL", "1ms"),
            ("WEBHOOK_POLL_INTERVAL", "2m"),
            ("WEBHOOK_DISABLE_AFTER", "10s"),
            ("WEBHOOK_DISABLE_AFTER", "100d"),
            ("MAINTENANCE_INTERVAL", "soon"),
            ("MAINTENANCE_INTERVAL", "0"),
            ("MAINTENANCE_INTERVAL", "-5m"),
            ("MAINTENANCE_INTERVAL", "2d"),
        ] {
            let e = Config::from_env(&env(&[(var, value)])).expect_err(var);
            assert_eq!(e.var, var, "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn refresh_must_outlive_access_by_15_minutes() {
        let e = Config::from_env(&env(&[
            ("JWT_EXPIRATION", "5m"),
            ("JWT_REFRESH_EXPIRATION", "19m"),
        ]))
        .expect_err("too short");
        assert_eq!(e.var, "JWT_REFRESH_EXPIRATION");
        assert!(
            Config::from_env(&env(&[
                ("JWT_EXPIRATION", "5m"),
                ("JWT_REFRESH_EXPIRATION", "20m")
            ]))
            .is_ok()
        );
        assert_eq!(
            Config::from_env(&env(&[("JWT_REFRESH_EXPIRATION_DAYS", "0")]))
                .expect_err("zero")
                .var,
            "JWT_REFRESH_EXPIRATION_DAYS"
        );
    }

    #[test]
    fn seed_variables_select_bcrypt_and_smtp() {
        let c = Config::from_env(&env(&[
            ("USE_ARGON2", "false"),
            ("PASSWORD_SALT_ROUNDS", "10"),
            ("EMAIL_SMTP_SERVER", "smtp.example.com"),
            ("EMAIL_SMTP_TLS", "tls"),
            ("EMAIL_USERNAME", "u"),
            ("EMAIL_PASSWORD", "p"),
        ]))
        .expect("valid");
        assert_eq!(c.hash_scheme, HashScheme::Bcrypt { cost: 10 });
        let smtp = c.mail.smtp.expect("smtp");
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Tls));
    }

    #[test]
    fn hardening_settings() {
        let c = Config::from_env(&env(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("RATE_LIMIT_CAPACITY", "50"),
            ("RATE_LIMIT_REFILL_RATE", "2.5"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://App.example.com/, http://localhost:3000",
            ),
        ]))
        .expect("valid");
        assert!(!c.trusted_proxies.is_empty());
        assert_eq!(c.rate_limits.general.capacity, 50);
        assert_eq!(c.rate_limits.strict.capacity, 5);
        assert!((c.rate_limits.strict.refill_per_sec - 0.25).abs() < 1e-9);
        assert_eq!(
            c.cors,
            CorsOrigins::List(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:3000".to_owned()
            ])
        );
        let any = Config::from_env(&env(&[("CORS_ALLOWED_ORIGINS", "*")])).expect("valid");
        assert_eq!(any.cors, CorsOrigins::Any);
        let half = Config::from_env(&env(&[("TLS_KEY_FILE", "/etc/hostname")])).expect_err("half");
        assert_eq!(half.var, "TLS_CERT_FILE");
    }

    #[test]
    fn plain_http_off_loopback_needs_allow_insecure_cookies() {
        for url in [
            "http://id.example.com",
            "http://192.168.1.10:8080",
            "http://[2001:db8::1]:8080/",
            "http://localhost.example.com",
        ] {
            let e = Config::from_env(&env(&[("PUBLIC_URL", url)])).expect_err(url);
            assert_eq!(e.var, "PUBLIC_URL", "{e}");
            let line = e.to_string();
            assert!(
                line.contains("ALLOW_INSECURE_COOKIES") && !line.contains('\n'),
                "{line}"
            );
            let c = Config::from_env(&env(&[
                ("PUBLIC_URL", url),
                ("ALLOW_INSECURE_COOKIES", "true"),
            ]))
            .expect(url);
            assert!(c.allow_insecure_cookies && !c.secure_origin());
        }
        // Listening on every interface with no PUBLIC_URL defaults to http://0.0.0.0:8080.
        let any = Config::from_env(&env(&[("SERVER_HOST", "0.0.0.0")])).expect_err("0.0.0.0");
        assert_eq!(any.var, "PUBLIC_URL");
        // The zero-configuration start, loopback names and HTTPS are unaffected.
        assert!(
            !Config::from_env(&HashMap::new())
                .expect("defaults")
                .allow_insecure_cookies
        );
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://localhost:3000",
            "http://app.localhost",
            "http://[::1]:8080",
            "https://id.example.com",
        ] {
            Config::from_env(&env(&[("PUBLIC_URL", url)])).expect(url);
        }
        // So is serving TLS here, whatever PUBLIC_URL says.
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        Config::from_env(&env(&[
            ("PUBLIC_URL", "http://id.example.com"),
            ("TLS_CERT_FILE", file),
            ("TLS_KEY_FILE", file),
        ]))
        .expect("TLS");
    }

    #[test]
    fn email_allow_unicode_reaches_the_domain_settings() {
        let strict = Config::from_env(&HashMap::new()).expect("defaults");
        assert!(!strict.auth_config().email_policy.allow_unicode);
        let open = Config::from_env(&env(&[
            ("EMAIL_ALLOW_UNICODE", "true"),
            ("ADMIN_EMAIL", "j\u{00F6}rg@example.com"),
        ]))
        .expect("valid");
        assert!(open.auth_config().email_policy.allow_unicode);
    }

    #[test]
    fn connection_limits_have_defaults_and_accept_units() {
        let defaults = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert_eq!(
            defaults.connections,
            ConnectionLimits {
                header_read_timeout: StdDuration::from_secs(10),
                idle_timeout: StdDuration::from_secs(60),
                max_connections: 4096,
                max_connections_per_ip: 256,
            }
        );
        let c = Config::from_env(&env(&[
            ("HEADER_READ_TIMEOUT", "2"),
            ("IDLE_TIMEOUT", "5m"),
            ("MAX_CONNECTIONS", " 100 "),
            ("MAX_CONNECTIONS_PER_IP", "10"),
        ]))
        .expect("valid");
        assert_eq!(c.connections.header_read_timeout, StdDuration::from_secs(2));
        assert_eq!(c.connections.idle_timeout, StdDuration::from_secs(300));
        assert_eq!(
            (
                c.connections.max_connections,
                c.connections.max_connections_per_ip
            ),
            (100, 10)
        );
    }

    #[test]
    fn metrics_access_settings() {
        let defaults = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert!(defaults.metrics_token.is_none() && defaults.metrics_addr.is_none());
        let c = Config::from_env(&env(&[
            ("METRICS_TOKEN", "0123456789abcdef-scrape"),
            ("METRICS_ADDR", "[::1]:9090"),
        ]))
        .expect("valid");
        assert!(c.metrics_token.is_some());
        assert_eq!(c.metrics_addr, Some("[::1]:9090".parse().expect("addr")));
    }

    #[test]
    fn webhook_settings_have_defaults_and_accept_units() {
        let defaults = Config::from_env(&HashMap::new()).expect("defaults are valid");
        let w = defaults.webhooks;
        assert!(!w.allow_private);
        assert_eq!(w.timeout, StdDuration::from_secs(10));
        assert_eq!(w.retry_base, Duration::seconds(30));
        assert_eq!((w.max_attempts, w.concurrency), (8, 4));
        assert_eq!(w.disable_after, Duration::days(5));
        assert_eq!(w.poll_interval, StdDuration::from_secs(1));
        let c = Config::from_env(&env(&[
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_POLL_INTERVAL", "50ms"),
            ("WEBHOOK_TIMEOUT", "2s"),
            ("WEBHOOK_RETRY_BASE", "1"),
            ("WEBHOOK_MAX_ATTEMPTS", "3"),
        ]))
        .expect("valid");
        assert!(c.webhooks.allow_private);
        assert_eq!(c.webhooks.poll_interval, StdDuration::from_millis(50));
        assert_eq!(c.webhooks.timeout, StdDuration::from_secs(2));
        assert_eq!(c.webhooks.max_attempts, 3);
    }

    #[test]
    fn maintenance_runs_every_ten_minutes_by_default() {
        let defaults = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert_eq!(defaults.maintenance_interval, StdDuration::from_secs(600));
        let c = Config::from_env(&env(&[("MAINTENANCE_INTERVAL", "30s")])).expect("valid");
        assert_eq!(c.maintenance_interval, StdDuration::from_secs(30));
        let e = Config::from_env(&env(&[("MAINTENANCE_INTERVAL", "0s")])).expect_err("zero");
        assert_eq!(
            e.to_string(),
            "configuration error: MAINTENANCE_INTERVAL: must be between 1 second and 24 hours"
        );
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("300"), Some(Duration::seconds(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::minutes(5)));
        assert_eq!(parse_duration("7d"), Some(Duration::days(7)));
        assert_eq!(parse_duration("250ms"), Some(Duration::milliseconds(250)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("99999999999999d"), None);
    }

    #[test]
    fn backup_settings_are_validated_naming_their_variable() {
        let defaults = Config::from_env(&HashMap::new()).expect("defaults are valid");
        assert!(defaults.backup.dir.is_none() && defaults.backup.recipients.is_empty());
        assert_eq!(defaults.backup.interval, StdDuration::from_secs(86_400));
        assert_eq!(defaults.backup.keep, 7);
        let key = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        let c = Config::from_env(&env(&[
            ("BACKUP_DIR", "/tmp/b"),
            ("BACKUP_RECIPIENT", key),
            ("BACKUP_INTERVAL", "1s"),
            ("BACKUP_KEEP", "2"),
        ]))
        .expect("valid");
        assert_eq!(c.backup.interval, StdDuration::from_secs(1));
        assert_eq!(c.backup.keep, 2);
        assert_eq!(c.backup.recipients, vec![key.to_owned()]);
        for (vars, var) in [
            (vec![("BACKUP_RECIPIENT", "age1nope")], "BACKUP_RECIPIENT"),
            (vec![("BACKUP_DIR", "/tmp/b")], "BACKUP_DIR"),
            (vec![("BACKUP_INTERVAL", "0s")], "BACKUP_INTERVAL"),
            (vec![("BACKUP_INTERVAL", "500ms")], "BACKUP_INTERVAL"),
            (vec![("BACKUP_INTERVAL", "soon")], "BACKUP_INTERVAL"),
            (vec![("BACKUP_KEEP", "0")], "BACKUP_KEEP"),
            (vec![("BACKUP_KEEP", "many")], "BACKUP_KEEP"),
        ] {
            let e = Config::from_env(&env(&vars)).expect_err("refused");
            assert_eq!(e.var, var, "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("configuration error: {var}: "))
            );
        }
    }
}
