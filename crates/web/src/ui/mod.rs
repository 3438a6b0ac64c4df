//! The hosted web UI (seed 003): server-rendered pages under `/ui/`, embedded in the binary.
//!
//! Every page works without JavaScript: forms post to the server, which answers with a `303`
//! redirect or the page again with the error. `porteiro.js` enhances them: it checks the email
//! format and the password rules before submitting, runs the live strength meter, trims inputs,
//! and submits with `fetch` (`Accept: application/json`) so it can show a loading state and keep
//! the page; the same handlers then answer JSON (`{"status", "redirect" | "code", "message"}`).
//!
//! Security: the CSP allows only this origin's script and style (no inline code); every form
//! carries the signed CSRF token of [`porteiro_core::Auth::csrf_token`], checked against the
//! CSRF cookie and the session; the session is the API's cookie session (listed among devices,
//! revocable). Messages are generic where the API's are, and the lock message repeats only what
//! this browser did (see [`porteiro_core::flows::browser::AttemptState`]).

mod account;
mod admin;
pub mod i18n;
mod messages;
mod mfa;
mod not_me;
mod pages;
mod recovery_emails;
mod verify_email;
mod webhooks;

use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use porteiro_core::Error;
use porteiro_core::service::Principal;
use serde_json::json;

use crate::cookies::{CSRF, SESSION};
use crate::state::AppState;
pub use i18n::Messages;

/// The UI's Content-Security-Policy: this origin's script, style and `fetch` only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] plus `data:` images, for the one answer that carries an inline QR code (the
/// authenticator-app setup). Only that response gets it: the rest of the UI has no use for it.
pub const CSP_DATA_IMAGES: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

const CSS: &str = include_str!("../../static/porteiro.css");
const JS: &str = include_str!("../../static/porteiro.js");

/// Changes whenever an asset does, so browsers may cache them for long.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    porteiro_core::crypto::token_hash(&format!("{CSS}{JS}"))
        .chars()
        .take(12)
        .collect()
});

