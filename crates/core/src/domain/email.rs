//! An email address in its canonical form: one spelling per mailbox, nothing that draws a
//! look-alike, nothing the mailer would refuse.
//!
//! The canonical form is NFC, lower-cased, with the domain as its IDNA A-label
//! (`alice@exämple.test` and `alice@xn--exmple-cua.test` are both stored as the latter). The
//! store's unique index on that string is what makes two spellings of one mailbox one account, and
//! look-ups ([`Email::lookup_key`]) apply the same canonicalisation to whatever the user typed.
//!
//! Refused, whatever the settings: characters outside the UTS #39 General Security Profile
//! (`Identifier_Status=Allowed`) — which covers default-ignorable, bidi-control and other format
//! characters (`General_Category=Cf`), variation selectors, compatibility forms such as fullwidth
//! letters, and unassigned or private-use code points; quoted local parts and address literals;
//! mixed-script labels (UTS #39 restriction level above *Highly Restrictive*, e.g. a Cyrillic
//! `а` among Latin letters); combining marks on ASCII letters (`i` + U+0307 looks like `i`) or
//! repeated marks. A non-ASCII local part is refused unless [`EmailPolicy::allow_unicode`]
//! (`EMAIL_ALLOW_UNICODE`), and even then when its confusable skeleton is plain ASCII (an
//! all-Cyrillic `аре` reads as `ape`). The result must parse as a [`lettre::Address`], the type
//! the mail transport parses recipients with, so an accepted address never fails at sending for
//! its syntax. Beyond that the only real proof of an address is a mail that arrives.

use std::fmt;
use std::str::FromStr as _;

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;
use unicode_security::{GeneralSecurityProfile as _, RestrictionLevel, RestrictionLevelDetection};

use crate::error::Error;

/// Longest local part and address, in bytes (RFC 5321 §4.5.3.1).
const MAX_LOCAL: usize = 64;
const MAX_ADDRESS: usize = 254;
/// Input longer than this is refused before it is normalised.
const MAX_INPUT: usize = 1024;
/// Characters that only appear in quoted local parts, address literals or display names.
const REFUSED_PUNCTUATION: [char; 11] = ['<', '>', '(', ')', '[', ']', ',', ';', ':', '\\', '"'];
/// UTS #39 §5.4: more consecutive combining marks than this is not a real-world spelling.
const MAX_MARK_RUN: usize = 4;

/// What [`Email::parse`] accepts beyond ASCII. The default is the strict one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmailPolicy {
    /// Accept non-ASCII local parts (`EMAIL_ALLOW_UNICODE`). Mail to them needs a relay that
    /// speaks SMTPUTF8 (RFC 6531). Internationalised domains are accepted either way: they are
    /// stored and sent as A-labels.
    pub allow_unicode: bool,
}

/// A valid email address in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Trims, canonicalises and validates `raw` (see the module documentation).
    ///
    /// # Errors
    /// `Validation` with code `invalid_email` when the address is not acceptable.
    pub fn parse(raw: &str, policy: EmailPolicy) -> Result<Self, Error> {
        let trimmed = raw.trim();
        if trimmed.len() > MAX_INPUT {
            return Err(invalid());
        }
        let s = canonical_case(trimmed);
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || REFUSED_PUNCTUATION.contains(&c))
        {
            return Err(invalid());
        }
        if s.chars().any(|c| !c.is_ascii() && !c.identifier_allowed()) {
            return Err(invalid_characters());
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(invalid());
        };
        if local.is_empty() || local.contains('@') || local.len() > MAX_LOCAL {
            return Err(invalid());
        }
        if !local.is_ascii() {
            if !policy.allow_unicode {
                return Err(Error::validation(
                    "email",
                    "invalid_email",
                    "Only ASCII characters are accepted before the @ of an email address.",
                ));
            }
            if !single_spelling(local) || confusable_with_ascii(local) {
                return Err(invalid_characters());
            }
        }
        let domain = canonical_domain(domain)?;
        let canonical = format!("{local}@{domain}");
        if canonical.len() > MAX_ADDRESS {
            return Err(invalid());
        }
        // The recipient parser of the mail transport: what passes here is what it will accept.
        lettre::Address::from_str(&canonical).map_err(|_| invalid())?;
        Ok(Self(canonical))
    }

    /// The spelling under which an address that `raw` names is stored, for look-ups (sign-in,
    /// administration). Never fails: input that is no valid address gets the same trimming,
    /// normalisation and lower-casing, and then simply matches nothing.
    #[must_use]
    pub fn lookup_key(raw: &str) -> String {
        let s = canonical_case(raw.trim());
        match s.rsplit_once('@') {
            Some((local, domain)) => match idna::domain_to_ascii_strict(domain) {
                Ok(domain) => format!("{local}@{domain}"),
                Err(_) => s,
            },
            None => s,
        }
    }

    /// The canonical address.
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

