//! Password policy (PRODUCT.md §6) and the strength levels of seed 003.
//!
//! Policy: 8–128 characters, at least one letter and one digit (seed 003); not in the bundled list
//! of about 200,000 breached passwords ([`breached`], a Bloom filter); not equal to the username,
//! the email or the email's local part; and not guessable early by an attacker ([`guessing`]:
//! zxcvbn with the account's own words, at least 10⁸ estimated guesses). The list and zxcvbn
//! judge only a password that meets the simple rules, so the reasons stay short and the costly
//! check runs on what could be accepted. When bcrypt is the configured hash, more than 72 bytes
//! is refused instead of being silently truncated. The web UI's live meter uses the same
//! [`strength`] rules, and shows the server's refusal when there is one.

pub mod breached;
pub mod guessing;

use serde::{Serialize, Serializer};

pub use guessing::GuessHint;

/// Minimum length in characters.
pub const MIN_LEN: usize = 8;
/// Maximum length in characters.
pub const MAX_LEN: usize = 128;
/// bcrypt only reads this many bytes; longer input would be truncated silently.
pub const BCRYPT_MAX_BYTES: usize = 72;

/// One reason a password is refused. Serialised as its stable snake_case [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// An attacker would guess it early (zxcvbn: fewer than 10⁸ guesses); the hint says why.
    Guessable(GuessHint),
}

impl Serialize for PasswordIssue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
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
            Self::Guessable(_) => "guessable",
        }
    }

    /// The code of the hint that goes with the reason (`guessable_keyboard`, …), if any. Its
    /// wording, like the reason's, is `error.<code>` in the message files.
    #[must_use]
    pub fn hint_code(self) -> Option<&'static str> {
        match self {
            Self::Guessable(hint) => Some(hint.code()),
            _ => None,
        }
    }

    /// English explanation (for `Guessable`, the reason and its hint).
    #[must_use]
    pub fn message(self) -> String {
        let message = match self {
            Self::TooShort => "The password must have at least 8 characters.",
            Self::TooLong => "The password must have at most 128 characters.",
            Self::TooLongForHash => "The password must have at most 72 bytes.",
            Self::NoLetter => "The password must contain a letter.",
            Self::NoDigit => "The password must contain a digit.",
            Self::Common => "This password is too common.",
            Self::MatchesAccount => "The password must not be your username or email.",
            Self::Guessable(hint) => {
                return format!(
                    "This password is among the first an attacker would try. {}",
                    hint.message()
                );
            }
        };
        message.to_owned()
    }
}

/// What the policy needs to know besides the password.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyContext<'a> {
    /// The account's username, if known.
    pub username: Option<&'a str>,
    /// The account's email, if known.
    pub email: Option<&'a str>,
    /// The account's first name, if known.
    pub first_name: Option<&'a str>,
    /// The account's last name, if known.
    pub last_name: Option<&'a str>,
    /// Whether bcrypt (72-byte limit) is the configured hash.
    pub bcrypt: bool,
}

impl<'a> PolicyContext<'a> {
    /// The words of an existing account (username, email, names); `bcrypt` is left off for the
    /// caller to set.
    #[must_use]
    pub fn for_user(user: &'a super::User) -> Self {
        Self {
            username: Some(&user.username),
            email: Some(&user.email),
            first_name: user.first_name.as_deref(),
            last_name: user.last_name.as_deref(),
            bcrypt: false,
        }
    }
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
    if issues.is_empty() && breached::contains(&folded) {
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
    if issues.is_empty()
        && let Some(hint) = guessing::guessable(
            password,
            &[ctx.username, ctx.email, ctx.first_name, ctx.last_name],
        )
    {
        issues.push(PasswordIssue::Guessable(hint));
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
            first_name: Some("Ana"),
            last_name: Some("Silva"),
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
    fn passwords_an_attacker_tries_early_are_refused_with_a_hint() {
        for weak in [
            "Passw0rd",
            "P@ssw0rd1",
            "Welcome123",
            "Qwerty123",
            "Summer2024",
        ] {
            let issues = check_policy(weak, ctx());
            assert!(
                issues
                    .iter()
                    .any(|i| matches!(i, PasswordIssue::Common | PasswordIssue::Guessable(_))),
                "{weak}: {issues:?}"
            );
        }
        assert_eq!(check_policy("Passw0rd", ctx()), vec![PasswordIssue::Common]);
        let issues = check_policy("P@ssw0rd1", ctx());
        assert_eq!(issues, vec![PasswordIssue::Guessable(GuessHint::Variant)]);
        assert_eq!(issues[0].code(), "guessable");
        assert_eq!(issues[0].hint_code(), Some("guessable_variant"));
        assert!(
            issues[0]
                .message()
                .starts_with("This password is among the first")
        );
    }

    #[test]
    fn passphrases_and_random_strings_are_accepted() {
        for strong in [
            "correct horse battery staple 9",
            "q7Rt2mXw9pLk",
            "Vb3nK8sQz1Tw",
        ] {
            assert!(check_policy(strong, ctx()).is_empty(), "{strong}");
        }
    }

    #[test]
    fn the_account_s_names_are_not_a_password() {
        let c = PolicyContext {
            first_name: Some("Zorbaxil"),
            ..ctx()
        };
        assert!(check_policy("Zorbaxil2025", ctx()).is_empty());
        assert_eq!(
            check_policy("Zorbaxil2025", c),
            vec![PasswordIssue::Guessable(GuessHint::Personal)]
        );
    }

    #[test]
    fn issues_serialise_as_their_codes() {
        let json = serde_json::to_string(&[
            PasswordIssue::NoDigit,
            PasswordIssue::Guessable(GuessHint::Date),
        ])
        .expect("serialises");
        assert_eq!(json, r#"["no_digit","guessable"]"#);
    }

    #[test]
    fn password_equal_to_account_identifiers_is_refused() {
        let c = PolicyContext {
            username: Some("maria2024x"),
            email: Some("joao99x@example.com"),
            bcrypt: false,
            ..PolicyContext::default()
        };
        assert!(check_policy("Maria2024X", c).contains(&PasswordIssue::MatchesAccount));
        assert!(check_policy("joao99x@example.com", c).contains(&PasswordIssue::MatchesAccount));
        assert!(check_policy("JOAO99X", c).contains(&PasswordIssue::MatchesAccount));
    }

    /// `n` characters of two UTF-8 bytes each, in no order zxcvbn would find a pattern in.
    fn two_byte_noise(n: u32) -> String {
        (0..n)
            .map(|i| char::from_u32(0xC0 + (i * 37 + i * i * 11) % 64).expect("Latin-1 letter"))
            .collect()
    }

    #[test]
    fn length_bounds_are_in_characters() {
        let max = format!("{}1", two_byte_noise(127));
        assert_eq!(max.len(), 255);
        assert!(check_policy(&max, ctx()).is_empty());
        let over = format!("{}1", "a".repeat(128));
        assert_eq!(check_policy(&over, ctx()), vec![PasswordIssue::TooLong]);
    }

    #[test]
    fn bcrypt_refuses_more_than_72_bytes_instead_of_truncating() {
        let long = format!("{}1", two_byte_noise(36));
        assert_eq!(long.len(), 73);
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
