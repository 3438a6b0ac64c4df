//! Request ids, the request's tracing span, response hardening applied to every request, and
//! the reading of request bodies before the rest of the stack runs.
//!
//! Request ids are always ours: a client's `x-request-id` is taken out of the request before the
//! id layer runs, so the id in the response and in every log line of the request is one the
//! server generated. The client's value survives only as [`ClientRequestId`], capped at
//! [`CLIENT_REQUEST_ID_MAX`] bytes. Values a client chose (its id, the path) are recorded as
//! strings, which the log formatters quote and escape (text) or encode (JSON): they cannot start
//! a line or a field of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

use crate::MAX_BODY_BYTES;
use crate::error::error_response;
use crate::state::WebSettings;

/// The most bytes of a client's `x-request-id` kept (and logged).
pub const CLIENT_REQUEST_ID_MAX: usize = 64;

/// The `x-request-id` a client sent, truncated to [`CLIENT_REQUEST_ID_MAX`] bytes, every byte
/// outside printable ASCII written as `\xNN` (so neither format of the log carries a control,
/// bidi or line-separator character a client chose). A request extension; only ever logged as
/// a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequestId(pub String);

/// Moves a client's `x-request-id` out of the headers into a [`ClientRequestId`] extension, so
/// the id layer after it always generates the request's id.
pub fn take_client_request_id<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    if let Some(value) = req.headers_mut().remove(X_REQUEST_ID) {
        let bytes = value.as_bytes();
        let kept = &bytes[..bytes.len().min(CLIENT_REQUEST_ID_MAX)];
        let id = ClientRequestId(kept.escape_ascii().to_string());
        req.extensions_mut().insert(id);
    }
    req
}

const X_REQUEST_ID: &str = "x-request-id";

/// Request ids: a random prefix chosen at start-up followed by a counter, as 32 hex digits. They
/// only need to be unique (they are not secrets), so this spares a `getrandom` call per request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    /// A new sequence with a random prefix.
    #[must_use]
    pub fn new() -> Self {
        Self {
            prefix: u64::from_le_bytes(porteiro_core::crypto::random_bytes::<8>()),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{:016x}{n:016x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The tracing span of a request, carrying its (server-generated) `x-request-id` and, apart,
/// the client's. Query strings are not logged (they could carry a token a client put there by
/// mistake). The path and the client's id are recorded as `&str`, not with `%`: formatters
/// quote and escape string values, while `%` would write a client's bytes out raw.
pub fn request_span(req: &axum::http::Request<Body>) -> Span {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let client_id = req
        .extensions()
        .get::<ClientRequestId>()
        .map(|c| c.0.as_str());
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = req.uri().path(),
        request_id = id,
        client_request_id = client_id,
    )
}

/// Reads the body of a request that has one (a `Content-Length` above zero, or chunked) into
/// memory, up to [`MAX_BODY_BYTES`], before the guard or a handler sees the request.
///
/// Why: a route that refuses a request before reading its body (`401`, `403 csrf_failed`,
/// `429`) would leave the body on the connection, and hyper then closes a keep-alive
/// connection without saying so; a pooled client sometimes sends its next request on it and
/// fails. Once the body is read, the connection stays usable whatever the answer. Requests
/// without a body pass straight through, at the cost of one check.
///
/// A body over the limit gets `413`, and an unreadable one (broken chunking, the client gone)
/// `400`; both with `Connection: close` on HTTP/1, since the rest of the body is still unread.
///
/// # Errors
/// The response to send instead of running the request.
pub async fn buffer_body(
    req: Request,
    settings: &WebSettings,
) -> Result<(Request, Option<crate::body_budget::Reservation>), Response> {
    if req.body().is_end_stream() {
        return Ok((req, None));
    }
    let version = req.version();
    let declared = req.body().size_hint().exact();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large(version));
    }
    // Reserve the body's memory first (its declared size, else the limit): see `body_budget`.
    let reservation = match crate::guard::client_ip::peer(req.extensions()) {
        Some(peer) => {
            let client = settings.trusted_proxies.resolve(peer, req.headers());
            let bytes = declared.map_or(MAX_BODY_BYTES, |n| {
                usize::try_from(n).unwrap_or(MAX_BODY_BYTES)
            });
            match settings.body_budget.reserve(client, bytes.max(1)) {
                Some(r) => Some(r),
                None => return Err(busy(version)),
            }
        }
        None => None,
    };
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok((
            Request::from_parts(parts, Body::from(collected.to_bytes())),
            reservation,
        )),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large(version)),
        Err(_) => Err(closing(
            version,
            error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "The request body could not be read.",
            ),
        )),
    }
}

/// `503` with `Retry-After`: the memory for request bodies (or this client's share) is in use.
fn busy(version: Version) -> Response {
    let mut response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "Too many requests with bodies are in progress. Try again shortly.",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    closing(version, response)
}

fn too_large(version: Version) -> Response {
    closing(
        version,
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body exceeds 64 KiB.",
        ),
    )
}

