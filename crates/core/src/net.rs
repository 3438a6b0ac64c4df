//! Outgoing-request policy: which URLs and addresses the server may call (webhooks).
//!
//! An administrator chooses webhook URLs, and the server then POSTs to them from inside the
//! network it runs in. Without a policy that is server-side request forgery: a URL naming
//! `169.254.169.254` reads cloud credentials, one naming `127.0.0.1:5432` or `10.0.0.7` probes
//! internal services. So by default only globally routable unicast addresses are allowed.
//!
//! The rule is applied to every address a host name resolves to, when an endpoint is saved and
//! again at delivery time (the worker's resolver drops refused addresses and connects only to
//! the vetted ones, so a DNS answer that changes between the two — DNS rebinding — gains
//! nothing). IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged
//! by the IPv4 address they carry.
//!
//! `WEBHOOK_ALLOW_PRIVATE=true` (local deployments, tests) additionally allows loopback,
//! private and other non-global unicast ranges. Link-local ranges (where cloud metadata services
//! live), unspecified, multicast, broadcast, reserved and documentation addresses are refused
//! whatever the setting: no receiver can legitimately live there.
//!
//! This module knows no HTTP client; it only decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use url::{Host, Url};

use crate::error::Error;

/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// How long a name resolution at validation time may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Globally routable unicast: always allowed.
    Global,
    /// Loopback, private, shared or otherwise internal: allowed only with `allow_private`.
    Internal,
    /// Never a valid destination (link-local, multicast, reserved, documentation, ...).
    Never,
}

/// Whether the server may connect to `ip`. See the module documentation for the rule.
#[must_use]
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    match classify(ip) {
        Class::Global => true,
        Class::Internal => allow_private,
        Class::Never => false,
    }
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    const NEVER: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", 0.0.0.0 included
        ([169, 254, 0, 0], 16),  // link-local: cloud metadata (169.254.169.254)
        ([192, 0, 2, 0], 24),    // TEST-NET-1 (documentation)
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, 255.255.255.255 (broadcast) included
    ];
    const INTERNAL: &[([u8; 4], u32)] = &[
        ([127, 0, 0, 0], 8),    // loopback
        ([10, 0, 0, 0], 8),     // RFC 1918
        ([172, 16, 0, 0], 12),  // RFC 1918
        ([192, 168, 0, 0], 16), // RFC 1918
        ([100, 64, 0, 0], 10),  // carrier-grade NAT (RFC 6598)
        ([198, 18, 0, 0], 15),  // benchmarking (RFC 2544)
        ([192, 0, 0, 0], 24),   // IETF protocol assignments
    ];
    if NEVER.iter().any(|(net, p)| in_v4(ip, *net, *p)) {
        Class::Never
    } else if INTERNAL.iter().any(|(net, p)| in_v4(ip, *net, *p)) {
        Class::Internal
    } else {
        Class::Global
    }
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    // The low 32 bits, as an IPv4 address (truncation intended).
    #[allow(clippy::cast_possible_truncation)]
    let low = Ipv4Addr::from(bits as u32);
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) // v4-mapped ::ffff:a.b.c.d
        || in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96) // v4-translated ::ffff:0:a.b.c.d
        || in_v6(ip, [0, 0, 0, 0, 0, 0, 0, 0], 96) // v4-compatible ::a.b.c.d (deprecated)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    // NAT64 well-known prefix
    {
        return Some(low);
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        #[allow(clippy::cast_possible_truncation)]
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    if ip.is_unspecified() {
        return Class::Never;
    }
    if ip.is_loopback() {
        return Class::Internal;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    const NEVER: &[([u16; 8], u32)] = &[
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),       // multicast
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),      // link-local
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),      // documentation (RFC 9637)
        ([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),      // Teredo (carries an obfuscated IPv4)
        ([0x2001, 0x0010, 0, 0, 0, 0, 0, 0], 28), // ORCHID
        ([0x2001, 0x0020, 0, 0, 0, 0, 0, 0], 28), // ORCHIDv2
    ];
    const INTERNAL: &[([u16; 8], u32)] = &[
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),  // unique local (ULA)
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // site-local (deprecated)
        ([0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0], 48), // local-use NAT64 (RFC 8215)
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // other IETF protocol assignments
    ];
    if NEVER.iter().any(|(net, p)| in_v6(ip, *net, *p)) {
        Class::Never
    } else if INTERNAL.iter().any(|(net, p)| in_v6(ip, *net, *p)) {
        Class::Internal
    } else if in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        Class::Global
    } else {
        // Outside 2000::/3 nothing is allocated as global unicast.
        Class::Never
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::validation("url", "invalid_url", message)
}

