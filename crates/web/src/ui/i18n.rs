//! The hosted UI's words, in English and Brazilian Portuguese.
//!
//! Every string a page shows lives in `crates/web/i18n/<lang>.json`, a flat map from key to text
//! with `{name}` placeholders; templates and handlers only name keys. Both files must have the
//! same keys (a test checks it, and that every key the templates use exists).

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};
use porteiro_core::mail::Locale;

type Catalog = HashMap<String, String>;

fn load(name: &str, source: &str) -> Catalog {
    serde_json::from_str(source)
        .unwrap_or_else(|e| panic!("invariant: built-in message file {name} is valid JSON: {e}"))
}

static EN: LazyLock<Catalog> =
    LazyLock::new(|| load("en.json", include_str!("../../i18n/en.json")));
static PT_BR: LazyLock<Catalog> =
    LazyLock::new(|| load("pt-BR.json", include_str!("../../i18n/pt-BR.json")));

/// The cookie remembering the language chosen with the switch.
pub const LANG_COOKIE: &str = "porteiro-lang";

/// One language's messages.
#[derive(Debug, Clone, Copy)]
pub struct Messages {
    /// The language.
    pub locale: Locale,
    catalog: &'static Catalog,
}

impl Messages {
    /// The messages of `locale`.
    #[must_use]
    pub fn new(locale: Locale) -> Self {
        let catalog: &'static Catalog = match locale {
            Locale::En => &EN,
            Locale::PtBr => &PT_BR,
        };
        Self { locale, catalog }
    }

    /// The language chosen by the switch (cookie), else `Accept-Language`, else English.
    #[must_use]
    pub fn for_request(headers: &HeaderMap) -> Self {
        let chosen = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| cookie::Cookie::split_parse(v.to_owned()))
            .filter_map(Result::ok)
            .find(|c| c.name() == LANG_COOKIE)
            .map(|c| c.value().to_owned());
        let tag = chosen.or_else(|| {
            headers
                .get(ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        Self::new(Locale::negotiate(tag.as_deref().unwrap_or("en")))
    }

    /// The text of `key` (the key itself if missing, which the tests rule out).
    #[must_use]
    pub fn get<'a>(&self, key: &'a str) -> &'a str {
        self.catalog.get(key).map_or(key, String::as_str)
    }

    /// The text of `key` with each `{name}` replaced.
    #[must_use]
    pub fn fmt(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.get(key).to_owned();
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    /// The BCP 47 tag (`en`, `pt-BR`).
    #[must_use]
    pub fn tag(&self) -> &'static str {
        self.locale.tag()
    }

    /// The message for an error code, or the generic one.
    #[must_use]
    pub fn error(&self, code: &str) -> String {
        self.error_or(code, self.get("error.internal_error"))
    }

    /// The message for an error code, or `fallback` (the API's English text) without one.
    #[must_use]
    pub fn error_or(&self, code: &str, fallback: &str) -> String {
        let key = format!("error.{code}");
        self.catalog
            .get(&key)
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }

    /// How the account page describes an audit event type (`sign_in.succeeded` → key
    /// `event.sign_in_succeeded`); the type itself when there is no wording for it.
    #[must_use]
    pub fn event(&self, event_type: &str) -> String {
        let key = format!("event.{}", event_type.replace('.', "_"));
        self.catalog
            .get(&key)
            .cloned()
            .unwrap_or_else(|| event_type.to_owned())
    }
}

/// English success messages of the API (`api.message.*` entries of en.json), by their text.
static API_MESSAGES: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    EN.iter()
        .filter(|(key, _)| key.starts_with("api.message."))
        .map(|(key, text)| (text.as_str(), key.as_str()))
        .collect()
});

/// The message key of an English success message of the API, if it has one.
#[must_use]
pub fn api_message_key(english: &str) -> Option<&'static str> {
    API_MESSAGES.get(english).copied()
}

