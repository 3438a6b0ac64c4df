//! The settings the domain needs. The server builds this from the environment.

use chrono::Duration;

use crate::domain::EmailPolicy;

/// Domain settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `iss` of access tokens (the public base URL).
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access-token lifetime (≤ 5 minutes).
    pub access_ttl: Duration,
    /// Refresh-token / session lifetime (≥ access lifetime + 15 minutes); each refresh slides
    /// the session's expiry this far, up to [`AuthConfig::session_max_lifetime`].
    pub refresh_ttl: Duration,
    /// Absolute session lifetime from sign-in (`SESSION_MAX_LIFETIME`): no refresh extends a
    /// session past it.
    pub session_max_lifetime: Duration,
    /// Password-reset token lifetime.
    pub reset_ttl: Duration,
    /// Most recovery mails per address within [`AuthConfig::recovery_window`]; further requests
    /// are answered the same way but send nothing.
    pub recovery_mail_limit: u32,
    /// The sliding window of [`AuthConfig::recovery_mail_limit`].
    pub recovery_window: Duration,
    /// Consecutive failures that lock an account.
    pub lockout_attempts: i32,
    /// How long a lock lasts.
    pub lockout_duration: Duration,
    /// Base URL for links in mail (`EMAIL_BASE_URL`), without a trailing slash.
    pub email_base_url: String,
    /// Product name shown in mail.
    pub product_name: String,
    /// What new email addresses may contain (`EMAIL_ALLOW_UNICODE`).
    pub email_policy: EmailPolicy,
    /// Refuse sign-in to accounts whose address is unconfirmed (`REQUIRE_VERIFIED_EMAIL`).
    pub require_verified_email: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            audience: "porteiro".to_owned(),
            access_ttl: Duration::minutes(5),
            refresh_ttl: Duration::days(7),
            session_max_lifetime: Duration::days(30),
            reset_ttl: Duration::minutes(30),
            recovery_mail_limit: 3,
            recovery_window: Duration::minutes(15),
            lockout_attempts: 5,
            lockout_duration: Duration::minutes(5),
            email_base_url: "http://127.0.0.1:8080".to_owned(),
            product_name: "Porteiro".to_owned(),
            email_policy: EmailPolicy::default(),
            require_verified_email: false,
        }
    }
}

impl AuthConfig {
    /// How long a new session lives before its first refresh: the refresh lifetime, capped by the
    /// absolute session lifetime.
    #[must_use]
    pub fn initial_session_lifetime(&self) -> Duration {
        self.refresh_ttl.min(self.session_max_lifetime)
    }
}
