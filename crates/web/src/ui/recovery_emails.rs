//! Recovery addresses in the hosted UI: the section of the account page (list, add, send the
//! link again, remove — plain forms with the CSRF token, working without JavaScript) and
//! `/ui/recovery-email`, the page the verification mail links to.
//!
//! Like `/ui/verify-email`, opening the link changes nothing — mail scanners and link previews
//! follow links — so the page only shows a button; the form it posts (with the CSRF token)
//! verifies. It needs no sign-in: the mailbox may be read on a device where nobody is signed in,
//! and the token alone proves it is read.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use porteiro_core::Error;
use porteiro_core::domain::recovery_email::RecoveryEmail;
use porteiro_core::flows::recovery_emails::verification_token_shaped;
use serde::Deserialize;
use uuid::Uuid;

use super::account::{Section, account_outcome, day, form_caller};
use super::pages::{CsrfForm, nav};
use super::{Chrome, Failure, Messages, Ui, html};
use crate::state::AppState;

/// A recovery address as the account page lists it.
pub(super) struct RecoveryRow {
    pub id: Uuid,
    pub email: String,
    pub verified: bool,
    /// When it was verified (shown, `datetime`).
    pub verified_on: Option<(String, String)>,
}

impl RecoveryRow {
    pub(super) fn new(t: Messages, a: RecoveryEmail) -> Self {
        Self {
            id: a.id,
            verified: a.is_verified(),
            verified_on: a.verified_at.map(|at| day(t, at)),
            email: a.email,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// `POST /ui/account/recovery-emails`: adds an address.
pub(super) async fn add(State(s): State<AppState>, ui: Ui, Form(form): Form<AddForm>) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = s.recovery_emails.add(&p, &form.email).await.map(|_| ());
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::RecoveryEmails,
        "recovery_email_added",
    )
    .await
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::NotFound)
}

/// `POST /ui/account/recovery-emails/{id}/resend`: a new link to an unverified address.
pub(super) async fn resend(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<CsrfForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match parse_id(&id) {
        Ok(id) => s.recovery_emails.resend(&p, id).await.map(|_| ()),
        Err(e) => Err(e),
    };
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::RecoveryEmails,
        "recovery_email_sent",
    )
    .await
}

/// `POST /ui/account/recovery-emails/{id}/remove`.
pub(super) async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<CsrfForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match parse_id(&id) {
        Ok(id) => s.recovery_emails.remove(&p, id).await,
        Err(e) => Err(e),
    };
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::RecoveryEmails,
        "recovery_email_removed",
    )
    .await
}

#[derive(Template)]
#[template(path = "ui/recovery_email.html")]
struct VerifyPage {
    c: Chrome,
    t: Messages,
    /// A token as it may appear in a link, else empty (no button).
    token: String,
    error: Option<String>,
}

/// A token as it may appear in a link, else nothing.
fn plausible_token(token: Option<&str>) -> String {
    token
        .map(str::trim)
        .filter(|t| verification_token_shaped(t))
        .unwrap_or_default()
        .to_owned()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct VerifyQuery {
    token: Option<String>,
}

async fn verify_page(
    s: &AppState,
    ui: &Ui,
    token: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let mut headers = HeaderMap::new();
    let user = ui.principal(s).await;
    let page = VerifyPage {
        c: ui.chrome(s, &mut headers, user.as_ref().and_then(nav), "account"),
        t: ui.t,
        token,
        error,
    };
    html(status, headers, &page)
}

/// `GET /ui/recovery-email?token=…`: a button that verifies (nothing changes on `GET`).
pub(super) async fn page(
    State(s): State<AppState>,
    Query(q): Query<VerifyQuery>,
    ui: Ui,
) -> Response {
    let token = plausible_token(q.token.as_deref());
    let error = token
        .is_empty()
        .then(|| ui.t.error("invalid_confirmation_token"));
    verify_page(&s, &ui, token, error, StatusCode::OK).await
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/recovery-email`: verifies; on to the account when signed in, else to sign-in.
pub(super) async fn confirm(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<VerifyForm>,
) -> Response {
    let token = plausible_token(Some(&form.token));
    let outcome = if ui.csrf_ok(&s, &form.csrf_token) {
        s.recovery_emails
            .verify(&token, None)
            .await
            .map_err(|e| Failure::from_error(ui.t, &e))
    } else {
        Err(Failure::csrf(ui.t))
    };
    match outcome {
        Ok(_) => {
            let to = if ui.principal(&s).await.is_some() {
                "/ui/account?notice=recovery_email_verified"
            } else {
                "/ui/login?notice=recovery_email_verified"
            };
            ui.done(HeaderMap::new(), to)
        }
        Err(f) if ui.wants_json => ui.json_failure(&f, HeaderMap::new()),
        Err(f) => {
            // A spent or expired token gets no second button.
            let token = if f.code == "csrf_failed" {
                token
            } else {
                String::new()
            };
            verify_page(&s, &ui, token, Some(f.message), f.status).await
        }
    }
}