impl Messages {
    /// The text of `key`, if this language has it.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<&'static str> {
        self.catalog.get(key).map(String::as_str)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let mut en: Vec<_> = EN.keys().collect();
        let mut pt: Vec<_> = PT_BR.keys().collect();
        en.sort();
        pt.sort();
        assert_eq!(en, pt);
    }

    #[test]
    fn every_key_used_in_templates_and_code_exists() {
        let sources = [
            include_str!("../../templates/ui/base.html"),
            include_str!("../../templates/ui/login.html"),
            include_str!("../../templates/ui/register.html"),
            include_str!("../../templates/ui/forgot.html"),
            include_str!("../../templates/ui/reset.html"),
            include_str!("../../templates/ui/account.html"),
            include_str!("../../templates/ui/admin_users.html"),
            include_str!("../../templates/ui/admin_user.html"),
            include_str!("../../templates/ui/admin_roles.html"),
            include_str!("../../templates/ui/admin_role.html"),
            include_str!("../../templates/ui/admin_permission.html"),
            include_str!("../../templates/ui/admin_audit.html"),
            include_str!("../../templates/ui/message.html"),
            include_str!("../../templates/ui/password_fields.html"),
            include_str!("../../templates/ui/webhooks.html"),
            include_str!("../../templates/ui/webhooks_endpoint.html"),
            include_str!("../../templates/ui/webhooks_fields.html"),
            include_str!("../../templates/ui/webhooks_secret.html"),
            include_str!("../../templates/ui/verify.html"),
            include_str!("../../templates/ui/mfa.html"),
            include_str!("../../templates/ui/two_factor_setup.html"),
            include_str!("../../templates/ui/backup_codes.html"),
            include_str!("../../templates/ui/backup_codes_list.html"),
            include_str!("../../templates/ui/account_recovery_emails.html"),
            include_str!("../../templates/ui/recovery_email.html"),
            include_str!("mod.rs"),
            include_str!("pages.rs"),
            include_str!("account.rs"),
            include_str!("admin.rs"),
            include_str!("mfa.rs"),
            include_str!("webhooks.rs"),
            include_str!("verify_email.rs"),
            include_str!("recovery_emails.rs"),
            include_str!("../../templates/ui/not_me.html"),
            include_str!("not_me.rs"),
            include_str!("../../templates/ui/messages.html"),
            include_str!("../../templates/ui/messages_compose.html"),
            include_str!("../../templates/ui/messages_read.html"),
            include_str!("messages.rs"),
        ];
        let mut missing = Vec::new();
        for source in sources {
            for (i, _) in source.match_indices('"') {
                let rest = &source[i + 1..];
                let Some(end) = rest.find('"') else { continue };
                let candidate = &rest[..end];
                let is_key = candidate.split_once('.').is_some_and(|(ns, name)| {
                    [
                        "app",
                        "lang",
                        "nav",
                        "form",
                        "format",
                        "event",
                        "error",
                        "notice",
                        "login",
                        "register",
                        "strength",
                        "forgot",
                        "reset",
                        "account",
                        "admin",
                        "message",
                        "webhooks",
                        "mfa",
                        "twofactor",
                        "verify",
                        "recovery",
                        "history",
                        "not_me",
                        "messages",
                    ]
                    .contains(&ns)
                        && !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                if is_key && !EN.contains_key(candidate) {
                    missing.push(candidate.to_owned());
                }
            }
        }
        assert!(missing.is_empty(), "keys without a message: {missing:?}");
    }

    #[test]
    fn the_second_step_and_two_factor_errors_have_wording() {
        // The codes the API answers for the second step and two-factor changes (the UI shows
        // them through `Failure::from_error`, which falls back to the generic message).
        for code in [
            "invalid_mfa_token",
            "invalid_code",
            "invalid_code_format",
            "mfa_method_not_allowed",
            "mfa_already_enabled",
            "mfa_not_enabled",
            "mfa_setup_required",
            "mfa_required",
            "too_many_requests",
            "incorrect_password",
        ] {
            let key = format!("error.{code}");
            assert!(EN.contains_key(&key), "no English wording for {code}");
            assert!(PT_BR.contains_key(&key), "no Portuguese wording for {code}");
        }
        let pt = Messages::new(Locale::PtBr);
        assert_eq!(
            pt.fmt("error.too_many_requests", &[("seconds", "42")]),
            "🔒 Muitas tentativas. Tente novamente em 42 segundos."
        );
    }

    #[test]
    fn every_password_reason_and_hint_has_wording() {
        use porteiro_core::domain::password::{GuessHint, PasswordIssue};
        let issues = [
            PasswordIssue::TooShort,
            PasswordIssue::TooLong,
            PasswordIssue::TooLongForHash,
            PasswordIssue::NoLetter,
            PasswordIssue::NoDigit,
            PasswordIssue::Common,
            PasswordIssue::MatchesAccount,
        ]
        .into_iter()
        .chain(GuessHint::ALL.map(PasswordIssue::Guessable));
        for issue in issues {
            for code in std::iter::once(issue.code()).chain(issue.hint_code()) {
                let key = format!("error.{code}");
                assert!(EN.contains_key(&key), "no English wording for {code}");
                assert!(PT_BR.contains_key(&key), "no Portuguese wording for {code}");
            }
        }
    }

    #[test]
    fn the_switch_wins_over_accept_language() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_LANGUAGE, "pt-BR,pt;q=0.9".parse().unwrap());
        assert_eq!(Messages::for_request(&headers).tag(), "pt-BR");
        headers.insert(COOKIE, "porteiro-lang=en".parse().unwrap());
        assert_eq!(Messages::for_request(&headers).tag(), "en");
        let m = Messages::new(Locale::PtBr);
        assert_eq!(
            m.fmt("error.account_locked", &[("minutes", "5")]),
            "🔒 Muitas tentativas falhas. Conta bloqueada por 5 minutos"
        );
        assert_eq!(m.error("no_such_code"), m.get("error.internal_error"));
        assert_eq!(m.event("sign_in.succeeded"), "Login realizado");
        assert_eq!(m.event("made.up"), "made.up");
        for kind in porteiro_core::domain::audit::kind::ALL {
            let key = format!("event.{}", kind.replace('.', "_"));
            let admin_only = [
                "signing_key.rotated",
                "signing_key.retired",
                "server.started",
            ]
            .contains(kind)
                || kind.starts_with(porteiro_core::domain::webhook::NOT_FANNED_OUT_PREFIX);
            assert!(admin_only || EN.contains_key(&key), "no wording for {kind}");
        }
    }
}