/// The look-up key of a sign-in identifier: [`Email::lookup_key`] when it has an `@` (usernames
/// never do), else the lower-cased username. Never fails.
#[must_use]
pub fn login_key(identifier: &str) -> String {
    if identifier.contains('@') {
        Email::lookup_key(identifier)
    } else {
        identifier.trim().to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid() -> Error {
    Error::validation("email", "invalid_email", "The email address is not valid.")
}

fn invalid_characters() -> Error {
    Error::validation(
        "email",
        "invalid_email",
        "The email address contains invisible, mixed-script or look-alike characters.",
    )
}

/// NFC, lower-cased, NFC again (lower-casing can decompose: `İ` becomes `i` + U+0307).
/// NFC and lower case: the case every stored address is in (also for search prefixes).
pub(crate) fn canonical_case(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.nfc().collect::<String>().to_lowercase().nfc().collect()
}

/// The A-label form of `domain`, after checking its Unicode form label by label.
fn canonical_domain(domain: &str) -> Result<String, Error> {
    // UTS #46 with STD3 rules and DNS lengths: letters, digits and hyphens in each label, no
    // empty label, and `xn--` labels must decode to valid U-labels.
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| invalid())?;
    if !ascii.contains('.') {
        return Err(invalid());
    }
    // A punycode label is judged by what it displays as, not by its ASCII spelling.
    let (unicode, decoded) = idna::domain_to_unicode(&ascii);
    decoded.map_err(|_| invalid())?;
    for label in unicode.split('.').filter(|l| !l.is_ascii()) {
        if label
            .chars()
            .any(|c| !c.is_ascii() && !c.identifier_allowed())
            || !single_spelling(label)
        {
            return Err(invalid_characters());
        }
    }
    Ok(ascii)
}

/// Whether a non-ASCII piece reads one way only: one script (or an accepted combination, UTS
/// #39 *Highly Restrictive*) and no combining mark that hides on its base letter.
fn single_spelling(s: &str) -> bool {
    // ASCII punctuation ('.', '+', '-', '_') belongs to no script; leave it out of the check.
    let letters: String = s
        .chars()
        .filter(|c| !c.is_ascii() || c.is_ascii_alphanumeric())
        .collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::HighlyRestrictive)
    {
        return false;
    }
    // `s` is NFC: a mark still following an ASCII character did not compose with it, so it is
    // drawn over a plain letter (`i` + U+0307 looks like `i`); a mark with no base at all is
    // no better.
    let mut previous: Option<char> = None;
    for c in s.chars() {
        if is_combining_mark(c) && previous.is_none_or(|p| p.is_ascii()) {
            return false;
        }
        previous = Some(c);
    }
    // UTS #39 §5.4, on the decomposed form (where `ö` is `o` + U+0308): no mark repeated
    // (`ö` + U+0308) and no long runs of marks.
    let mut previous: Option<char> = None;
    let mut run = 0;
    for c in s.nfd() {
        if is_combining_mark(c) {
            run += 1;
            if previous == Some(c) || run > MAX_MARK_RUN {
                return false;
            }
        } else {
            run = 0;
        }
        previous = Some(c);
    }
    true
}

