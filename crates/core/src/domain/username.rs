//! A username: 3–32 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
//!
//! Usernames never contain `@`, so a sign-in identifier is an email exactly when it has one.
//! Uniqueness is case-insensitive: the store keys on [`Username::key`].

use std::fmt;

use crate::error::Error;

/// A validated username, as the user typed it (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Trims and validates `raw`.
    ///
    /// # Errors
    /// `Validation` with code `invalid_username`.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim();
        let len = s.chars().count();
        let charset_ok = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        let starts_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if (3..=32).contains(&len) && charset_ok && starts_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::validation(
                "username",
                "invalid_username",
                "Usernames have 3 to 32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit.",
            ))
        }
    }

    /// The username as displayed.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for uniqueness and look-up.
    #[must_use]
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_keyed_case_insensitively() {
        let u = Username::parse("  Ana_Silva ").expect("valid");
        assert_eq!(u.as_str(), "Ana_Silva");
        assert_eq!(u.key(), "ana_silva");
    }

    #[test]
    fn bad_usernames_are_rejected() {
        for bad in [
            "ab",
            "a@b.com",
            "-ana",
            "ana silva",
            "ãna",
            &"x".repeat(33),
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn confusable_and_non_ascii_usernames_are_refused() {
        // Usernames are ASCII only, so no look-alike of an existing one can be registered.
        for bad in [
            "\u{0430}lice",  // Cyrillic а
            "\u{FF41}lice",  // fullwidth ａ
            "al\u{200B}ice", // zero-width space
            "alice\u{202E}", // right-to-left override
            "ali\u{0307}ce", // combining dot above
            "al\u{0131}ce",  // dotless ı
            "\u{212A}ate",   // Kelvin sign (lower-cases to an ASCII k)
            "alice\u{FE0F}", // variation selector
            "\u{0391}lice",  // Greek capital alpha
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
