//! Guessability: how early a guessing attacker would try a password, estimated by zxcvbn
//! (frequency lists of passwords, words, names and surnames; l33t substitutions, keyboard
//! patterns, sequences, repeats, years and dates), with the account's own words (username,
//! email and its local part, first and last name) as an extra dictionary.
//!
//! Threshold: refused below [`MIN_GUESSES`] = 10⁸ estimated guesses (zxcvbn scores 0–2).
//! 10⁶ already outlasts an online attacker held to the lock and the rate limits; 10⁸ is for the
//! case that matters once those are gone — a stolen database, where Argon2id (19 MiB, t=2) lets a
//! single machine try some tens of thousands a second at most, so 10⁸ is hours of work per
//! account instead of seconds, and it is the level from which zxcvbn stops finding the word-plus-
//! digits and l33t variants (`Passw0rd`, `Summer2024`) people pick to meet composition rules.
//! Above that, longer passphrases (`correct horse battery staple 9`) and random strings pass.
//!
//! Cost: zxcvbn's matching grows faster than linearly with the length (l33t substitutions are
//! tried in combination, dates and repeats over every substring): in a release build on this
//! project's 2-core machines its worst inputs cost about 0.2 ms at 12 characters, 0.8 ms at 20,
//! 1.6 ms at 32 and 6 ms at 64. So only the first [`ANALYSED_CHARS`] characters are analysed,
//! which keeps every check under 1 ms (`porteiro bench policy`). That can only refuse more, never
//! less: more characters never make zxcvbn's estimate smaller. A longer password whose first 20
//! characters are guessable on their own (`Password1234567890…`) is refused, even with a strong
//! tail: a guessable head is what guessing rules that append to common bases start from.
//! zxcvbn builds its dictionaries (about 8 MB) at the first call, not at start-up.

use zxcvbn::feedback::Warning;
use zxcvbn::matching::patterns::MatchPattern;

/// Passwords estimated to fall in fewer guesses than this are refused.
pub const MIN_GUESSES: u64 = 100_000_000;

/// Characters of a password that zxcvbn analyses (the policy's maximum is 128).
pub const ANALYSED_CHARS: usize = 20;

/// Why zxcvbn finds a password guessable, in our own words (i18n codes `error.guessable_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuessHint {
    /// Rows or short patterns of keys (`qwerty`, `1qaz2wsx`).
    Keyboard,
    /// Repeated characters or groups (`aaa`, `abcabc`).
    Repeat,
    /// Sequences (`abc`, `6543`).
    Sequence,
    /// Years and dates.
    Date,
    /// One of the most used passwords.
    Common,
    /// A common password disguised with capitals, digits or look-alike symbols (`P@ssw0rd`).
    Variant,
    /// A single dictionary word, perhaps with a number.
    Word,
    /// Names and surnames.
    Name,
    /// The account's own username, email address or names.
    Personal,
    /// Too short for what it contains, with no single pattern to blame.
    Other,
}

impl GuessHint {
    /// Every hint.
    pub const ALL: [Self; 10] = [
        Self::Keyboard,
        Self::Repeat,
        Self::Sequence,
        Self::Date,
        Self::Common,
        Self::Variant,
        Self::Word,
        Self::Name,
        Self::Personal,
        Self::Other,
    ];

    /// Stable code; the wording is `error.<code>` in the message files.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Keyboard => "guessable_keyboard",
            Self::Repeat => "guessable_repeat",
            Self::Sequence => "guessable_sequence",
            Self::Date => "guessable_date",
            Self::Common => "guessable_common",
            Self::Variant => "guessable_variant",
            Self::Word => "guessable_word",
            Self::Name => "guessable_name",
            Self::Personal => "guessable_personal",
            Self::Other => "guessable_other",
        }
    }

    /// English explanation.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Keyboard => {
                "Rows and patterns of keys, like qwerty or 1qaz2wsx, are tried early."
            }
            Self::Repeat => "Repeated characters or words add almost nothing.",
            Self::Sequence => "Sequences like abc or 6543 are tried early.",
            Self::Date => "Years and dates are tried early.",
            Self::Common => "It is one of the most used passwords.",
            Self::Variant => {
                "Digits, capitals or look-alike symbols added to a common word or password \
                 (P@ssw0rd, Summer2024) do not make it hard to guess."
            }
            Self::Word => "A single word, even with a number or a year added, is tried early.",
            Self::Name => "Names and surnames are tried early.",
            Self::Personal => "It contains your name, username or email address.",
            Self::Other => "Add a few more words or characters that follow no pattern.",
        }
    }

    fn from_warning(warning: Option<Warning>) -> Self {
        match warning {
            Some(
                Warning::StraightRowsOfKeysAreEasyToGuess
                | Warning::ShortKeyboardPatternsAreEasyToGuess,
            ) => Self::Keyboard,
            Some(
                Warning::RepeatsLikeAaaAreEasyToGuess
                | Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess,
            ) => Self::Repeat,
            Some(Warning::SequencesLikeAbcAreEasyToGuess) => Self::Sequence,
            Some(Warning::RecentYearsAreEasyToGuess | Warning::DatesAreOftenEasyToGuess) => {
                Self::Date
            }
            Some(
                Warning::ThisIsATop10Password
                | Warning::ThisIsATop100Password
                | Warning::ThisIsACommonPassword,
            ) => Self::Common,
            Some(Warning::ThisIsSimilarToACommonlyUsedPassword) => Self::Variant,
            Some(Warning::AWordByItselfIsEasyToGuess) => Self::Word,
            Some(
                Warning::NamesAndSurnamesByThemselvesAreEasyToGuess
                | Warning::CommonNamesAndSurnamesAreEasyToGuess,
            ) => Self::Name,
            None => Self::Other,
        }
    }
}