/// Adds `Connection: close` on HTTP/1 (HTTP/2 has no such header: hyper would drop it).
fn closing(version: Version, mut response: Response) -> Response {
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads the request body ([`buffer_body`]) and runs the request, both within the request
/// timeout; envelopes bare error statuses (not the UI's HTML pages), and sets `Cache-Control:
/// no-store` (unless a route chose otherwise) and security headers on every response: a CSP
/// without inline script, `nosniff`, `X-Frame-Options: DENY` and `frame-ancestors 'none'`,
/// `Referrer-Policy: no-referrer`, `Cross-Origin-Opener-Policy`, and HSTS when serving TLS.
pub async fn harden(
    State(settings): State<Arc<WebSettings>>,
    req: Request,
    next: Next,
) -> Response {
    let version = req.version();
    let body_settings: &WebSettings = &settings;
    let work = async move {
        match buffer_body(req, body_settings).await {
            Ok((req, reservation)) => {
                let response = next.run(req).await;
                drop(reservation);
                response
            }
            Err(refusal) => refusal,
        }
    };
    let mut response = match tokio::time::timeout(settings.request_timeout, work).await {
        Ok(response) => response,
        // The body may be partly unread: the connection cannot be reused.
        Err(_) => closing(
            version,
            error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request took too long.",
            ),
        ),
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_json && !is_html {
        // Errors raised below the handlers (body limit, method routing) come as bare text.
        let (code, message) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ("payload_too_large", "The request body exceeds 64 KiB.")
            }
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This route does not accept that method.",
            ),
            StatusCode::NOT_FOUND => ("not_found", "No such route."),
            s if s.is_server_error() => ("internal_error", "Something went wrong."),
            _ => ("bad_request", "The request could not be processed."),
        };
        let mut replacement = error_response(status, code, message);
        for (name, value) in response.headers() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                replacement
                    .headers_mut()
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        response = replacement;
    }
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        // The CORS layer adds some headers (credentials, methods on preflight) whatever the
        // origin; a refused origin gets none at all.
        let cors: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            headers.remove(name);
        }
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if settings.tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{HeaderValue, Request};
    use tower_http::request_id::MakeRequestId as _;

    use super::{
        CLIENT_REQUEST_ID_MAX, ClientRequestId, RequestIds, request_span, take_client_request_id,
    };

    /// Everything a text-format subscriber writes, for one closure.
    fn text_log_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("UTF-8 log")
    }

    /// A request as the id layer leaves it: the client's id set aside, ours in the header.
    fn received(client_id: &[u8]) -> Request<Body> {
        let mut req = Request::builder()
            .uri("/api/health")
            .header(
                "x-request-id",
                HeaderValue::from_bytes(client_id).expect("header value"),
            )
            .body(Body::empty())
            .expect("request");
        req = take_client_request_id(req);
        assert!(
            req.headers().get("x-request-id").is_none(),
            "the client's id is removed"
        );
        let ours = RequestIds::new()
            .make_request_id(&req)
            .expect("id")
            .into_header_value();
        req.headers_mut().insert("x-request-id", ours);
        req
    }

    #[test]
    fn every_committed_security_event_is_logged_with_its_request_id() {
        // Arrange
        let req = received(b"client-1");
        let event = porteiro_core::flows::audit::new_event(
            chrono::Utc::now(),
            porteiro_core::domain::audit::kind::USER_REGISTERED,
            porteiro_core::domain::Outcome::Success,
            Some(uuid::Uuid::nil()),
            None,
            serde_json::json!({"is_admin": false}),
        );
        // Act
        let log = text_log_of(|| {
            let span = request_span(&req);
            let _entered = span.enter();
            porteiro_core::flows::audit::committed(std::slice::from_ref(&event));
        });
        // Assert: one info line naming the event, inside the request's span (its id).
        let ours = req.headers()["x-request-id"].to_str().expect("ascii");
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("INFO"), "{log}");
        assert!(log.contains(r#"event_type="user.registered""#), "{log}");
        assert!(log.contains(&format!("request_id=\"{ours}\"")), "{log}");
    }

    #[test]
    fn a_client_request_id_cannot_forge_log_fields_or_lines() {
        // Arrange: spaces and `key=value` pairs, the way to forge fields in a text log line,
        // and bytes that are not UTF-8.
        let req = received(b"abc request_id=forged level=ERROR message=\"pwned\" \xff");
        // Act
        let log = text_log_of(|| {
            let span = request_span(&req);
            let _entered = span.enter();
            tracing::info!("handled");
        });
        // Assert: one line; the client's value is one quoted field, apart from our id.
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains(
                r#"client_request_id="abc request_id=forged level=ERROR message=\\\"pwned\\\" \\xff""#
            ),
            "{log}"
        );
        let ours = req.headers()["x-request-id"].to_str().expect("ascii");
        assert!(log.contains(&format!("request_id=\"{ours}\"")), "{log}");
        assert!(log.contains(r#"path="/api/health""#), "{log}");
    }

    #[test]
    fn a_client_request_id_keeps_no_character_outside_printable_ascii() {
        // A line separator and a right-to-left override would be kept raw inside a JSON string.
        let req = received("a\u{2028}b\u{202e}c".as_bytes());
        let kept = req
            .extensions()
            .get::<ClientRequestId>()
            .expect("kept aside");
        assert_eq!(kept.0, r"a\xe2\x80\xa8b\xe2\x80\xaec");
        assert!(kept.0.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    }

    #[test]
    fn a_client_request_id_is_capped() {
        let req = received("x".repeat(10_000).as_bytes());
        let kept = req
            .extensions()
            .get::<ClientRequestId>()
            .expect("kept aside");
        assert_eq!(kept.0, "x".repeat(CLIENT_REQUEST_ID_MAX));
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_distinct() {
        let mut ids = RequestIds::new();
        let req = axum::http::Request::new(());
        let a = ids.make_request_id(&req).expect("id");
        let b = ids.make_request_id(&req).expect("id");
        let (a, b) = (
            a.header_value().to_str().expect("ascii"),
            b.header_value().to_str().expect("ascii"),
        );
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_eq!(a[..16], b[..16], "same process prefix");
        assert!(b.ends_with('1'));
    }
}