/// The UI routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::index))
        .route("/ui/", get(pages::index))
        .route("/ui/assets/porteiro.css", get(css))
        .route("/ui/assets/porteiro.js", get(js))
        .route("/ui/lang/{tag}", get(pages::language))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route(
            "/ui/register",
            get(pages::register_page).post(pages::register),
        )
        .route(
            "/ui/forgot-password",
            get(pages::forgot_page).post(pages::forgot),
        )
        .route(
            "/ui/reset-password",
            get(pages::reset_page).post(pages::reset),
        )
        .route(
            "/ui/verify-email",
            get(verify_email::page).post(verify_email::confirm),
        )
        .route(
            "/ui/verify-email/resend",
            axum::routing::post(verify_email::resend),
        )
        .route("/ui/not-me", get(not_me::page).post(not_me::confirm))
        .route("/ui/logout", axum::routing::post(pages::logout))
        .route("/ui/mfa", get(mfa::page).post(mfa::verify))
        .route("/ui/mfa/resend", axum::routing::post(mfa::resend))
        .route("/ui/account", get(account::account_page))
        .route(
            "/ui/account/recovery-emails",
            axum::routing::post(recovery_emails::add),
        )
        .route(
            "/ui/account/recovery-emails/{id}/resend",
            axum::routing::post(recovery_emails::resend),
        )
        .route(
            "/ui/account/recovery-emails/{id}/remove",
            axum::routing::post(recovery_emails::remove),
        )
        .route(
            "/ui/recovery-email",
            get(recovery_emails::page).post(recovery_emails::confirm),
        )
        .route(
            "/ui/account/profile",
            axum::routing::post(account::save_profile),
        )
        .route(
            "/ui/account/login-alerts",
            axum::routing::post(account::save_login_alerts),
        )
        .route(
            "/ui/account/password",
            axum::routing::post(account::change_password),
        )
        .route(
            "/ui/account/sessions/{id}/revoke",
            axum::routing::post(account::revoke_session),
        )
        .route(
            "/ui/account/security-questions",
            axum::routing::post(account::questions::set_answer),
        )
        .route(
            "/ui/account/security-questions/remove",
            axum::routing::post(account::questions::remove_answers),
        )
        .route(
            "/ui/account/2fa/setup",
            axum::routing::post(account::two_factor_setup),
        )
        .route(
            "/ui/account/2fa/enable",
            axum::routing::post(account::two_factor_enable),
        )
        .route(
            "/ui/account/2fa/disable",
            axum::routing::post(account::two_factor_disable),
        )
        .route(
            "/ui/account/2fa/backup-codes",
            axum::routing::post(account::two_factor_backup_codes),
        )
        .route(
            "/ui/messages",
            get(messages::folder_page).post(messages::send),
        )
        .route("/ui/messages/new", get(messages::compose_page))
        .route("/ui/messages/{id}", get(messages::read_page))
        .route(
            "/ui/messages/{id}/delete",
            axum::routing::post(messages::delete),
        )
        .route(
            "/ui/account/accept-messages",
            axum::routing::post(messages::save_accept_messages),
        )
        .route("/ui/admin", get(admin::users_page))
        .route("/ui/admin/users/{id}", get(admin::user_page))
        .route(
            "/ui/admin/users/{id}/{action}",
            axum::routing::post(admin::user_action),
        )
        .route(
            "/ui/admin/roles",
            get(admin::roles_page).post(admin::create_role),
        )
        .route(
            "/ui/admin/roles/{id}",
            get(admin::role_page).post(admin::update_role),
        )
        .route(
            "/ui/admin/roles/{id}/{action}",
            axum::routing::post(admin::role_action),
        )
        .route(
            "/ui/admin/permissions",
            get(admin::permissions_anchor).post(admin::create_permission),
        )
        .route(
            "/ui/admin/permissions/{id}",
            get(admin::permission_page).post(admin::update_permission),
        )
        .route(
            "/ui/admin/permissions/{id}/delete",
            axum::routing::post(admin::delete_permission),
        )
        .route("/ui/admin/audit", get(admin::audit_page))
        .route("/ui/admin/audit.csv", get(admin::audit_csv))
        .route(
            "/ui/admin/webhooks",
            get(webhooks::list_page).post(webhooks::create),
        )
        .route(
            "/ui/admin/webhooks/{id}",
            get(webhooks::endpoint_page).post(webhooks::update),
        )
        .route(
            "/ui/admin/webhooks/{id}/test",
            axum::routing::post(webhooks::send_test),
        )
        .route(
            "/ui/admin/webhooks/{id}/rotate-secret",
            axum::routing::post(webhooks::rotate_secret),
        )
        .route(
            "/ui/admin/webhooks/{id}/delete",
            axum::routing::post(webhooks::delete),
        )
        .route(
            "/ui/admin/webhooks/{id}/replay",
            axum::routing::post(webhooks::replay),
        )
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::map_response(ui_headers))
}

/// Every UI answer gets [`CSP`], unless its handler chose [`CSP_DATA_IMAGES`].
async fn ui_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let chosen = headers
        .get(CONTENT_SECURITY_POLICY)
        .is_some_and(|v| v.as_bytes() == CSP_DATA_IMAGES.as_bytes());
    if !chosen {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=604800, immutable"),
    );
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The signed-in user, as the page header needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NavUser {
    /// May open the console's users pages (holds `users:read`).
    pub console: bool,
    /// May open the roles and permissions pages (see [`admin::sees_roles`]).
    pub roles: bool,
    /// May read the audit log (holds `audit:read`).
    pub audit: bool,
    /// May manage webhooks (holds `webhooks:manage`).
    pub webhooks: bool,
}

