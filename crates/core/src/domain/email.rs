//! An email address, trimmed and lower-cased.
//!
//! The check is deliberately simple (seed 003: `^[^\s@]+@[^\s@]+\.[^\s@]+$`) plus RFC 5321 length
//! limits: the only real proof of an address is a mail that arrives.

use std::fmt;

use crate::error::Error;

/// A syntactically plausible, normalised email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Trims, lower-cases and validates `raw`.
    ///
    /// # Errors
    /// `Validation` with code `invalid_email` when the address is not plausible.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let candidate = raw.trim().to_lowercase();
        if is_plausible(&candidate) {
            Ok(Self(candidate))
        } else {
            Err(Error::validation(
                "email",
                "invalid_email",
                "The email address is not valid.",
            ))
        }
    }

    /// The normalised address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the value.
    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_plausible(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return false;
    }
    // The domain needs a dot with something on both sides, and no empty labels.
    let Some((_, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !tld.is_empty()
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && !domain.starts_with('-')
        && !s.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '\\', '"'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ana.Silva+tag@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "ana.silva+tag@example.com");
    }

    #[test]
    fn invalid_addresses_are_rejected() {
        for bad in [
            "",
            "teste@",
            "@example.com",
            "ana",
            "ana@example",
            "ana@@example.com",
            "ana @example.com",
            "ana@example.",
            "ana@.com",
            "ana@exa..mple.com",
            "a<b>@example.com",
            "ana@exam\nple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn overlong_addresses_are_rejected() {
        let local = "a".repeat(65);
        assert!(Email::parse(&format!("{local}@example.com")).is_err());
        let domain = format!("{}.com", "b".repeat(250));
        assert!(Email::parse(&format!("a@{domain}")).is_err());
    }
}
