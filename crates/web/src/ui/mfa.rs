//! The second step of a hosted sign-in: `/ui/mfa`.
//!
//! A correct password for an account that needs a second step leaves the `mfa_token` in the
//! HttpOnly `MFA` cookie (never in a URL) and sends the browser here. The page asks for the
//! code of the method chosen: the authenticator app by default, a backup code
//! (`?method=backup_code`, a plain link) or a mailed code (`POST /ui/mfa/resend` mails one).
//! Everything works without JavaScript; `porteiro.js` adds the loading state.
//!
//! The page reads the pending step ([`porteiro_core::Auth::pending_second_step`]) on every
//! answer, so a step that died meanwhile (expired, spent, five wrong codes) sends the browser
//! back to sign in instead of showing a form that can no longer work. Wrong codes get the same
//! generic message whatever the reason (wrong, reused, expired).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use porteiro_core::Error;
use porteiro_core::domain::mfa::Method;
use porteiro_core::flows::mfa::{PendingSecondStep, SecondFactor};
use serde::Deserialize;
use serde_json::json;

use super::pages::{notice, session_cookies};
use super::{Chrome, Failure, Messages, Ui, html, redirect};
use crate::cookies::MFA;
use crate::extract::ClientInfo;
use crate::state::AppState;

/// Where a browser whose second step is gone starts again.
const SIGN_IN_AGAIN: &str = "/ui/login?notice=mfa_expired";

#[derive(Template)]
#[template(path = "ui/mfa.html")]
struct MfaPage {
    c: Chrome,
    t: Messages,
    /// `totp`, `backup_code` or `email`: which code the form asks for.
    method: &'static str,
    offers_totp: bool,
    offers_backup: bool,
    offers_email: bool,
    email_sent: bool,
    error: Option<String>,
    notice: Option<String>,
    field: &'static str,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MfaQuery {
    method: Option<String>,
    notice: Option<String>,
}

/// The method to ask for: the one requested if this sign-in offers it, else the app, else the
/// mailed code (an email-only second step), else whatever is offered.
fn chosen(pending: &PendingSecondStep, requested: Option<&str>) -> Method {
    let offered = |m: &Method| pending.methods.contains(m);
    requested
        .and_then(Method::parse)
        .filter(offered)
        .or_else(|| [Method::Totp, Method::Email].into_iter().find(offered))
        .or_else(|| pending.methods.first().copied())
        .unwrap_or(Method::Totp)
}

/// The page for `pending`, asking for `method`'s code.
fn render(
    s: &AppState,
    ui: &Ui,
    pending: &PendingSecondStep,
    method: Method,
    failure: Option<Failure>,
    notice_text: Option<String>,
    mut headers: HeaderMap,
) -> Response {
    let status = failure.as_ref().map_or(StatusCode::OK, |f| f.status);
    let field = failure.as_ref().and_then(|f| f.field).unwrap_or("");
    let page = MfaPage {
        c: ui.chrome(s, &mut headers, None, "mfa"),
        t: ui.t,
        method: method.as_str(),
        offers_totp: pending.methods.contains(&Method::Totp),
        offers_backup: pending.methods.contains(&Method::BackupCode),
        offers_email: pending.methods.contains(&Method::Email),
        email_sent: pending.email_sent,
        error: failure.map(|f| f.message),
        notice: notice_text,
        field,
    };
    html(status, headers, &page)
}

/// The second step is gone (expired, spent, dead after wrong codes, or never this browser's):
/// forget its cookie and start again from sign-in.
fn sign_in_again(s: &AppState, ui: &Ui) -> Response {
    let mut headers = HeaderMap::new();
    s.settings.cookies.clear(&mut headers, MFA);
    if ui.wants_json {
        // The enhanced form follows `redirect` on a failure too.
        let body = json!({
            "status": "error",
            "code": "invalid_mfa_token",
            "message": ui.t.error("invalid_mfa_token"),
            "redirect": SIGN_IN_AGAIN,
        });
        let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        response.headers_mut().extend(headers);
        response
    } else {
        redirect(headers, SIGN_IN_AGAIN)
    }
}

/// A refusal that leaves the second step alive: the page again with the message (or the JSON
/// failure), asking for the same method. Reads the step afresh: if this refusal was its last
/// chance, the browser goes back to sign in.
async fn refuse(
    s: &AppState,
    ui: &Ui,
    ctx: &porteiro_core::service::ClientContext,
    token: &str,
    method: Method,
    failure: Failure,
    headers: HeaderMap,
) -> Response {
    let pending = match s.auth.pending_second_step(token, ctx).await {
        Ok(p) => p,
        Err(Error::InvalidMfaToken) => return sign_in_again(s, ui),
        Err(e) => return ui.refuse(s, Failure::from_error(ui.t, &e)),
    };
    if ui.wants_json {
        return ui.json_failure(&failure, headers);
    }
    let method = chosen(&pending, Some(method.as_str()));
    render(s, ui, &pending, method, Some(failure), None, headers)
}

/// The wording of a refused code: malformed backup codes get their own hint.
fn code_failure(t: Messages, err: &Error) -> Failure {
    let mut f = Failure::from_error(t, err);
    if let Error::Validation(v) = err
        && v.field == "backup_code"
    {
        f.message = t.get("mfa.backup_code_format").to_owned();
    }
    f
}

