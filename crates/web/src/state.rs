//! Shared state of every handler.

use std::sync::Arc;
use std::time::Duration;

use porteiro_core::Auth;
use secrecy::SecretString;

/// Web-layer settings.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Requests taking longer are answered `408`.
    pub request_timeout: Duration,
    /// Client credentials (id, secret) allowed to call `/api/auth/introspect` with HTTP Basic.
    pub introspection_client: Option<(String, SecretString)>,
    /// Served at `/api/health/version`.
    pub version: &'static str,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            introspection_client: None,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Application state: the domain service and web settings.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The authentication service.
    pub auth: Arc<Auth>,
    /// Web settings.
    pub settings: Arc<WebSettings>,
}
