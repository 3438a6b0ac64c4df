//! Token-bucket rate limiting per client address (seed 004: `RATE_LIMIT_CAPACITY`,
//! `RATE_LIMIT_REFILL_RATE`).
//!
//! Every request takes a token from the client's general bucket; sign-in, refresh, recovery and
//! registration requests also take one from a stricter bucket of their own class. An empty bucket
//! answers `429` with `Retry-After` before any handler runs, so the answer cannot depend on whether
//! an account exists. Token introspection is called by resource servers, often once per request
//! they serve, so it has a generous class of its own instead of the general bucket; what guards it
//! against secret guessing is that each *failed* caller authentication costs a sign-in token, and
//! an empty sign-in bucket refuses the caller before its credentials are checked.
//!
//! Memory is bounded: each class keeps at most `max_clients` buckets (least recently used evicted
//! first), and a bucket idle long enough to have refilled completely is dropped — forgetting it is
//! exactly equivalent to keeping a full one. IPv6 clients are keyed by their /64 network, since one
//! host commonly owns a whole /64.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// A bucket's size and refill speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens in a full bucket (the burst).
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_sec: f64,
}

impl Quota {
    /// The stricter quota derived from the general one: a tenth of the burst and of the rate.
    #[must_use]
    pub fn strict_from(general: Self) -> Self {
        Self {
            capacity: general.capacity.div_ceil(10).max(1),
            refill_per_sec: general.refill_per_sec / 10.0,
        }
    }

    /// The introspection quota derived from the general one: ten times the burst and the rate.
    #[must_use]
    pub fn introspection_from(general: Self) -> Self {
        Self {
            capacity: general.capacity.saturating_mul(10),
            refill_per_sec: general.refill_per_sec * 10.0,
        }
    }

    fn full_after(self) -> Duration {
        let secs = f64::from(self.capacity) / self.refill_per_sec;
        Duration::from_secs_f64(secs.clamp(1.0, 86_400.0))
    }
}

/// Rate-limit configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// Off means no limiting at all (benchmarks behind a load generator on one address).
    pub enabled: bool,
    /// Every request.
    pub general: Quota,
    /// Sign-in, refresh, recovery and registration, each class in its own buckets.
    pub strict: Quota,
    /// Token introspection (instead of the general bucket).
    pub introspection: Quota,
    /// Most buckets kept per class.
    pub max_clients: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let general = Quota {
            capacity: 100,
            refill_per_sec: 10.0,
        };
        Self {
            enabled: true,
            general,
            strict: Quota::strict_from(general),
            introspection: Quota::introspection_from(general),
            max_clients: 50_000,
        }
    }
}

/// The stricter classes of route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Anything that checks a password or client secret.
    SignIn,
    /// Refresh-token rotation.
    Refresh,
    /// Forgot/reset password and address confirmation (their tokens are verification codes).
    Recovery,
    /// Account creation.
    Register,
    /// Token introspection by resource servers: its own generous bucket, not the general one.
    Introspection,
}

impl RateClass {
    /// The class of a `POST` to `path`, if it is one of the stricter routes.
    #[must_use]
    pub fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/auth" | "/api/auth/login" | "/api/auth/session" | "/ui/login"
            | "/change-password" => Self::SignIn,
            // Second steps and changes to the factors are code checks: as strict as sign-in.
            "/api/auth/2fa/verify"
            | "/api/auth/email-verification/verify"
            | "/api/auth/session/verify"
            | "/ui/mfa" => Self::SignIn,
            p if p.starts_with("/api/users/") && p.contains("/2fa/") => Self::SignIn,
            p if p.starts_with("/ui/account/2fa") => Self::SignIn,
            "/api/auth/email-verification/resend" | "/ui/mfa/resend" => Self::Recovery,
            "/api/auth/introspect" => Self::Introspection,
            p if p.starts_with("/api/users/") && p.ends_with("/change-password") => Self::SignIn,
            "/ui/account/password" => Self::SignIn,
            "/refresh" | "/api/auth/refresh" | "/api/auth/token/rotate" => Self::Refresh,
            "/forgot-password"
            | "/reset-password"
            | "/api/auth/forgot-password"
            | "/api/auth/reset-password"
            | "/ui/forgot-password"
            | "/ui/reset-password"
            | "/api/auth/verify-email"
            | "/api/auth/verify-email/resend"
            | "/ui/verify-email"
            | "/ui/verify-email/resend"
            | "/ui/not-me" => Self::Recovery,
            "/api/auth/register" | "/ui/register" => Self::Register,
            // Recovery addresses: adding one or asking for a link mails it; verifying checks a
            // token.
            "/api/auth/recovery-emails"
            | "/api/auth/recovery-emails/verify"
            | "/ui/recovery-email"
            | "/ui/account/recovery-emails" => Self::Recovery,
            p if (p.starts_with("/api/auth/recovery-emails/")
                || p.starts_with("/ui/account/recovery-emails/"))
                && p.ends_with("/resend") =>
            {
                Self::Recovery
            }
            // Security questions: recovery look-ups and answers are recovery; answer checks and
            // changes confirmed with the password are as strict as sign-in.
            "/api/auth/security-questions" | "/api/auth/verify-security-question" => Self::Recovery,
            p if p.starts_with("/api/security-questions/users/")
                && (p.ends_with("/verify") || p.ends_with("/answers")) =>
            {
                Self::SignIn
            }
            p if p.starts_with("/ui/account/security-questions") => Self::SignIn,
            _ => return None,
        })
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    quota: Quota,
    cells: Cache<IpAddr, Arc<Mutex<Bucket>>>,
}

