//! Browser cookies: the session cookie, the CSRF cookie and the device cookie.
//!
//! When Porteiro is reached over HTTPS (or on a loopback address, which browsers treat as
//! secure) the cookies carry the `__Host-` prefix and `Secure`: the browser then refuses them
//! from any other host, path or insecure origin, so a sibling subdomain cannot plant one. Over
//! plain HTTP on another host both would be dropped by browsers, so the prefix and `Secure` are
//! left off there (a deployment behind a TLS-terminating proxy should set an `https` PUBLIC_URL).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// The browser session (HttpOnly, SameSite=Lax).
pub const SESSION: &str = "porteiro-session";
/// The CSRF double-submit token (readable by scripts, SameSite=Strict).
pub const CSRF: &str = "porteiro-csrf";
/// The device that signed in before (HttpOnly, SameSite=Lax, one year).
pub const DEVICE: &str = "porteiro-device";

/// The hosted UI's record of this browser's recent failed sign-ins (signed, HttpOnly).
pub const ATTEMPTS: &str = "porteiro-attempts";
/// The `mfa_token` of a hosted sign-in waiting for its second step (HttpOnly, ≤ 5 minutes).
pub const MFA: &str = "porteiro-mfa";

/// How cookies are named and flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    /// `__Host-` prefix and `Secure`.
    pub secure: bool,
}

impl CookiePolicy {
    /// The full cookie name of `base` under this policy.
    #[must_use]
    pub fn name(self, base: &'static str) -> &'static str {
        match (self.secure, base) {
            (true, SESSION) => "__Host-porteiro-session",
            (true, CSRF) => "__Host-porteiro-csrf",
            (true, DEVICE) => "__Host-porteiro-device",
            (true, ATTEMPTS) => "__Host-porteiro-attempts",
            (true, MFA) => "__Host-porteiro-mfa",
            (_, other) => other,
        }
    }

    /// The value of cookie `base` in the request, if present (only under this policy's name).
    #[must_use]
    pub fn read(self, headers: &HeaderMap, base: &'static str) -> Option<String> {
        let name = self.name(base);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| Cookie::split_parse(v.to_owned()))
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 256)
    }

    /// Appends a `Set-Cookie` for `base`. `max_age` in seconds; `None` is a browser-session
    /// cookie.
    pub fn set(
        self,
        headers: &mut HeaderMap,
        base: &'static str,
        value: &str,
        max_age: Option<i64>,
    ) {
        let mut c = Cookie::build((self.name(base), value.to_owned()))
            .path("/")
            .secure(self.secure)
            .http_only(base != CSRF)
            .same_site(if base == CSRF {
                SameSite::Strict
            } else {
                SameSite::Lax
            });
        if let Some(secs) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(secs));
        }
        if let Ok(v) = HeaderValue::from_str(&c.build().to_string()) {
            headers.append(SET_COOKIE, v);
        }
    }

    /// Appends a `Set-Cookie` that deletes `base`.
    pub fn clear(self, headers: &mut HeaderMap, base: &'static str) {
        self.set(headers, base, "", Some(0));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookies_are_host_prefixed_and_flagged() {
        let policy = CookiePolicy { secure: true };
        let mut headers = HeaderMap::new();
        policy.set(&mut headers, SESSION, "abc", None);
        policy.set(&mut headers, CSRF, "xyz", Some(60));
        let set: Vec<_> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            set[0].starts_with("__Host-porteiro-session=abc"),
            "{}",
            set[0]
        );
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(set[0].contains(attr), "{} lacks {attr}", set[0]);
        }
        assert!(!set[0].contains("Domain"));
        assert!(set[1].contains("SameSite=Strict") && !set[1].contains("HttpOnly"));
        assert!(set[1].contains("Max-Age=60"));
    }

    #[test]
    fn only_the_policy_name_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("porteiro-session=planted; __Host-porteiro-csrf=t1"),
        );
        let secure = CookiePolicy { secure: true };
        assert_eq!(secure.read(&headers, SESSION), None);
        assert_eq!(secure.read(&headers, CSRF).as_deref(), Some("t1"));
        let plain = CookiePolicy { secure: false };
        assert_eq!(plain.read(&headers, SESSION).as_deref(), Some("planted"));
    }
}