/// What every page's frame (header, language switch, forms) needs.
#[derive(Debug)]
pub(crate) struct Chrome {
    /// The CSRF token for this page's forms.
    pub csrf: String,
    /// This page's path and query, URL-encoded, for the language switch to come back to.
    pub here: String,
    pub user: Option<NavUser>,
    /// Which navigation entry is current.
    pub section: &'static str,
    pub asset_version: &'static str,
}

/// A UI request: its language, cookies and whether the caller is the enhanced (JSON) form.
#[derive(Debug)]
pub(crate) struct Ui {
    pub t: Messages,
    pub headers: HeaderMap,
    /// The raw session cookie, if any.
    pub session: Option<String>,
    /// Sent by `porteiro.js`: answer JSON instead of a page.
    pub wants_json: bool,
    path_and_query: String,
    state: AppState,
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let wants_json = wants_json(&parts.headers);
        Ok(Self {
            t: Messages::for_request(&parts.headers),
            session: state.settings.cookies.read(&parts.headers, SESSION),
            headers: parts.headers.clone(),
            wants_json,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/ui/".to_owned(), ToString::to_string),
            state: state.clone(),
        })
    }
}

impl Ui {
    /// The page frame; issues a CSRF cookie into `out` unless the browser holds a valid one.
    pub fn chrome(
        &self,
        s: &AppState,
        out: &mut HeaderMap,
        user: Option<NavUser>,
        section: &'static str,
    ) -> Chrome {
        let cookies = s.settings.cookies;
        let existing = cookies
            .read(&self.headers, CSRF)
            .filter(|c| s.auth.csrf_valid(Some(c), Some(c), self.session.as_deref()));
        let csrf = existing.unwrap_or_else(|| {
            let token = s.auth.csrf_token(self.session.as_deref());
            cookies.set(out, CSRF, &token, None);
            token
        });
        Chrome {
            csrf,
            here: url::form_urlencoded::byte_serialize(self.path_and_query.as_bytes()).collect(),
            user,
            section,
            asset_version: ASSET_VERSION.as_str(),
        }
    }

    /// Whether a form's CSRF token matches the cookie and this browser's session.
    pub fn csrf_ok(&self, s: &AppState, presented: &str) -> bool {
        let cookie = s.settings.cookies.read(&self.headers, CSRF);
        s.auth
            .csrf_valid(cookie.as_deref(), Some(presented), self.session.as_deref())
    }

    /// The signed-in caller, if the session cookie is live.
    pub async fn principal(&self, s: &AppState) -> Option<Principal> {
        let cookie = self.session.as_deref()?;
        s.auth.authenticate_cookie(cookie).await.ok()
    }

    /// Where to send a visitor who is not signed in.
    pub fn to_login(&self) -> Response {
        let to = if self.session.is_some() {
            "/ui/login?notice=session_ended"
        } else {
            "/ui/login"
        };
        redirect(HeaderMap::new(), to)
    }

    /// Success: `303` to `to`, or `{"status":"success","redirect":to}` for the enhanced form.
    pub fn done(&self, headers: HeaderMap, to: &str) -> Response {
        if self.wants_json {
            let mut response =
                axum::Json(json!({"status": "success", "redirect": to})).into_response();
            response.headers_mut().extend(headers);
            response
        } else {
            redirect(headers, to)
        }
    }

