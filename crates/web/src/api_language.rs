//! API messages in the caller's language (PRODUCT.md §5, seed-004 drop-in).
//!
//! Handlers write the `message` of their JSON answers in English. For a caller whose language
//! is Brazilian Portuguese — the language switch's cookie, else `Accept-Language`, else
//! `DEFAULT_LANGUAGE` when the request names none — this layer rewrites that `message` from the
//! same message files as the hosted pages: an error's from `api.error.<code>`, else
//! `error.<code>`; a success message from the `api.message.*` entry whose English text it is.
//! Anything without wording stays English, and every answer says which it is in
//! `Content-Language`. English answers pass through untouched: no body is read. The hosted pages
//! (`/ui/…`) are left alone: they answer in the page's language themselves.

use std::sync::Arc;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT_LANGUAGE, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, RETRY_AFTER,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use porteiro_core::mail::Locale;
use serde_json::Value;

use crate::state::WebSettings;
use crate::ui::i18n::{Messages, api_message_key};

/// JSON answers larger than this are left as they are (no API message answer comes close).
const MAX_REWRITE: u64 = 64 * 1024;

/// The language of a request: the switch's cookie or `Accept-Language` when present (English
/// when they name neither language), else `default`.
#[must_use]
pub fn request_locale(headers: &HeaderMap, default: Locale) -> Locale {
    if headers.contains_key(ACCEPT_LANGUAGE) || headers.contains_key(COOKIE) {
        let chosen = Messages::for_request(headers).locale;
        // A cookie header without the language cookie and no Accept-Language names nothing.
        if headers.contains_key(ACCEPT_LANGUAGE) || chosen != Locale::En {
            return chosen;
        }
    }
    default
}

/// The layer: see the module documentation.
pub async fn localise(
    State(settings): State<Arc<WebSettings>>,
    request: Request,
    next: Next,
) -> Response {
    // The hosted pages' own JSON answers are already in the page's language.
    if request.uri().path().starts_with("/ui/") {
        return next.run(request).await;
    }
    let locale = request_locale(request.headers(), settings.default_language);
    let mut response = next.run(request).await;
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return response;
    }
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_REWRITE);
    if locale == Locale::En || !small {
        response
            .headers_mut()
            .insert(CONTENT_LANGUAGE, HeaderValue::from_static("en"));
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REWRITE as usize).await else {
        // The size was exact and within the limit; a body that fails to read has nothing left.
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let messages = Messages::new(locale);
    let rewritten = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|mut value| {
            let translated = translate(&value, &messages, &parts.headers)?;
            value["message"] = Value::String(translated);
            serde_json::to_vec(&value).ok()
        });
    let language = if rewritten.is_some() {
        locale.tag()
    } else {
        "en"
    };
    parts
        .headers
        .insert(CONTENT_LANGUAGE, HeaderValue::from_static(language));
    let body = match rewritten {
        Some(body) => {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            Body::from(body)
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// The `message` of `body` in `messages`' language, if there is wording for it.
fn translate(body: &Value, messages: &Messages, headers: &HeaderMap) -> Option<String> {
    let english = body.get("message")?.as_str()?;
    let text = if body.get("status").and_then(Value::as_str) == Some("error") {
        let code = body.get("code")?.as_str()?;
        messages
            .lookup(&format!("api.error.{code}"))
            .or_else(|| messages.lookup(&format!("error.{code}")))?
    } else {
        messages.lookup(api_message_key(english)?)?
    };
    // The pages' wording may open with a symbol (❌, ⚠️): an API message starts with its words.
    let mut text = text
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_owned();
    if text.contains("{seconds}") {
        let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?;
        text = text.replace("{seconds}", seconds);
    }
    // A placeholder this layer cannot fill: the English text is better than a hole.
    (!text.contains('{')).then_some(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_request_names_the_language_else_the_default_applies() {
        assert_eq!(request_locale(&headers(&[]), Locale::PtBr), Locale::PtBr);
        assert_eq!(request_locale(&headers(&[]), Locale::En), Locale::En);
        let en = headers(&[("accept-language", "en-GB,en;q=0.8")]);
        assert_eq!(request_locale(&en, Locale::PtBr), Locale::En);
        let pt = headers(&[("accept-language", "pt-BR,pt;q=0.9")]);
        assert_eq!(request_locale(&pt, Locale::En), Locale::PtBr);
        let unrelated_cookie = headers(&[("cookie", "a=b")]);
        assert_eq!(
            request_locale(&unrelated_cookie, Locale::PtBr),
            Locale::PtBr
        );
        let switch = headers(&[("cookie", "porteiro-lang=pt-BR")]);
        assert_eq!(request_locale(&switch, Locale::En), Locale::PtBr);
    }

    #[test]
    fn errors_and_success_messages_are_translated_from_the_message_files() {
        let pt = Messages::new(Locale::PtBr);
        let error = serde_json::json!({"status": "error", "code": "invalid_credentials", "message": "Email or password incorrect."});
        assert_eq!(
            translate(&error, &pt, &HeaderMap::new()).unwrap(),
            "Email ou senha incorretos"
        );
        let success = serde_json::json!({"status": "success", "message": "Password changed; other sessions were signed out.", "data": null});
        assert!(
            translate(&success, &pt, &HeaderMap::new())
                .unwrap()
                .starts_with("Senha alterada com sucesso")
        );
        let unknown =
            serde_json::json!({"status": "success", "message": "Something new.", "data": null});
        assert!(translate(&unknown, &pt, &HeaderMap::new()).is_none());
        let limited = serde_json::json!({"status": "error", "code": "too_many_requests", "message": "Too many requests; retry later."});
        assert!(translate(&limited, &pt, &HeaderMap::new()).is_some());
    }

    /// Every English success message a route writes has wording in both languages.
    #[test]
    fn every_api_success_message_has_wording() {
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes")).unwrap()
        {
            let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for literal in english_messages(&source) {
                if api_message_key(&literal).is_none() {
                    missing.push(literal);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add api.message.* entries for {missing:#?}"
        );
    }

    /// String literals handed to `ok_with` (directly, or on the next line) and `message:`
    /// fields, and constants whose name ends in `_MESSAGE`.
    fn english_messages(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            let literal = if let Some(rest) = t.split_once("ok_with(\"").map(|(_, r)| r) {
                Some(rest)
            } else if t.ends_with("ok_with(") {
                lines.get(i + 1).and_then(|n| n.trim().strip_prefix('"'))
            } else if t.contains("_MESSAGE: &str =") {
                t.split_once("= \"")
                    .map(|(_, r)| r)
                    .or_else(|| lines.get(i + 1).and_then(|n| n.trim().strip_prefix('"')))
            } else {
                t.strip_prefix("message: \"")
            };
            if let Some(rest) = literal
                && let Some((text, _)) = rest.split_once('"')
            {
                out.push(text.to_owned());
            }
        }
        out
    }
}
