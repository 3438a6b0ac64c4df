//! Security questions (seed 004): the catalogue's questions, users' answers, and the rules both
//! obey — question text validation, answer normalisation, the limits, and how decoy questions are
//! chosen for addresses that have none.
//!
//! Pure code: no store, no clock, no hashing (the flow hashes the normalised answer with
//! Argon2id on the hashing pool, see `flows::security_questions`).
//!
//! Answers are never sufficient on their own to recover an account (ASVS v4 2.5.2 forbids
//! knowledge-based answers as an authenticator): they only add a second condition to the emailed
//! reset link.

use chrono::{DateTime, Utc};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use crate::error::Error;

/// A question of the catalogue (seed 004 `SecurityQuestion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityQuestion {
    /// Identifier.
    pub id: Uuid,
    /// The question as shown.
    pub text: String,
    /// Offered for new answers and asked during recovery. A deactivated question keeps its
    /// answers but is neither offered nor asked.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One of a user's answers as listed: which question, never the answer or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityAnswer {
    /// The question answered.
    pub question_id: Uuid,
    /// Its text.
    pub question: String,
    /// Whether the question is active (only answers to active questions are asked).
    pub active: bool,
    /// When the answer was first set.
    pub created_at: DateTime<Utc>,
    /// When it was last replaced.
    pub updated_at: DateTime<Utc>,
}

/// An answer with its stored hash, for verification only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The question answered.
    pub question_id: Uuid,
    /// Its text.
    pub question: String,
    /// Argon2id PHC string of the normalised answer.
    pub answer_hash: String,
}

/// What setting an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAnswerOutcome {
    /// A new answer was stored.
    Added,
    /// The answer to this question was replaced.
    Replaced,
    /// The account already has [`MAX_ANSWERS`] answers: nothing changed.
    TooMany,
    /// No such question, or it is deactivated: nothing changed.
    QuestionUnavailable,
}

/// The state of question-based recovery of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuestionLock {
    /// Consecutive wrong answers.
    pub failed_attempts: i32,
    /// Locked until then.
    pub locked_until: Option<DateTime<Utc>>,
}