    /// The JSON answer of a failed enhanced form. A CSRF failure carries a token that works
    /// (and its cookie), so the page can retry without reloading: its own token went stale when
    /// another tab or a cross-site visit replaced the cookie.
    pub fn json_failure(&self, failure: &Failure, mut headers: HeaderMap) -> Response {
        let mut body = json!({
            "status": "error",
            "code": failure.code,
            "message": failure.message,
            "field": failure.field,
        });
        if failure.code == "csrf_failed" {
            let c = self.chrome(&self.state, &mut headers, None, "");
            body["csrf_token"] = json!(c.csrf);
        }
        let mut response = (failure.status, axum::Json(body)).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

/// Whether the caller is the enhanced form (`porteiro.js` sends `Accept: application/json`).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The rate limiter's `429` for a UI path, in the visitor's language: the JSON answer for the
/// enhanced form, else a page. Runs before any handler, so it needs no state.
pub(crate) fn too_many_requests(headers: &HeaderMap, wait: std::time::Duration) -> Response {
    let secs = crate::guard::retry_after_secs(wait);
    let t = Messages::for_request(headers);
    let text = t.fmt("error.too_many_requests", &[("seconds", &secs.to_string())]);
    let mut response = if wants_json(headers) {
        let body = json!({"status": "error", "code": "too_many_requests", "message": text});
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    } else {
        let c = Chrome {
            csrf: String::new(),
            here: url::form_urlencoded::byte_serialize(b"/ui/login").collect(),
            user: None,
            section: "",
            asset_version: ASSET_VERSION.as_str(),
        };
        let page = pages::MessagePage {
            c,
            t,
            message: text,
        };
        html(StatusCode::TOO_MANY_REQUESTS, HeaderMap::new(), &page)
    };
    let headers = response.headers_mut();
    headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

/// A `303 See Other` to a path of this UI.
pub(crate) fn redirect(mut headers: HeaderMap, to: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, v);
    }
    (StatusCode::SEE_OTHER, headers).into_response()
}

/// Renders a page as HTML with `status` and extra headers.
pub(crate) fn html(status: StatusCode, headers: HeaderMap, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (status, headers, body).into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "UI template failed to render");
            crate::error::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong.",
            )
        }
    }
}

/// A failed form, ready for either rendering.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

impl Failure {
    pub fn new(t: Messages, status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            message: t.error(code),
            field: None,
        }
    }

    pub fn on(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    pub fn csrf(t: Messages) -> Self {
        Self::new(t, StatusCode::FORBIDDEN, "csrf_failed")
    }

    /// A domain error in the user's language: the API's status and code, a friendly message.
    pub fn from_error(t: Messages, err: &Error) -> Self {
        if let Error::Internal(cause) = err {
            tracing::error!(error = ?cause, "internal error");
        }
        let mapped = crate::error::map(err);
        let message = match err {
            Error::WeakPassword(issues) => issues
                .iter()
                .flat_map(|i| std::iter::once(i.code()).chain(i.hint_code()))
                .map(|code| t.error(code))
                .collect::<Vec<_>>()
                .join(" "),
            Error::Validation(_) => t.error_or(mapped.code, &mapped.message),
            Error::RateLimited { retry_after_secs } => t.fmt(
                "error.too_many_requests",
                &[("seconds", &retry_after_secs.to_string())],
            ),
            _ => t.error(mapped.code),
        };
        Self {
            status: mapped.status,
            code: mapped.code,
            message,
            field: mapped.field,
        }
    }
}

/// The seed-003 email check (`^[^\s@]+@[^\s@]+\.[^\s@]+$`), as `porteiro.js` applies it.
pub(crate) fn email_format_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let plain = |p: &str| !p.is_empty() && !p.chars().any(|c| c == '@' || c.is_whitespace());
    plain(local)
        && plain(domain)
        && domain
            .char_indices()
            .any(|(i, c)| c == '.' && i > 0 && i + 1 < domain.len())
}

#[cfg(test)]
mod tests {
    use super::email_format_ok;

    #[test]
    fn seed_003_email_rule() {
        for ok in ["ana@example.com", "a.b@c.d", "x@y.z.w"] {
            assert!(email_format_ok(ok), "{ok}");
        }
        for bad in [
            "teste@", "teste", "@x.y", "a@b", "a@.b", "a@b.", "a b@c.d", "a@b@c.d",
        ] {
            assert!(!email_format_ok(bad), "{bad}");
        }
    }
}