/// Checks a webhook URL's syntax: `http` or `https`, a host, no user name or password, at most
/// [`MAX_URL_LEN`] characters. Returns it parsed (IP hosts in canonical form, so `2130706433`
/// and `0x7f.1` are seen as the `127.0.0.1` they mean).
///
/// # Errors
/// `Validation` (`url`, `invalid_url`) naming the problem.
pub fn parse_webhook_url(raw: &str) -> Result<Url, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("The URL is required."));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(format!(
            "The URL is longer than {MAX_URL_LEN} characters."
        )));
    }
    let url = Url::parse(raw).map_err(|e| invalid(format!("The URL is not valid: {e}.")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("Only http and https URLs are allowed."));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "The URL must not contain a user name or password; authenticate deliveries with the signature.",
        ));
    }
    if url.host().is_none() {
        return Err(invalid("The URL has no host."));
    }
    if url.as_str().len() > MAX_URL_LEN {
        return Err(invalid(format!(
            "The URL is longer than {MAX_URL_LEN} characters."
        )));
    }
    Ok(url)
}

/// The IP address of a URL whose host is an address literal.
#[must_use]
pub fn literal_address(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// Checks that every address `url`'s host stands for is allowed: the literal address, or every
/// address the name resolves to now.
///
/// # Errors
/// `Validation` (`url`, `invalid_url`) when an address is refused or the name does not resolve.
pub async fn vet_destination(url: &Url, allow_private: bool) -> Result<(), Error> {
    let refused = |ip: IpAddr| {
        invalid(format!(
            "The URL's host is or resolves to {ip}, a loopback, private, link-local or reserved address; webhooks may only call public addresses (WEBHOOK_ALLOW_PRIVATE=true allows internal ones)."
        ))
    };
    if let Some(ip) = literal_address(url) {
        return if address_allowed(ip, allow_private) {
            Ok(())
        } else {
            Err(refused(ip))
        };
    }
    let Some(Host::Domain(name)) = url.host() else {
        return Err(invalid("The URL has no host."));
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((name, port));
    let addrs: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        Ok(Err(_)) | Err(_) => {
            return Err(invalid(format!("The host {name} does not resolve.")));
        }
    };
    if addrs.is_empty() {
        return Err(invalid(format!("The host {name} does not resolve.")));
    }
    match addrs
        .into_iter()
        .find(|ip| !address_allowed(*ip, allow_private))
    {
        Some(ip) => Err(refused(ip)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(s: &str, private: bool) -> bool {
        address_allowed(s.parse().expect("an address"), private)
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(allowed(ip, false), "{ip}");
        }
    }

    #[test]
    fn internal_addresses_need_allow_private() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "198.18.0.1",
            "198.19.255.254",
            "192.0.0.8",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:0001::",
            "2002:c0a8:0101::1",
        ] {
            assert!(!allowed(ip, false), "{ip} refused by default");
            assert!(allowed(ip, true), "{ip} allowed with allow_private");
        }
        // Just outside the private ranges.
        for ip in ["172.32.0.1", "100.128.0.1", "198.20.0.1", "11.0.0.1"] {
            assert!(allowed(ip, false), "{ip}");
        }
    }

    #[test]
    fn never_addresses_are_refused_whatever_the_setting() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "::ffff:0.0.0.0",
            "4000::1",
        ] {
            assert!(!allowed(ip, false), "{ip}");
            assert!(!allowed(ip, true), "{ip} even with allow_private");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_host_and_length() {
        assert!(parse_webhook_url("https://hooks.example.com/in?x=1").is_ok());
        assert!(parse_webhook_url("http://example.com:8080/").is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "not a url",
            "http://",
            "data:text/plain,hi",
        ] {
            let e = parse_webhook_url(bad).expect_err(bad);
            assert!(
                matches!(&e, Error::Validation(f) if f.code == "invalid_url" && f.field == "url"),
                "{bad}: {e:?}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(parse_webhook_url(&long).is_err());
    }

    #[test]
    fn numeric_host_forms_are_normalised_before_the_check() {
        for raw in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let url = parse_webhook_url(raw).expect(raw);
            let ip = literal_address(&url).expect("an address literal");
            assert!(!address_allowed(ip, false), "{raw} -> {ip}");
        }
    }

    #[tokio::test]
    async fn destinations_are_vetted_after_resolution() {
        for raw in [
            "http://127.0.0.1/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9/",
        ] {
            let url = parse_webhook_url(raw).expect(raw);
            let e = vet_destination(&url, false).await.expect_err(raw);
            assert!(e.to_string().contains("address"), "{raw}: {e}");
        }
        let local = parse_webhook_url("http://localhost:9/").expect("url");
        vet_destination(&local, true)
            .await
            .expect("allowed with allow_private");
        let metadata = parse_webhook_url("http://169.254.169.254/").expect("url");
        assert!(vet_destination(&metadata, true).await.is_err());
    }
}