/// The account's words that a password should not be built from: each given value, the
/// email's local part, and the pieces of both split at punctuation and spaces (3+ characters).
fn account_words<'a>(inputs: &[Option<&'a str>]) -> Vec<&'a str> {
    let mut words = Vec::new();
    for value in inputs.iter().flatten() {
        words.push(*value);
        let local = value.split_once('@').map(|(l, _)| l);
        if let Some(local) = local {
            words.push(local);
        }
        let base = local.unwrap_or(value);
        words.extend(
            base.split(|c: char| !c.is_alphanumeric())
                .filter(|p| p.chars().count() >= 3 && *p != base),
        );
    }
    words
}

/// Why `password` would be guessed early, or `None` when it holds out for at least
/// [`MIN_GUESSES`]. `inputs` are the account's username, email and names.
#[must_use]
pub fn guessable(password: &str, inputs: &[Option<&str>]) -> Option<GuessHint> {
    let analysed = match password.char_indices().nth(ANALYSED_CHARS) {
        Some((cut, _)) => &password[..cut],
        None => password,
    };
    let words = account_words(inputs);
    let estimate = zxcvbn::zxcvbn(analysed, &words);
    if estimate.guesses() >= MIN_GUESSES {
        return None;
    }
    let folded: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let personal = estimate.sequence().iter().any(
        |m| matches!(&m.pattern, MatchPattern::Dictionary(d) if folded.contains(&d.matched_word)),
    );
    if personal {
        return Some(GuessHint::Personal);
    }
    Some(GuessHint::from_warning(
        estimate
            .feedback()
            .and_then(zxcvbn::feedback::Feedback::warning),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[Option<&str>] = &[];

    #[test]
    fn the_passwords_people_pick_to_meet_the_rules_are_guessable() {
        for weak in [
            "Passw0rd",
            "P@ssw0rd1",
            "Welcome123",
            "Qwerty123",
            "Summer2024",
            "1qaz2wsx3edc",
            "abcd1234",
            "Senha2024",
            "aaaaaaa1",
            "Jennifer1985",
        ] {
            assert!(guessable(weak, NONE).is_some(), "{weak} passed");
        }
    }

    #[test]
    fn passphrases_and_random_strings_are_not() {
        for strong in [
            "correct horse battery staple 9",
            "MinhaS3nha!Forte",
            "q7Rt2mXw9pLk",
            "h4Tz8vNq3BcY",
            "tangerine otter 42 violin",
        ] {
            assert_eq!(guessable(strong, NONE), None, "{strong} refused");
        }
    }

    #[test]
    fn the_account_s_own_words_count_against_it() {
        // A made-up word is strong on its own, and weak when it is the account's username.
        let inputs = [
            Some("zorbaxil"),
            Some("zorbaxil@example.com"),
            Some("Ana"),
            None,
        ];
        assert_eq!(guessable("Zorbaxil2025", NONE), None);
        assert_eq!(
            guessable("Zorbaxil2025", &inputs),
            Some(GuessHint::Personal)
        );
        let by_email = [None, Some("z.quixabeira@example.com"), None, None];
        assert_eq!(guessable("Quixabeira2025", NONE), None);
        assert_eq!(
            guessable("Quixabeira2025", &by_email),
            Some(GuessHint::Personal)
        );
    }

    #[test]
    fn hints_follow_the_pattern_found() {
        assert_eq!(guessable("Passw0rd", NONE), Some(GuessHint::Variant));
        assert_eq!(guessable("aaaaaaaa1b", NONE), Some(GuessHint::Repeat));
        assert_eq!(guessable("abcdefgh12", NONE), Some(GuessHint::Sequence));
        assert_eq!(guessable("jennifer1985", NONE), Some(GuessHint::Name));
        assert_eq!(guessable("Qwerty123", NONE), Some(GuessHint::Common));
    }

    #[test]
    fn only_the_head_of_a_long_password_is_analysed() {
        let head_strong = format!("q7Rt2mXw9pLk{}", "a".repeat(100));
        assert_eq!(guessable(&head_strong, NONE), None);
        let head_weak = format!("{}q7Rt2mXw9pLk", "ab".repeat(10));
        assert_eq!(guessable(&head_weak, NONE), Some(GuessHint::Repeat));
    }
}
