//! Shared state of every handler.

use std::sync::Arc;
use std::time::Duration;

use porteiro_core::Auth;
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
        }
    }
}

/// Application state: the domain services and web settings.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The authentication service.
    pub auth: Arc<Auth>,
    /// The webhook service (endpoint administration).
    pub webhooks: Arc<Webhooks>,
    /// Web settings.
    pub settings: Arc<WebSettings>,
}