impl Buckets {
    fn new(quota: Quota, max_clients: u64) -> Self {
        Self {
            quota,
            cells: Cache::builder()
                .max_capacity(max_clients)
                .time_to_idle(quota.full_after())
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }

    /// Whether a token is available, without taking it.
    fn peek(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(cell) = self.cells.get(&key) else {
            return Ok(());
        };
        let bucket = cell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = elapsed
            .mul_add(self.quota.refill_per_sec, bucket.tokens)
            .min(f64::from(self.quota.capacity));
        if tokens >= 1.0 {
            Ok(())
        } else {
            let wait = (1.0 - tokens) / self.quota.refill_per_sec;
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.quota.capacity);
        let cell = self.cells.get_with(key, || {
            Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                at: now,
            }))
        });
        let mut bucket = cell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = elapsed
            .mul_add(self.quota.refill_per_sec, bucket.tokens)
            .min(capacity);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.quota.refill_per_sec;
            Err(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }
}

/// The limiter: one set of buckets per class.
pub struct RateLimiter {
    general: Buckets,
    sign_in: Buckets,
    refresh: Buckets,
    recovery: Buckets,
    register: Buckets,
    introspection: Buckets,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("general", &self.general.quota)
            .field("strict", &self.sign_in.quota)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Builds the limiter; `None` when limiting is disabled.
    #[must_use]
    pub fn new(settings: &RateLimitSettings) -> Option<Self> {
        settings.enabled.then(|| {
            let strict = || Buckets::new(settings.strict, settings.max_clients);
            Self {
                general: Buckets::new(settings.general, settings.max_clients),
                sign_in: strict(),
                refresh: strict(),
                recovery: strict(),
                register: strict(),
                introspection: Buckets::new(settings.introspection, settings.max_clients),
            }
        })
    }

    /// Charges one request from `ip`; `Err(wait)` when it must be refused.
    ///
    /// # Errors
    /// The time until the exhausted bucket holds a token again.
    pub fn check(&self, ip: IpAddr, class: Option<RateClass>) -> Result<(), Duration> {
        self.check_at(ip, class, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, class: Option<RateClass>, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(ip);
        if class == Some(RateClass::Introspection) {
            return counted(self.introspection.take(key, now), "introspection");
        }
        counted(self.general.take(key, now), "general")?;
        match class {
            None | Some(RateClass::Introspection) => Ok(()),
            Some(RateClass::SignIn) => counted(self.sign_in.take(key, now), "sign_in"),
            Some(RateClass::Refresh) => counted(self.refresh.take(key, now), "refresh"),
            Some(RateClass::Recovery) => counted(self.recovery.take(key, now), "recovery"),
            Some(RateClass::Register) => counted(self.register.take(key, now), "register"),
        }
    }

    /// Whether `ip` still has a sign-in token, without taking it: callers that check a secret
    /// after the guard (introspection's client authentication) ask before checking it.
    ///
    /// # Errors
    /// The time until the sign-in bucket holds a token again.
    pub fn sign_in_available(&self, ip: IpAddr) -> Result<(), Duration> {
        counted(self.sign_in.peek(bucket_key(ip), Instant::now()), "sign_in")
    }

    /// Charges one failed secret check to `ip`'s sign-in bucket.
    pub fn charge_sign_in_failure(&self, ip: IpAddr) {
        let _ = self.sign_in.take(bucket_key(ip), Instant::now());
    }

    /// Buckets currently held by the general class (tests of the memory bound).
    #[must_use]
    pub fn tracked_clients(&self) -> u64 {
        self.general.cells.run_pending_tasks();
        self.general.cells.entry_count()
    }
}

/// The limiter classes as the `class` label of `porteiro_rate_limited_total`.
pub const CLASS_LABELS: &[&str] = &[
    "general",
    "sign_in",
    "refresh",
    "recovery",
    "register",
    "introspection",
];

/// Counts a refusal by `class` (one of [`CLASS_LABELS`]).
fn counted(result: Result<(), Duration>, class: &'static str) -> Result<(), Duration> {
    if result.is_err() {
        metrics::counter!(crate::metrics::RATE_LIMITED, "class" => class).increment(1);
    }
    result
}

/// IPv4 addresses as they are; IPv6 addresses by their /64 network.
pub(crate) fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limiter(capacity: u32, refill_per_sec: f64, max_clients: u64) -> RateLimiter {
        let general = Quota {
            capacity,
            refill_per_sec,
        };
        RateLimiter::new(&RateLimitSettings {
            enabled: true,
            general,
            strict: Quota::strict_from(general),
            introspection: Quota::introspection_from(general),
            max_clients,
        })
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_beyond_capacity_waits_for_the_refill() {
        let limiter = limiter(3, 2.0, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(limiter.check_at(a, None, t0).is_ok());
        }
        let wait = limiter.check_at(a, None, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Another client is not affected.
        assert!(limiter.check_at(ip("192.0.2.2"), None, t0).is_ok());
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.check_at(a, None, t1).is_ok());
        assert!(limiter.check_at(a, None, t1).is_err());
        // Refill never exceeds the capacity.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(limiter.check_at(a, None, t2).is_ok());
        }
        assert!(limiter.check_at(a, None, t2).is_err());
    }

