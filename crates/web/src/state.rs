//! Shared state of every handler.

use std::sync::Arc;
use std::time::Duration;

use porteiro_core::Auth;
use porteiro_core::flows::email_confirmation::EmailConfirmation;
use porteiro_core::flows::maintenance::Maintenance;
use porteiro_core::flows::messages::Messages;
use porteiro_core::flows::mfa::TwoFactor;
use porteiro_core::flows::rbac::Rbac;
use porteiro_core::flows::recovery_emails::RecoveryEmails;
use porteiro_core::flows::security_questions::SecurityQuestions;
use porteiro_core::flows::webhooks::Webhooks;
use secrecy::SecretString;

use crate::guard::{RateLimitSettings, TrustedProxies};

/// Which browser origins may call the API (`CORS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No cross-origin access (no CORS headers at all).
    #[default]
    None,
    /// `*`: any origin, but never with credentials (cookies).
    Any,
    /// These exact origins (`scheme://host[:port]`), with credentials.
    List(Vec<String>),
}

/// Web-layer settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Requests taking longer are answered `408`.
    pub request_timeout: Duration,
    /// Client credentials (id, secret) allowed to call `/api/auth/introspect` with HTTP Basic.
    pub introspection_client: Option<(String, SecretString)>,
    /// Served at `/api/health/version`.
    pub version: &'static str,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Per-client token buckets.
    pub rate_limits: RateLimitSettings,
    /// Cross-origin access.
    pub cors: CorsOrigins,
    /// Reached over HTTPS (TLS served here, or an `https` `PUBLIC_URL` behind a proxy): adds
    /// `Strict-Transport-Security`.
    pub tls: bool,
    /// Cookie names and flags.
    pub cookies: crate::cookies::CookiePolicy,
    /// Memory that request bodies read ahead of the handlers may hold.
    pub body_budget: Arc<crate::body_budget::BodyBudget>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Run before each `/metrics` scrape renders (extra scrape-time gauges).
    pub scrape_hooks: crate::metrics::ScrapeHooks,
    /// The language of API messages for requests that name none (`DEFAULT_LANGUAGE`).
    pub default_language: porteiro_core::mail::Locale,
}

/// Who may read `/metrics` (see [`crate::routes::metrics`]).
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// `METRICS_TOKEN`: the bearer token every scrape must present.
    pub token: Option<SecretString>,
    /// `METRICS_ADDR` is set: `/metrics` is served on that listener only.
    pub separate_listener: bool,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            introspection_client: None,
            version: env!("CARGO_PKG_VERSION"),
            trusted_proxies: TrustedProxies::default(),
            rate_limits: RateLimitSettings::default(),
            cors: CorsOrigins::None,
            tls: false,
            cookies: crate::cookies::CookiePolicy { secure: true },
            body_budget: Arc::default(),
            metrics: MetricsAccess::default(),
            scrape_hooks: crate::metrics::ScrapeHooks::default(),
            default_language: porteiro_core::mail::Locale::En,
        }
    }
}

/// Application state: the domain services and web settings. Extractors clone it on every
/// request, so it is one shared allocation: a clone is one reference count, however many
/// services it holds (each count is an atomic that both cores would otherwise fight over).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Services {
    /// The authentication service.
    pub auth: Arc<Auth>,
    /// The webhook service (endpoint administration).
    pub webhooks: Arc<Webhooks>,
    /// Address confirmation (links mailed at registration).
    pub email_confirmation: Arc<EmailConfirmation>,
    /// Authenticator apps and backup codes.
    pub two_factor: Arc<TwoFactor>,
    /// Roles and permissions.
    pub rbac: Arc<Rbac>,
    /// Recovery addresses.
    pub recovery_emails: Arc<RecoveryEmails>,
    /// Maintenance jobs (`/api/admin/clean-*`).
    pub maintenance: Arc<Maintenance>,
    /// Security questions and recovery by questions.
    pub security_questions: Arc<SecurityQuestions>,
    /// Private messages between accounts.
    pub messages: Arc<Messages>,
    /// Web settings.
    pub settings: Arc<WebSettings>,
}

impl AppState {
    /// The state of an application made of these services.
    #[must_use]
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
