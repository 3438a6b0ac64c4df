//! `/ui/not-me`: the "this wasn't me" page a new-device alert links to.
//!
//! Opening the link changes nothing — mail scanners and link previews follow links — so `GET`
//! only shows what confirming does and a button; the form `POST`s the token. The single-use
//! token is the capability (no sign-in needed); the form still carries the CSRF token of the
//! unauthenticated forms (signed double submit), so another site cannot post it. A used,
//! expired or unknown link gets the same page saying so, and changes nothing.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use porteiro_core::flows::sign_in_alerts::alert_token_shaped;
use serde::Deserialize;

use super::{Chrome, Failure, Messages, Ui, html};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "ui/not_me.html")]
struct NotMePage {
    c: Chrome,
    t: Messages,
    /// The live link's token, else empty (no button).
    token: String,
    error: Option<String>,
    /// Confirmed just now.
    done: bool,
}

impl NotMePage {
    fn new(s: &AppState, ui: &Ui, headers: &mut HeaderMap) -> Self {
        Self {
            c: ui.chrome(s, headers, None, "not_me"),
            t: ui.t,
            token: String::new(),
            error: None,
            done: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NotMeQuery {
    token: Option<String>,
}

/// `GET /ui/not-me?token=…`: what confirming does, and the button — for a live link only.
pub(super) async fn page(
    State(s): State<AppState>,
    Query(q): Query<NotMeQuery>,
    ui: Ui,
) -> Response {
    let mut headers = HeaderMap::new();
    let mut page = NotMePage::new(&s, &ui, &mut headers);
    let token = q.token.as_deref().map(str::trim).unwrap_or_default();
    match s.auth.sign_in_alert(token).await {
        Ok(Some(_)) => page.token = token.to_owned(),
        Ok(None) => {}
        Err(e) => {
            let f = Failure::from_error(ui.t, &e);
            page.error = Some(f.message);
            return html(f.status, headers, &page);
        }
    }
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct NotMeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

/// `POST /ui/not-me`: ends the sign-in's session and requires a password reset.
pub(super) async fn confirm(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<NotMeForm>,
) -> Response {
    let mut headers = HeaderMap::new();
    let mut page = NotMePage::new(&s, &ui, &mut headers);
    let token = form.token.trim();
    if !ui.csrf_ok(&s, &form.csrf_token) {
        let f = Failure::csrf(ui.t);
        if alert_token_shaped(token) {
            page.token = token.to_owned();
        }
        page.error = Some(f.message);
        return html(f.status, headers, &page);
    }
    match s.auth.disown_sign_in(token).await {
        Ok(Some(_)) => {
            page.done = true;
            html(StatusCode::OK, headers, &page)
        }
        Ok(None) => html(StatusCode::GONE, headers, &page),
        Err(e) => {
            let f = Failure::from_error(ui.t, &e);
            page.error = Some(f.message);
            html(f.status, headers, &page)
        }
    }
}