impl QuestionLock {
    /// Whether question-based recovery is locked at `now`.
    #[must_use]
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

/// Answers to active questions an account needs before questions are used at all (recovery
/// asks them, and a password reset needs a recovery proof).
pub const MIN_ANSWERS: usize = 2;
/// Most answers one account may keep: enough choice, and a bounded amount of hashing per
/// recovery attempt.
pub const MAX_ANSWERS: usize = 5;
/// Wrong recovery attempts (or wrong single answers) before question-based recovery locks.
pub const LOCK_ATTEMPTS: i32 = 5;
/// How long the question lock lasts, in minutes.
pub const LOCK_MINUTES: i64 = 15;
/// How long a recovery proof works, in minutes.
pub const PROOF_TTL_MINUTES: i64 = 10;
/// Recovery proofs are 24 random bytes, base64url: 32 characters.
pub const PROOF_LEN: usize = 32;
/// Shortest question text, in characters.
pub const QUESTION_MIN_CHARS: usize = 5;
/// Longest question text, in characters.
pub const QUESTION_MAX_CHARS: usize = 200;
/// Shortest answer after normalisation, in characters.
pub const ANSWER_MIN_CHARS: usize = 2;
/// Longest answer after normalisation, in characters.
pub const ANSWER_MAX_CHARS: usize = 100;
/// Longest answer accepted as typed (before normalisation), in characters.
pub const ANSWER_RAW_MAX_CHARS: usize = 200;

/// Characters that reorder or hide text (bidirectional controls and embeddings, zero-width
/// joiners and marks, the BOM): a question containing them could show differently from what an
/// administrator reviewed.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Trims and collapses runs of whitespace to one space.
fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Validates a question's text: trimmed, inner whitespace collapsed, 5–200 characters, no
/// control, bidirectional or invisible characters. Returns it as stored.
///
/// # Errors
/// `Validation` (`invalid_question`).
pub fn parse_question_text(raw: &str) -> Result<String, Error> {
    if raw
        .chars()
        .any(|c| (c.is_control() && !c.is_whitespace()) || is_invisible_or_bidi(c))
    {
        return Err(Error::validation(
            "text",
            "invalid_question",
            "The question contains control or invisible characters.",
        ));
    }
    let text: String = collapse_whitespace(&raw.nfc().collect::<String>());
    let len = text.chars().count();
    if !(QUESTION_MIN_CHARS..=QUESTION_MAX_CHARS).contains(&len) {
        return Err(Error::validation(
            "text",
            "invalid_question",
            format!(
                "The question must have {QUESTION_MIN_CHARS} to {QUESTION_MAX_CHARS} characters."
            ),
        ));
    }
    Ok(text)
}

/// The key two questions are compared by for uniqueness: two texts differing only in case,
/// accents or spacing are the same question.
#[must_use]
pub fn question_key(text: &str) -> String {
    normalize_answer(text)
}

/// Normalises an answer so that what a person remembers matches what they typed before:
/// Unicode NFKD, combining marks (accents) removed, lower case, surrounding whitespace trimmed
/// and inner runs collapsed to one space. `" São  PAULO "` and `"sao paulo"` are equal.
#[must_use]
pub fn normalize_answer(raw: &str) -> String {
    let stripped: String = raw
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .filter(|c| !c.is_control() || c.is_whitespace())
        .filter(|c| !is_invisible_or_bidi(*c))
        .collect();
    collapse_whitespace(&stripped.to_lowercase())
}

/// Validates and normalises an answer being set.
///
/// # Errors
/// `Validation` (`invalid_answer`) when too short or too long.
pub fn parse_answer(raw: &str) -> Result<String, Error> {
    if raw.chars().count() > ANSWER_RAW_MAX_CHARS {
        return Err(Error::validation(
            "answer",
            "invalid_answer",
            format!("The answer must have {ANSWER_MIN_CHARS} to {ANSWER_MAX_CHARS} characters."),
        ));
    }
    let answer = normalize_answer(raw);
    let len = answer.chars().count();
    if !(ANSWER_MIN_CHARS..=ANSWER_MAX_CHARS).contains(&len) {
        return Err(Error::validation(
            "answer",
            "invalid_answer",
            format!("The answer must have {ANSWER_MIN_CHARS} to {ANSWER_MAX_CHARS} characters."),
        ));
    }
    Ok(answer)
}

/// An answer given during verification, normalised; one too long to have been set is cut (it
/// cannot match, and hashing it costs the same as any other).
#[must_use]
pub fn answer_for_verification(raw: &str) -> String {
    let cut: String = raw.chars().take(ANSWER_RAW_MAX_CHARS).collect();
    normalize_answer(&cut)
}

/// How many decoy questions an address without questions is shown, from one keyed-hash byte:
/// 2 (60 %), 3 (30 %), 4 (6 %) or 5 (4 %) — the counts accounts are expected to have, most
/// stopping at the minimum — but never more than `available`.
#[must_use]
pub fn decoy_count(byte: u8, available: usize) -> usize {
    let wanted = match u32::from(byte) * 100 / 256 {
        0..=59 => 2,
        60..=89 => 3,
        90..=95 => 4,
        _ => 5,
    };
    wanted.min(available).min(MAX_ANSWERS)
}

/// Chooses the decoys: the `count` questions whose keyed ranks (`rank(id)`, a keyed hash of the
/// address and the question) are lowest, ordered like a real account's questions (by id).
/// Ranking each question on its own (rendezvous hashing) keeps the choice stable when the
/// catalogue grows: a new question replaces a decoy only if it ranks lower.
#[must_use]
pub fn choose_decoys<T: Clone>(
    active: &[T],
    id: impl Fn(&T) -> Uuid,
    rank: impl Fn(Uuid) -> Vec<u8>,
    count: usize,
) -> Vec<T> {
    let mut ranked: Vec<(Vec<u8>, &T)> = active.iter().map(|q| (rank(id(q)), q)).collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut chosen: Vec<T> = ranked
        .into_iter()
        .take(count)
        .map(|(_, q)| q.clone())
        .collect();
    chosen.sort_by_key(|q| id(q));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_ignore_case_spacing_and_accents() {
        assert_eq!(normalize_answer("  São   PAULO "), "sao paulo");
        assert_eq!(normalize_answer("sao paulo"), "sao paulo");
        assert_eq!(normalize_answer("Crème\tBrûlée"), "creme brulee");
        assert_eq!(normalize_answer("ﬁdo"), "fido");
        assert_eq!(normalize_answer("Ä\u{202E}b"), "ab");
    }

    #[test]
    fn answers_have_bounds() {
        assert!(parse_answer(" a ").is_err());
        assert!(parse_answer("ab").is_ok());
        assert!(parse_answer(&"x".repeat(101)).is_err());
        assert!(parse_answer(&"x".repeat(100)).is_ok());
        assert!(parse_answer(&" ".repeat(300)).is_err());
    }

    #[test]
    fn question_text_is_validated() {
        assert_eq!(
            parse_question_text("  What was   your first pet?  ").expect("valid"),
            "What was your first pet?"
        );
        assert!(parse_question_text("Why").is_err());
        assert!(parse_question_text("What is \u{202E}this?").is_err());
        assert!(parse_question_text("What is\u{0007} this?").is_err());
        assert!(parse_question_text("What is\u{200B} this?").is_err());
        assert!(parse_question_text(&"q".repeat(201)).is_err());
        assert_eq!(
            question_key("What was your FIRST pét?"),
            question_key("what was  your first pet?")
        );
    }

    #[test]
    fn decoy_counts_stay_within_the_limits() {
        for b in 0..=255u8 {
            let n = decoy_count(b, 10);
            assert!((MIN_ANSWERS..=MAX_ANSWERS).contains(&n));
            assert!(decoy_count(b, 3) <= 3);
        }
        assert_eq!(decoy_count(0, 10), 2);
        assert_eq!(decoy_count(255, 10), 5);
    }

    #[test]
    fn decoys_are_the_lowest_ranked_sorted_by_id() {
        let ids: Vec<Uuid> = (1..=6u128).map(Uuid::from_u128).collect();
        let rank = |id: Uuid| vec![(10 - id.as_u128()) as u8];
        let chosen = choose_decoys(&ids, |u| *u, rank, 2);
        assert_eq!(chosen, vec![Uuid::from_u128(5), Uuid::from_u128(6)]);
    }
}
