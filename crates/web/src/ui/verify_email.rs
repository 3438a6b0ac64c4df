//! `/ui/verify-email`: the page the address-confirmation mail links to, and the resend form.
//!
//! Opening the link changes nothing — mail scanners and link previews follow links — so the page
//! only shows a button; the form it posts (with the CSRF token) confirms. The resend form gives
//! the same answer for every well-formed address.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use porteiro_core::Error;
use porteiro_core::flows::email_confirmation::confirmation_token_shaped;
use serde::Deserialize;

use super::pages::notice;
use super::{Chrome, Failure, Messages, Ui, email_format_ok, html};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "ui/verify.html")]
struct VerifyPage {
    c: Chrome,
    t: Messages,
    /// A token as it may appear in a link, else empty (no confirm button).
    token: String,
    /// Why confirming failed (or why the link is no good).
    error: Option<String>,
    notice: Option<String>,
    email: String,
    resend_error: Option<String>,
    field: &'static str,
}

impl VerifyPage {
    fn new(s: &AppState, ui: &Ui, headers: &mut HeaderMap) -> Self {
        Self {
            c: ui.chrome(s, headers, None, "verify"),
            t: ui.t,
            token: String::new(),
            error: None,
            notice: None,
            email: String::new(),
            resend_error: None,
            field: "",
        }
    }
}

/// A token as it may appear in a link, else nothing.
fn plausible_token(token: Option<&str>) -> String {
    token
        .map(str::trim)
        .filter(|t| confirmation_token_shaped(t))
        .unwrap_or_default()
        .to_owned()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct VerifyQuery {
    token: Option<String>,
    notice: Option<String>,
}

/// `GET /ui/verify-email[?token=…]`: a confirm button for a link's token, and the resend form.
pub(super) async fn page(
    State(s): State<AppState>,
    Query(q): Query<VerifyQuery>,
    ui: Ui,
) -> Response {
    let mut headers = HeaderMap::new();
    let mut page = VerifyPage::new(&s, &ui, &mut headers);
    page.token = plausible_token(q.token.as_deref());
    if page.token.is_empty() && q.token.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        page.error = Some(ui.t.error("invalid_confirmation_token"));
    }
    page.notice = notice(ui.t, q.notice.as_deref());
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/verify-email`: confirms the address; on to the account when signed in, else to
/// sign-in.
pub(super) async fn confirm(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let token = plausible_token(Some(&form.token));
    let outcome = if !ui.csrf_ok(&s, &form.csrf_token) {
        Err(Failure::csrf(ui.t))
    } else {
        s.email_confirmation
            .confirm(&token)
            .await
            .map_err(|e| Failure::from_error(ui.t, &e))
    };
    match outcome {
        Ok(user) => {
            s.auth.profile_changed(user.id).await;
            let to = if ui.principal(&s).await.is_some() {
                "/ui/account?notice=email_confirmed"
            } else {
                "/ui/login?notice=email_confirmed"
            };
            ui.done(HeaderMap::new(), to)
        }
        Err(f) if ui.wants_json => ui.json_failure(&f, HeaderMap::new()),
        Err(f) => {
            let mut headers = HeaderMap::new();
            let mut page = VerifyPage::new(&s, &ui, &mut headers);
            // A spent or expired token gets no second button: only the resend form.
            if f.code == "csrf_failed" {
                page.token = token;
            }
            page.error = Some(f.message);
            html(f.status, headers, &page)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ResendForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// `POST /ui/verify-email/resend`: the same answer for every well-formed address.
pub(super) async fn resend(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ResendForm>,
) -> Response {
    let email = form.email.trim().to_owned();
    let failure = if !ui.csrf_ok(&s, &form.csrf_token) {
        Some(Failure::csrf(ui.t))
    } else if !email_format_ok(&email) {
        Some(Failure::new(ui.t, StatusCode::BAD_REQUEST, "invalid_email").on("email"))
    } else {
        s.email_confirmation
            .resend(&email)
            .err()
            .map(|e: Error| Failure::from_error(ui.t, &e))
    };
    match failure {
        None => ui.done(
            HeaderMap::new(),
            "/ui/verify-email?notice=confirmation_sent",
        ),
        Some(f) if ui.wants_json => ui.json_failure(&f, HeaderMap::new()),
        Some(f) => {
            let mut headers = HeaderMap::new();
            let mut page = VerifyPage::new(&s, &ui, &mut headers);
            page.email = email;
            page.field = f.field.unwrap_or("");
            page.resend_error = Some(f.message);
            html(f.status, headers, &page)
        }
    }
}