    #[test]
    fn strict_classes_are_a_tenth_and_separate() {
        let limiter = limiter(100, 10.0, 100);
        let t0 = Instant::now();
        let a = ip("198.51.100.4");
        for _ in 0..10 {
            assert!(limiter.check_at(a, Some(RateClass::SignIn), t0).is_ok());
        }
        assert!(limiter.check_at(a, Some(RateClass::SignIn), t0).is_err());
        // Recovery has its own bucket, and general requests still pass.
        assert!(limiter.check_at(a, Some(RateClass::Recovery), t0).is_ok());
        assert!(limiter.check_at(a, None, t0).is_ok());
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64() {
        let limiter = limiter(2, 1.0, 100);
        let t0 = Instant::now();
        assert!(limiter.check_at(ip("2001:db8::1"), None, t0).is_ok());
        assert!(limiter.check_at(ip("2001:db8::2"), None, t0).is_ok());
        assert!(limiter.check_at(ip("2001:db8::ffff:3"), None, t0).is_err());
        assert!(limiter.check_at(ip("2001:db8:0:1::1"), None, t0).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_max_clients() {
        let limiter = limiter(10, 1.0, 1_000);
        let t0 = Instant::now();
        for n in 0..100_000u32 {
            let _ = limiter.check_at(IpAddr::V4(n.into()), None, t0);
        }
        assert!(
            limiter.tracked_clients() <= 1_000,
            "{}",
            limiter.tracked_clients()
        );
    }

    #[test]
    fn refusals_are_counted_by_class() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let limiter = limiter(10, 1.0, 100);
            let t0 = Instant::now();
            let a = ip("192.0.2.77");
            for _ in 0..3 {
                let _ = limiter.check_at(a, Some(RateClass::SignIn), t0);
            }
            for _ in 0..20 {
                let _ = limiter.check_at(a, None, t0);
            }
        });
        let mut counts: Vec<(String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => {
                    let labels: Vec<_> = key.key().labels().map(|l| l.value().to_owned()).collect();
                    assert_eq!(key.key().name(), crate::metrics::RATE_LIMITED);
                    Some((labels.join(","), n))
                }
                _ => None,
            })
            .collect();
        counts.sort();
        // The strict bucket (1 token) refused two sign-ins; the general one (10) then ten more.
        assert_eq!(
            counts,
            vec![("general".to_owned(), 13), ("sign_in".to_owned(), 2)]
        );
        for (class, _) in &counts {
            assert!(CLASS_LABELS.contains(&class.as_str()));
        }
    }

    #[test]
    fn classes_by_route() {
        assert_eq!(RateClass::of("/auth"), Some(RateClass::SignIn));
        assert_eq!(
            RateClass::of("/api/users/abc/change-password"),
            Some(RateClass::SignIn)
        );
        assert_eq!(RateClass::of("/api/auth/refresh"), Some(RateClass::Refresh));
        assert_eq!(RateClass::of("/forgot-password"), Some(RateClass::Recovery));
        for confirmation in ["/api/auth/verify-email", "/api/auth/verify-email/resend"] {
            assert_eq!(RateClass::of(confirmation), Some(RateClass::Recovery));
        }
        assert_eq!(
            RateClass::of("/api/auth/register"),
            Some(RateClass::Register)
        );
        assert_eq!(RateClass::of("/api/auth/me"), None);
        assert_eq!(
            RateClass::of("/api/auth/introspect"),
            Some(RateClass::Introspection)
        );
    }

    #[test]
    fn introspection_has_its_own_generous_bucket_and_failures_cost_sign_in_tokens() {
        let limiter = limiter(100, 10.0, 100);
        let t0 = Instant::now();
        let a = ip("203.0.113.9");
        // Far beyond the general burst (100) and the strict one (10).
        for _ in 0..1_000 {
            assert!(
                limiter
                    .check_at(a, Some(RateClass::Introspection), t0)
                    .is_ok()
            );
        }
        assert!(
            limiter
                .check_at(a, Some(RateClass::Introspection), t0)
                .is_err()
        );
        // The general bucket was not touched.
        assert!(limiter.check_at(a, None, t0).is_ok());
        // Failed authentications drain the sign-in bucket; peeking never does.
        for _ in 0..100 {
            assert!(limiter.sign_in_available(a).is_ok());
        }
        for _ in 0..10 {
            limiter.charge_sign_in_failure(a);
        }
        assert!(limiter.sign_in_available(a).is_err());
        assert!(limiter.check_at(a, Some(RateClass::SignIn), t0).is_err());
    }
}
