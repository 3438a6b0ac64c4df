//! Password policy (PRODUCT.md §6) and the strength levels of seed 003.
//!
//! Policy: 8–128 characters, at least one letter and one digit, not in the bundled list of common
//! breached passwords, not equal to the username, the email or the email's local part. When bcrypt
//! is the configured hash, more than 72 bytes is refused instead of being silently truncated.
//! The web UI's live meter uses the same [`strength`] rules.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::Serialize;

/// Minimum length in characters.
pub const MIN_LEN: usize = 8;
/// Maximum length in characters.
pub const MAX_LEN: usize = 128;
/// bcrypt only reads this many bytes; longer input would be truncated silently.
pub const BCRYPT_MAX_BYTES: usize = 72;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// One reason a password is refused. Serialised as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordIssue {
    /// Fewer than 8 characters.
    TooShort,
    /// More than 128 characters.
    TooLong,
    /// More than 72 bytes while bcrypt is the configured hash.
    TooLongForHash,
    /// No letter.
    NoLetter,
    /// No digit.
    NoDigit,
    /// In the list of commonly breached passwords.
    Common,
    /// Equal to the username or email.
    MatchesAccount,
}

impl PasswordIssue {
    /// Stable code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::TooLongForHash => "too_long_for_hash",
            Self::NoLetter => "no_letter",
            Self::NoDigit => "no_digit",
            Self::Common => "common",
            Self::MatchesAccount => "matches_account",
        }
    }

    /// English explanation.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::TooShort => "The password must have at least 8 characters.",
            Self::TooLong => "The password must have at most 128 characters.",
            Self::TooLongForHash => "The password must have at most 72 bytes.",
            Self::NoLetter => "The password must contain a letter.",
            Self::NoDigit => "The password must contain a digit.",
            Self::Common => "This password is too common.",
            Self::MatchesAccount => "The password must not be your username or email.",
        }
    }
}

/// What the policy needs to know besides the password.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyContext<'a> {
    /// The account's username, if known.
    pub username: Option<&'a str>,
    /// The account's email, if known.
    pub email: Option<&'a str>,
    /// Whether bcrypt (72-byte limit) is the configured hash.
    pub bcrypt: bool,
}

/// Checks `password` against the policy and returns every issue found (empty = acceptable).
#[must_use]
pub fn check_policy(password: &str, ctx: PolicyContext<'_>) -> Vec<PasswordIssue> {
    let mut issues = Vec::new();
    let len = password.chars().count();
    if len < MIN_LEN {
        issues.push(PasswordIssue::TooShort);
    }
    if len > MAX_LEN {
        issues.push(PasswordIssue::TooLong);
    }
    if ctx.bcrypt && password.len() > BCRYPT_MAX_BYTES && len <= MAX_LEN {
        issues.push(PasswordIssue::TooLongForHash);
    }
    if !password.chars().any(char::is_alphabetic) {
        issues.push(PasswordIssue::NoLetter);
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        issues.push(PasswordIssue::NoDigit);
    }
    let folded = password.to_lowercase();
    if COMMON.contains(folded.as_str()) {
        issues.push(PasswordIssue::Common);
    }
    let local_part = ctx.email.and_then(|e| e.split_once('@')).map(|(l, _)| l);
    if [ctx.username, ctx.email, local_part]
        .into_iter()
        .flatten()
        .any(|id| id.to_lowercase() == folded)
    {
        issues.push(PasswordIssue::MatchesAccount);
    }
    issues
}

/// The four levels of the seed-003 meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StrengthLevel {
    /// Fewer than 2 criteria.
    Weak,
    /// 2 criteria.
    Medium,
    /// 3 criteria.
    Good,
    /// 4 or more criteria.
    Strong,
}

/// A strength estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Strength {
    /// How many criteria are met (length ≥ 8, letters, digits, specials).
    pub score: u8,
    /// The level derived from the score.
    pub level: StrengthLevel,
}

/// Seed 003's meter: one point each for ≥ 8 characters, letters, digits and special characters.
#[must_use]
pub fn strength(password: &str) -> Strength {
    let criteria = [
        password.chars().count() >= MIN_LEN,
        password.chars().any(char::is_alphabetic),
        password.chars().any(|c| c.is_ascii_digit()),
        password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
    ];
    let score = criteria.iter().filter(|met| **met).count() as u8;
    let level = match score {
        0 | 1 => StrengthLevel::Weak,
        2 => StrengthLevel::Medium,
        3 => StrengthLevel::Good,
        _ => StrengthLevel::Strong,
    };
    Strength { score, level }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PolicyContext<'static> {
        PolicyContext {
            username: Some("ana"),
            email: Some("ana.silva@example.com"),
            bcrypt: false,
        }
    }

    #[test]
    fn a_strong_password_passes() {
        assert!(check_policy("MinhaS3nha!Forte", ctx()).is_empty());
        assert!(check_policy("correct horse 9 battery", ctx()).is_empty());
    }

    #[test]
    fn seed_003_weak_password_is_too_short_and_has_no_letter() {
        assert_eq!(
            check_policy("123", ctx()),
            vec![PasswordIssue::TooShort, PasswordIssue::NoLetter]
        );
    }

    #[test]
    fn letters_and_digits_are_both_required() {
        assert_eq!(
            check_policy("onlyletters", ctx()),
            vec![PasswordIssue::NoDigit]
        );
        assert_eq!(
            check_policy("1234567890", ctx()),
            vec![PasswordIssue::NoLetter]
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert!(check_policy("Password123", ctx()).contains(&PasswordIssue::Common));
        assert!(check_policy("passwd123456", ctx()).contains(&PasswordIssue::Common));
    }

    #[test]
    fn password_equal_to_account_identifiers_is_refused() {
        let c = PolicyContext {
            username: Some("maria2024x"),
            email: Some("joao99x@example.com"),
            bcrypt: false,
        };
        assert!(check_policy("Maria2024X", c).contains(&PasswordIssue::MatchesAccount));
        assert!(check_policy("joao99x@example.com", c).contains(&PasswordIssue::MatchesAccount));
        assert!(check_policy("JOAO99X", c).contains(&PasswordIssue::MatchesAccount));
    }

    #[test]
    fn length_bounds_are_in_characters() {
        let max = format!("{}1", "é".repeat(127));
        assert!(check_policy(&max, ctx()).is_empty());
        let over = format!("{}1", "a".repeat(128));
        assert_eq!(check_policy(&over, ctx()), vec![PasswordIssue::TooLong]);
    }

    #[test]
    fn bcrypt_refuses_more_than_72_bytes_instead_of_truncating() {
        let long = format!("{}1", "a".repeat(72));
        let bcrypt = PolicyContext {
            bcrypt: true,
            ..ctx()
        };
        assert_eq!(
            check_policy(&long, bcrypt),
            vec![PasswordIssue::TooLongForHash]
        );
        assert!(check_policy(&long, ctx()).is_empty());
    }

    #[test]
    fn strength_follows_the_seed_levels() {
        assert_eq!(strength("123").level, StrengthLevel::Weak);
        assert_eq!(strength("abcdefgh").level, StrengthLevel::Medium);
        assert_eq!(strength("abcdefg1").level, StrengthLevel::Good);
        assert_eq!(
            strength("MinhaS3nha!Forte"),
            Strength {
                score: 4,
                level: StrengthLevel::Strong
            }
        );
    }
}