/// `GET /ui/mfa[?method=totp|backup_code|email]`.
pub(super) async fn page(
    State(s): State<AppState>,
    Query(q): Query<MfaQuery>,
    ClientInfo(ctx): ClientInfo,
    ui: Ui,
) -> Response {
    let Some(token) = s.settings.cookies.read(&ui.headers, MFA) else {
        return redirect(HeaderMap::new(), "/ui/login");
    };
    match s.auth.pending_second_step(&token, &ctx).await {
        Ok(pending) => {
            let method = chosen(&pending, q.method.as_deref());
            let notice_text = notice(ui.t, q.notice.as_deref());
            render(
                &s,
                &ui,
                &pending,
                method,
                None,
                notice_text,
                HeaderMap::new(),
            )
        }
        Err(Error::InvalidMfaToken) => sign_in_again(&s, &ui),
        Err(e) => ui.refuse(&s, Failure::from_error(ui.t, &e)),
    }
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    backup_code: String,
}

/// `POST /ui/mfa`: checks the code; on success opens the browser session exactly as a
/// one-step sign-in does and goes to the account.
pub(super) async fn verify(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    ui: Ui,
    Form(form): Form<VerifyForm>,
) -> Response {
    let cookies = s.settings.cookies;
    let Some(token) = cookies.read(&ui.headers, MFA) else {
        return sign_in_again(&s, &ui);
    };
    let method = Method::parse(&form.method).unwrap_or(Method::Totp);
    if !ui.csrf_ok(&s, &form.csrf_token) {
        let f = Failure::csrf(ui.t);
        return refuse(&s, &ui, &ctx, &token, method, f, HeaderMap::new()).await;
    }
    let factor = match method {
        Method::Totp => SecondFactor::Totp(form.code),
        Method::Email => SecondFactor::EmailCode(form.code),
        Method::BackupCode => SecondFactor::BackupCode(if form.backup_code.is_empty() {
            form.code
        } else {
            form.backup_code
        }),
    };
    let result = match s.auth.verify_second_step(&token, &factor, &ctx).await {
        Ok(signed_in) => s.auth.attach_browser(signed_in).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(browser) => match session_cookies(&s, &ui, &browser).await {
            Ok(mut headers) => {
                cookies.clear(&mut headers, MFA);
                ui.done(headers, "/ui/account")
            }
            Err(e) => ui.refuse(&s, Failure::from_error(ui.t, &e)),
        },
        // The step is over: gone, or the account was locked or its password changed meanwhile
        // (said as "sign in again", like the API's generic refusal).
        Err(Error::InvalidMfaToken | Error::InvalidCredentials | Error::CredentialChanged) => {
            sign_in_again(&s, &ui)
        }
        Err(Error::AccountDisabled) => {
            let mut headers = HeaderMap::new();
            cookies.clear(&mut headers, MFA);
            let f = Failure::from_error(ui.t, &Error::AccountDisabled);
            if ui.wants_json {
                ui.json_failure(&f, headers)
            } else {
                let mut response = super::pages::message(&s, &ui, f.status, f.message);
                response.headers_mut().extend(headers);
                response
            }
        }
        Err(
            e @ (Error::InvalidCode
            | Error::Validation(_)
            | Error::MfaState { .. }
            | Error::RateLimited { .. }),
        ) => {
            let f = code_failure(ui.t, &e).on(if method == Method::BackupCode {
                "backup_code"
            } else {
                "code"
            });
            refuse(&s, &ui, &ctx, &token, method, f, retry_after(&e)).await
        }
        Err(e) => ui.refuse(&s, Failure::from_error(ui.t, &e)),
    }
}

/// `Retry-After` for a rate-limited refusal.
fn retry_after(err: &Error) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Error::RateLimited { retry_after_secs } = err {
        headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    headers
}

#[derive(Deserialize)]
pub(super) struct ResendForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /ui/mfa/resend`: mails a (new) code for this sign-in, at most one a minute.
pub(super) async fn resend(
    State(s): State<AppState>,
    ClientInfo(ctx): ClientInfo,
    ui: Ui,
    Form(form): Form<ResendForm>,
) -> Response {
    let Some(token) = s.settings.cookies.read(&ui.headers, MFA) else {
        return sign_in_again(&s, &ui);
    };
    if !ui.csrf_ok(&s, &form.csrf_token) {
        let f = Failure::csrf(ui.t);
        return refuse(&s, &ui, &ctx, &token, Method::Email, f, HeaderMap::new()).await;
    }
    match s.auth.resend_second_step_code(&token, &ctx).await {
        Ok(()) => ui.done(HeaderMap::new(), "/ui/mfa?method=email&notice=code_sent"),
        Err(Error::InvalidMfaToken) => sign_in_again(&s, &ui),
        Err(e @ (Error::RateLimited { .. } | Error::MfaState { .. })) => {
            let f = Failure::from_error(ui.t, &e);
            refuse(&s, &ui, &ctx, &token, Method::Email, f, retry_after(&e)).await
        }
        Err(e) => ui.refuse(&s, Failure::from_error(ui.t, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(methods: &[Method]) -> PendingSecondStep {
        PendingSecondStep {
            methods: methods.to_vec(),
            email_sent: false,
        }
    }

    #[test]
    fn the_method_asked_for_is_one_the_sign_in_offers() {
        let app = pending(&[Method::Totp, Method::BackupCode]);
        assert_eq!(chosen(&app, None), Method::Totp);
        assert_eq!(chosen(&app, Some("backup_code")), Method::BackupCode);
        assert_eq!(chosen(&app, Some("email")), Method::Totp);
        assert_eq!(chosen(&app, Some("made_up")), Method::Totp);
        let mail = pending(&[Method::Email]);
        assert_eq!(chosen(&mail, None), Method::Email);
        assert_eq!(chosen(&mail, Some("totp")), Method::Email);
        assert_eq!(chosen(&mail, Some("backup_code")), Method::Email);
        let codes_only = pending(&[Method::BackupCode]);
        assert_eq!(chosen(&codes_only, None), Method::BackupCode);
    }
}
