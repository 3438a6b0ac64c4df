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
    /// Grace window for a refresh token that was just spent (`REFRESH_REUSE_INTERVAL`): within
    /// it, presenting the token again returns the same successor instead of revoking the session,
    /// so two requests of one app racing on one token do not sign it out. Zero turns it off.
    pub refresh_reuse_interval: Duration,
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
    /// The second step of sign-in.
    pub mfa: MfaConfig,
}

/// When a sign-in asks for a code mailed to the account's address (`EMAIL_VERIFICATION_ENABLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmailCodeRule {
    /// Never (the default).
    #[default]
    Off,
    /// From a device the account has not signed in from (no known device cookie from this
    /// address).
    NewDevice,
    /// At every sign-in.
    Always,
}

impl EmailCodeRule {
    /// The setting's canonical value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::NewDevice => "new_device",
            Self::Always => "always",
        }
    }

    /// Parses the setting: `off`, `new_device`, `always`; the seed's `true`/`false` mean
    /// `always`/`off`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "0" | "no" => Some(Self::Off),
            "new_device" | "new-device" => Some(Self::NewDevice),
            "always" | "true" | "1" | "yes" => Some(Self::Always),
            _ => None,
        }
    }
}

/// Settings of the second step of sign-in.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// Issuer shown by authenticator apps (`TOTP_ISSUER`).
    pub totp_issuer: String,
    /// When accounts without an authenticator app get an emailed code.
    pub email_code: EmailCodeRule,
    /// Whether accounts with an authenticator app may use an emailed code instead
    /// (`MFA_EMAIL_FALLBACK`, off: whoever holds the mailbox must not bypass the app).
    pub email_fallback: bool,
    /// Lifetime of an `mfa_token` (at most five minutes).
    pub challenge_ttl: Duration,
    /// Wrong codes that end a second step.
    pub max_attempts: i32,
    /// Lifetime of an emailed code.
    pub email_code_ttl: Duration,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            totp_issuer: "Porteiro".to_owned(),
            email_code: EmailCodeRule::Off,
            email_fallback: false,
            challenge_ttl: Duration::minutes(5),
            max_attempts: 5,
            email_code_ttl: Duration::minutes(10),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            audience: "porteiro".to_owned(),
            access_ttl: Duration::minutes(5),
            refresh_ttl: Duration::days(7),
            session_max_lifetime: Duration::days(30),
            refresh_reuse_interval: Duration::seconds(10),
            reset_ttl: Duration::minutes(30),
            recovery_mail_limit: 3,
            recovery_window: Duration::minutes(15),
            lockout_attempts: 5,
            lockout_duration: Duration::minutes(5),
            email_base_url: "http://127.0.0.1:8080".to_owned(),
            product_name: "Porteiro".to_owned(),
            email_policy: EmailPolicy::default(),
            require_verified_email: false,
            mfa: MfaConfig::default(),
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