/// Whether a non-ASCII local part has a plain-ASCII confusable skeleton (UTS #39 §4), i.e.
/// reads as some ASCII address: an all-Cyrillic `аре` is the skeleton `ape`.
fn confusable_with_ascii(local: &str) -> bool {
    unicode_security::skeleton(local).all(|c| c.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EmailPolicy = EmailPolicy {
        allow_unicode: false,
    };
    const UNICODE: EmailPolicy = EmailPolicy {
        allow_unicode: true,
    };

    fn canonical(raw: &str, policy: EmailPolicy) -> String {
        Email::parse(raw, policy)
            .unwrap_or_else(|e| panic!("{raw:?} should be accepted: {e}"))
            .into_inner()
    }

    fn refused(raw: &str, policy: EmailPolicy) -> bool {
        match Email::parse(raw, policy) {
            Err(Error::Validation(f)) => f.code == "invalid_email" && f.field == "email",
            _ => false,
        }
    }

    #[test]
    fn valid_addresses_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ana.Silva+tag@Example.COM ", STRICT).expect("valid");
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
            "\"ana\"@example.com",
            "ana@[127.0.0.1]",
            "ana@-example.com",
            "ana@example.com.",
            ".ana@example.com",
            "an..a@example.com",
            "ana@exa_mple.com",
        ] {
            assert!(refused(bad, UNICODE), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn overlong_addresses_are_rejected() {
        let local = "a".repeat(65);
        assert!(refused(&format!("{local}@example.com"), STRICT));
        let domain = format!("{}.com", "b".repeat(250));
        assert!(refused(&format!("a@{domain}"), STRICT));
        let accented = format!("{}@example.com", "\u{00E9}".repeat(40));
        assert!(refused(&accented, UNICODE), "64 bytes, not 64 characters");
        assert!(refused(
            &format!("{}@example.com", "a".repeat(5000)),
            STRICT
        ));
    }

    #[test]
    fn invisible_and_format_characters_are_refused() {
        for bad in [
            "al\u{200B}ice@example.test",  // zero-width space
            "al\u{200D}ice@example.test",  // zero-width joiner
            "alice\u{2060}@example.test",  // word joiner
            "\u{FEFF}alice@example.test",  // byte-order mark
            "al\u{00AD}ice@example.test",  // soft hyphen
            "\u{202E}tset.elpmaxe@ecila",  // right-to-left override
            "alice@\u{202D}example.test",  // left-to-right override
            "alice\u{2066}@example.test",  // left-to-right isolate
            "alice\u{FE0F}@example.test",  // variation selector
            "alice\u{E0061}@example.test", // tag character
            "al\u{3164}ice@example.test",  // Hangul filler
            "alice@ex\u{200B}ample.test",  // zero-width space in the domain
            "alice@example\u{3002}test",   // ideographic full stop as a dot
            "alice\u{E000}@example.test",  // private use
        ] {
            assert!(refused(bad, UNICODE), "{bad:?} should be refused");
            assert!(refused(bad, STRICT), "{bad:?} should be refused");
        }
    }

    #[test]
    fn look_alike_letters_are_refused() {
        for bad in [
            "\u{0430}lice@example.test",             // Cyrillic а among Latin letters
            "alice@ex\u{0430}mple.test",             // … in the domain
            "\u{FF41}\u{FF4C}ice@example.test",      // fullwidth ａｌ
            "alice@\u{FF45}xample.test",             // fullwidth ｅ in the domain
            "\u{0430}\u{0440}\u{0435}@example.test", // all-Cyrillic "аре" reads as "ape"
            "al\u{0131}ce@example.test",             // dotless ı: skeleton "alice"
        ] {
            assert!(refused(bad, UNICODE), "{bad:?} should be refused");
            assert!(refused(bad, STRICT), "{bad:?} should be refused");
        }
    }

    #[test]
    fn combining_marks_that_hide_on_a_letter_are_refused() {
        for bad in [
            "ali\u{0307}ce@example.test",       // i + dot above looks like i
            "al\u{0130}ce@example.test",        // İ lower-cases to i + U+0307
            "alic\u{0335}e@example.test",       // short stroke overlay
            "j\u{00F6}\u{0308}rg@example.test", // a mark repeated on ö
            "\u{0301}alice@example.test",       // a mark with no base
            "alice@twi\u{0307}tter.test",       // … in the domain
        ] {
            assert!(refused(bad, UNICODE), "{bad:?} should be refused");
        }
        // A decomposed accent composes under NFC and is one ordinary letter.
        assert_eq!(
            canonical("jo\u{0308}rg@example.test", UNICODE),
            "j\u{00F6}rg@example.test"
        );
    }

    #[test]
    fn punycode_and_unicode_domains_have_one_canonical_form() {
        let a = canonical("alice@ex\u{00E4}mple.test", STRICT);
        let b = canonical("alice@xn--exmple-cua.test", STRICT);
        let c = canonical("Alice@EXA\u{0308}MPLE.test", STRICT);
        let d = canonical("ALICE@XN--EXMPLE-CUA.TEST", STRICT);
        assert_eq!(a, "alice@xn--exmple-cua.test");
        assert_eq!([&b, &c, &d], [&a, &a, &a]);
        // Look-ups find it whichever way the user types it.
        for spelling in [
            "alice@ex\u{00E4}mple.test",
            " ALICE@Exa\u{0308}mple.TEST ",
            "alice@xn--exmple-cua.test",
        ] {
            assert_eq!(Email::lookup_key(spelling), a, "{spelling:?}");
        }
        // A punycode label is judged by what it decodes to.
        let mixed = idna::domain_to_ascii("ex\u{0430}mple.test").expect("valid IDNA");
        assert!(refused(&format!("alice@{mixed}"), STRICT), "{mixed}");
        assert!(refused("alice@xn--.test", STRICT));
        // Canonical singletons are the letter they stand for: the Kelvin sign is a K.
        assert_eq!(
            canonical("\u{212A}ate@example.test", STRICT),
            "kate@example.test"
        );
    }

    #[test]
    fn unicode_local_parts_need_the_setting() {
        for raw in [
            "j\u{00F6}rg@example.test",
            "\u{0436}\u{0430}\u{043D}\u{043D}\u{0430}@example.test", // жанна
            "\u{7528}\u{6237}@example.test",                         // 用户
        ] {
            assert!(refused(raw, STRICT), "{raw:?} is refused by default");
            let email = canonical(raw, UNICODE);
            assert_eq!(email, raw.nfc().collect::<String>(), "{raw:?}");
        }
        assert_eq!(
            canonical("J\u{00D6}RG@Example.test", UNICODE),
            "j\u{00F6}rg@example.test"
        );
        assert_eq!(EmailPolicy::default(), STRICT, "strict unless configured");
    }

    #[test]
    fn accepted_addresses_are_accepted_by_the_mail_transport_parser() {
        for (raw, policy) in [
            ("ana.silva+tag@example.com", STRICT),
            ("o'brien@example.co.uk", STRICT),
            ("alice@ex\u{00E4}mple.test", STRICT),
            ("j\u{00F6}rg@m\u{00FC}nchen.example", UNICODE),
        ] {
            let email = canonical(raw, policy);
            let address: lettre::Address = email.parse().expect("lettre accepts it");
            assert_eq!(address.to_string(), email);
        }
    }

    #[test]
    fn lookup_keys_never_fail() {
        for odd in [
            "",
            "@",
            "a@b@c",
            "x@\u{202E}",
            "\u{0}@\u{0}",
            "a@xn--",
            "ADMIN",
        ] {
            let _ = Email::lookup_key(odd);
        }
        assert_eq!(Email::lookup_key(" Ana@Example.COM "), "ana@example.com");
        assert_eq!(Email::lookup_key("ADMIN"), "admin");
        assert_eq!(login_key(" Ana.Silva "), "ana.silva");
        assert_eq!(
            login_key("Alice@Ex\u{00C4}mple.test"),
            "alice@xn--exmple-cua.test"
        );
    }
}
