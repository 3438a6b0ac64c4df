//! Signing in and out, registration, recovery, the language switch.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use porteiro_core::Error;
use porteiro_core::flows::browser::{BrowserSession, BrowserSignIn};
use porteiro_core::flows::registration::{Registration, ensure_confirmed};
use secrecy::SecretString;
use serde::Deserialize;

use super::{Chrome, Failure, Messages, NavUser, Ui, email_format_ok, html, redirect};
use crate::cookies::{ATTEMPTS, CSRF, MFA, SESSION};
use crate::extract::ClientInfo;
use crate::routes::session::device_cookie;
use crate::state::AppState;

/// Notices a redirect may ask a page to show (`?notice=`); anything else is ignored.
const NOTICES: &[&str] = &[
    "registered",
    "password_reset",
    "signed_out",
    "session_ended",
    "profile_saved",
    "password_changed",
    "session_revoked",
    "unlocked",
    "disabled",
    "enabled",
    "email_confirmed",
    "confirmation_sent",
    "mfa_expired",
    "code_sent",
    "two_factor_enabled",
    "two_factor_disabled",
    "recovery_email_added",
    "recovery_email_sent",
    "recovery_email_removed",
    "recovery_email_verified",
    "login_alerts_saved",
    "accept_messages_saved",
    "security_answer_saved",
    "security_answer_removed",
    "security_answers_removed",
];

/// The text of a whitelisted notice.
pub(super) fn notice(t: Messages, code: Option<&str>) -> Option<String> {
    let code = code?;
    NOTICES
        .contains(&code)
        .then(|| t.get(&format!("notice.{code}")).to_owned())
        .filter(|text| !text.starts_with("notice."))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NoticeQuery {
    notice: Option<String>,
}

impl NoticeQuery {
    pub(super) fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    c: Chrome,
    t: Messages,
    identifier: String,
    error: Option<String>,
    notice: Option<String>,
    field: &'static str,
    /// Refused for an unconfirmed address: the page offers a new link.
    unconfirmed: bool,
}

#[derive(Template)]
#[template(path = "ui/register.html")]
struct RegisterPage {
    c: Chrome,
    t: Messages,
    username: String,
    email: String,
    error: Option<String>,
    notice: Option<String>,
    field: &'static str,
}

#[derive(Template)]
#[template(path = "ui/forgot.html")]
struct ForgotPage {
    c: Chrome,
    t: Messages,
    email: String,
    sent: bool,
    error: Option<String>,
    notice: Option<String>,
    field: &'static str,
}

#[derive(Template)]
#[template(path = "ui/reset.html")]
struct ResetPage {
    c: Chrome,
    t: Messages,
    token: String,
    error: Option<String>,
    notice: Option<String>,
    /// The account's security questions (position from 1, id, text), asked before the new
    /// password is accepted; empty when it has none.
    questions: Vec<(usize, String, String)>,
}

/// The security questions the reset page asks for `token`'s account (none for an unknown
/// token or an account without questions: the reset itself refuses the former).
async fn reset_questions(s: &AppState, token: &str) -> Vec<(usize, String, String)> {
    if token.is_empty() {
        return Vec::new();
    }
    match s.security_questions.questions_for_reset(token).await {
        Ok(Some((_, questions))) => questions
            .into_iter()
            .enumerate()
            .map(|(i, q)| (i + 1, q.id.to_string(), q.text))
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "security questions of a reset link could not be read");
            Vec::new()
        }
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
pub(super) struct MessagePage {
    pub c: Chrome,
    pub t: Messages,
    pub message: String,
}

impl Ui {
    /// A refusal: the JSON failure for the enhanced form, else a page that says what went wrong.
    pub(super) fn refuse(&self, s: &AppState, f: Failure) -> Response {
        if self.wants_json {
            self.json_failure(&f, HeaderMap::new())
        } else {
            message(s, self, f.status, f.message)
        }
    }
}

/// A page that only says what went wrong.
pub(super) fn message(s: &AppState, ui: &Ui, status: StatusCode, message: String) -> Response {
    let mut headers = HeaderMap::new();
    let c = ui.chrome(s, &mut headers, None, "");
    html(
        status,
        headers,
        &MessagePage {
            c,
            t: ui.t,
            message,
        },
    )
}

/// `/ui/`: the account when signed in, else sign-in.
pub(super) async fn index(State(s): State<AppState>, ui: Ui) -> Response {
    if ui.principal(&s).await.is_some() {
        redirect(HeaderMap::new(), "/ui/account")
    } else {
        redirect(HeaderMap::new(), "/ui/login")
    }
}

/// Unknown `/ui/` paths.
pub(super) async fn not_found(State(s): State<AppState>, ui: Ui) -> Response {
    ui.refuse(&s, Failure::new(ui.t, StatusCode::NOT_FOUND, "not_found"))
}

#[derive(Debug, Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

/// Only a path of this UI: no scheme, host, `//` or backslash that could lead elsewhere, and
/// no `.` or `..` segment that a browser would resolve out of `/ui/`.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| is_ui_path(n)).unwrap_or("/ui/login")
}

fn is_ui_path(next: &str) -> bool {
    if !next.starts_with("/ui/") || next.chars().any(char::is_control) {
        return false;
    }
    // Browsers resolve `%2e` like `.` in dot segments (WHATWG URL) and `\` like `/`; decoding
    // until nothing changes also catches a doubly encoded `%252e` or `%5c` for whatever
    // decodes once more behind us. Only the path counts: `?` and `#` end it.
    let path = next.split(['?', '#']).next().unwrap_or_default();
    let mut decoded = path.to_owned();
    for _ in 0..4 {
        let once = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8_lossy()
            .into_owned();
        if once == decoded {
            break;
        }
        decoded = once;
    }
    [path, decoded.as_str(), next]
        .iter()
        .all(|p| !p.contains("//") && !p.contains('\\') && !p.chars().any(char::is_control))
        && decoded
            .split('/')
            .all(|segment| segment != "." && segment != "..")
        && decoded.starts_with("/ui/")
}

/// The language switch: remembers the choice for a year and goes back.
pub(super) async fn language(
    State(s): State<AppState>,
    Path(tag): Path<String>,
    Query(q): Query<Next>,
    ui: Ui,
) -> Response {
    if tag != "en" && tag != "pt-BR" {
        return not_found(State(s), ui).await;
    }
    let mut headers = HeaderMap::new();
    let c = cookie::Cookie::build((super::i18n::LANG_COOKIE, tag))
        .path("/")
        .secure(s.settings.cookies.secure)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::days(365))
        .build();
    if let Ok(v) = c.to_string().parse() {
        headers.insert(axum::http::header::SET_COOKIE, v);
    }
    redirect(headers, safe_next(q.next.as_deref()))
}

/// `GET /ui/login`.
pub(super) async fn login_page(
    State(s): State<AppState>,
    Query(q): Query<NoticeQuery>,
    ui: Ui,
) -> Response {
    if ui.principal(&s).await.is_some() {
        return redirect(HeaderMap::new(), "/ui/account");
    }
    let mut headers = HeaderMap::new();
    let page = LoginPage {
        c: ui.chrome(&s, &mut headers, None, "login"),
        t: ui.t,
        identifier: String::new(),
        error: None,
        notice: notice(ui.t, q.notice()),
        field: "",
        unconfirmed: false,
    };
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    identifier: String,
    password: SecretString,
}

/// `POST /ui/login`: signs the browser in with a cookie session.
pub(super) async fn login(
    State(s): State<AppState>,
    ui: Ui,
    ClientInfo(ctx): ClientInfo,
    Form(form): Form<LoginForm>,
) -> Response {
    let identifier = form.identifier.trim().to_owned();
    let cookies = s.settings.cookies;
    let fail = |failure: Failure, mut headers: HeaderMap| {
        if ui.wants_json {
            return ui.json_failure(&failure, headers);
        }
        let page = LoginPage {
            c: ui.chrome(&s, &mut headers, None, "login"),
            t: ui.t,
            identifier: identifier.clone(),
            error: Some(failure.message),
            notice: None,
            field: failure.field.unwrap_or(""),
            unconfirmed: failure.code == "email_not_verified",
        };
        html(failure.status, headers, &page)
    };
    if !ui.csrf_ok(&s, &form.csrf_token) {
        return fail(Failure::csrf(ui.t), HeaderMap::new());
    }
    if identifier.is_empty() {
        let f = Failure::new(ui.t, StatusCode::BAD_REQUEST, "invalid_login");
        return fail(f.on("identifier"), HeaderMap::new());
    }
    if identifier.contains('@') && !email_format_ok(&identifier) {
        let f = Failure::new(ui.t, StatusCode::BAD_REQUEST, "invalid_email");
        return fail(f.on("identifier"), HeaderMap::new());
    }
    let attempts = cookies.read(&ui.headers, ATTEMPTS);
    // What this browser's own failures say. The server is still asked: a reset or an unlock
    // may have lifted the lock, and it answers a locked account exactly like a wrong password.
    let locked_before = s
        .auth
        .attempt_state(attempts.as_deref(), &identifier)
        .locked_minutes
        .is_some();
    match s
        .auth
        .login_browser(&identifier, &form.password, &ctx)
        .await
    {
        Ok(BrowserSignIn::SecondStep(step)) => {
            // The second step's token waits in an HttpOnly cookie, never in a URL.
            let mut headers = HeaderMap::new();
            cookies.set(&mut headers, MFA, &step.mfa_token, Some(step.expires_in));
            cookies.clear(&mut headers, ATTEMPTS);
            ui.done(headers, "/ui/mfa")
        }
        Ok(BrowserSignIn::Done(browser)) => match session_cookies(&s, &ui, &browser).await {
            Ok(headers) => ui.done(headers, "/ui/account"),
            Err(e) => fail(Failure::from_error(ui.t, &e), HeaderMap::new()),
        },
        Err(Error::InvalidCredentials) => {
            let (value, state) = s.auth.attempt_failed(attempts.as_deref(), &identifier);
            let mut headers = HeaderMap::new();
            let window = s.auth.config().lockout_duration.num_seconds();
            cookies.set(&mut headers, ATTEMPTS, &value, Some(window));
            match state.locked_minutes.filter(|_| locked_before) {
                // Seed 003: the attempt after the fifth failure says the account is locked.
                Some(minutes) => {
                    let mut f = Failure::new(ui.t, StatusCode::TOO_MANY_REQUESTS, "account_locked");
                    f.message =
                        ui.t.fmt("error.account_locked", &[("minutes", &minutes.to_string())]);
                    if let Ok(v) = (minutes * 60).to_string().parse() {
                        headers.insert(axum::http::header::RETRY_AFTER, v);
                    }
                    fail(f, headers)
                }
                None => fail(
                    Failure::from_error(ui.t, &Error::InvalidCredentials),
                    headers,
                ),
            }
        }
        Err(e) => fail(Failure::from_error(ui.t, &e), HeaderMap::new()),
    }
}

/// The cookies of a browser session just opened (session, CSRF bound to it, device), ending
/// the session this browser had: one browser, one session.
pub(super) async fn session_cookies(
    s: &AppState,
    ui: &Ui,
    browser: &BrowserSession,
) -> Result<HeaderMap, Error> {
    if let Some(previous) = ui.principal(s).await {
        s.auth.logout(&previous).await?;
    }
    let cookies = s.settings.cookies;
    let mut headers = device_cookie(s, browser.signed_in.device_token.as_deref());
    let lifetime = s.auth.config().initial_session_lifetime().num_seconds();
    cookies.set(&mut headers, SESSION, &browser.cookie, Some(lifetime));
    cookies.set(&mut headers, CSRF, &browser.csrf, None);
    cookies.clear(&mut headers, ATTEMPTS);
    Ok(headers)
}

/// `GET /ui/register`.
pub(super) async fn register_page(State(s): State<AppState>, ui: Ui) -> Response {
    let mut headers = HeaderMap::new();
    let page = RegisterPage {
        c: ui.chrome(&s, &mut headers, None, "register"),
        t: ui.t,
        username: String::new(),
        email: String::new(),
        error: None,
        notice: None,
        field: "",
    };
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct RegisterForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    password: SecretString,
    confirm_password: Option<SecretString>,
}

/// `POST /ui/register`: creates the account, then sends the visitor to sign in.
pub(super) async fn register(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<RegisterForm>,
) -> Response {
    let username = form.username.trim().to_owned();
    let email = form.email.trim().to_owned();
    let fail = |failure: Failure| {
        if ui.wants_json {
            return ui.json_failure(&failure, HeaderMap::new());
        }
        let mut headers = HeaderMap::new();
        let page = RegisterPage {
            c: ui.chrome(&s, &mut headers, None, "register"),
            t: ui.t,
            username: username.clone(),
            email: email.clone(),
            error: Some(failure.message),
            notice: None,
            field: failure.field.unwrap_or(""),
        };
        html(failure.status, headers, &page)
    };
    if !ui.csrf_ok(&s, &form.csrf_token) {
        return fail(Failure::csrf(ui.t));
    }
    if !email_format_ok(&email) {
        return fail(Failure::new(ui.t, StatusCode::BAD_REQUEST, "invalid_email").on("email"));
    }
    let input = Registration {
        username: username.clone(),
        email: email.clone(),
        password: form.password,
        confirm_password: form.confirm_password,
        first_name: None,
        last_name: None,
        locale: Some(ui.t.tag().to_owned()),
        is_admin: false,
        email_verified: false,
    };
    match s.auth.register(input).await {
        Ok(user) => {
            s.email_confirmation.registered(&user).await;
            ui.done(HeaderMap::new(), "/ui/login?notice=registered")
        }
        Err(e) => fail(Failure::from_error(ui.t, &e)),
    }
}

/// `GET /ui/forgot-password`: the dedicated recovery page.
pub(super) async fn forgot_page(State(s): State<AppState>, ui: Ui) -> Response {
    let mut headers = HeaderMap::new();
    let page = ForgotPage {
        c: ui.chrome(&s, &mut headers, None, "forgot"),
        t: ui.t,
        email: String::new(),
        sent: false,
        error: None,
        notice: None,
        field: "",
    };
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// `POST /ui/forgot-password`: the same generic answer whether or not the account exists; back
/// to sign-in after 3 s.
pub(super) async fn forgot(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ForgotForm>,
) -> Response {
    let email = form.email.trim().to_owned();
    let render = |sent: bool, failure: Option<Failure>| {
        let mut headers = HeaderMap::new();
        let status = failure.as_ref().map_or(StatusCode::OK, |f| f.status);
        let field = failure.as_ref().and_then(|f| f.field).unwrap_or("");
        let page = ForgotPage {
            c: ui.chrome(&s, &mut headers, None, "forgot"),
            t: ui.t,
            email: email.clone(),
            sent,
            error: failure.map(|f| f.message),
            notice: None,
            field,
        };
        html(status, headers, &page)
    };
    let failure = if !ui.csrf_ok(&s, &form.csrf_token) {
        Some(Failure::csrf(ui.t))
    } else if !email_format_ok(&email) {
        Some(Failure::new(ui.t, StatusCode::BAD_REQUEST, "invalid_email").on("email"))
    } else {
        s.auth
            .forgot_password(&email)
            .err()
            .map(|e| Failure::from_error(ui.t, &e))
    };
    match (failure, ui.wants_json) {
        (Some(f), true) => ui.json_failure(&f, HeaderMap::new()),
        (Some(f), false) => render(false, Some(f)),
        (None, true) => ui.done(HeaderMap::new(), "/ui/login"),
        (None, false) => render(true, None),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// A reset token as it may appear in a link, else nothing (the page then says the link is bad).
fn plausible_token(token: Option<&str>) -> String {
    token
        .map(str::trim)
        .filter(|t| porteiro_core::flows::recovery::reset_token_shaped(t))
        .unwrap_or_default()
        .to_owned()
}

/// `GET /ui/reset-password?token=…`: the page the recovery mail links to.
pub(super) async fn reset_page(
    State(s): State<AppState>,
    Query(q): Query<TokenQuery>,
    ui: Ui,
) -> Response {
    let mut headers = HeaderMap::new();
    let token = plausible_token(q.token.as_deref());
    let questions = reset_questions(&s, &token).await;
    let page = ResetPage {
        c: ui.chrome(&s, &mut headers, None, "reset"),
        t: ui.t,
        token,
        error: None,
        notice: None,
        questions,
    };
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    password: SecretString,
    confirm_password: Option<SecretString>,
    // Answers to the account's security questions (at most five), when it has them.
    question_1: Option<String>,
    answer_1: Option<SecretString>,
    question_2: Option<String>,
    answer_2: Option<SecretString>,
    question_3: Option<String>,
    answer_3: Option<SecretString>,
    question_4: Option<String>,
    answer_4: Option<SecretString>,
    question_5: Option<String>,
    answer_5: Option<SecretString>,
}

impl ResetForm {
    /// The answers given, paired with their questions.
    fn answers(&self) -> Vec<porteiro_core::flows::security_questions::GivenAnswer> {
        [
            (&self.question_1, &self.answer_1),
            (&self.question_2, &self.answer_2),
            (&self.question_3, &self.answer_3),
            (&self.question_4, &self.answer_4),
            (&self.question_5, &self.answer_5),
        ]
        .into_iter()
        .filter_map(|(q, a)| {
            Some(porteiro_core::flows::security_questions::GivenAnswer {
                question_id: q.as_deref()?.parse().ok()?,
                answer: a.clone()?,
            })
        })
        .collect()
    }
}

/// Resets with the emailed token and, for an account with security questions, the answers
/// given on the page: they are verified into a recovery proof first (wrong ones count
/// towards the question lock), then token and proof are spent together.
async fn reset_with_answers(s: &AppState, token: &str, form: &ResetForm) -> Result<(), Error> {
    let proof = match s.security_questions.questions_for_reset(token).await? {
        Some((email, _)) => Some(
            s.security_questions
                .verify_recovery(email.as_str(), &form.answers())
                .await?,
        ),
        None => None,
    };
    s.auth
        .reset_password(token, None, &form.password, proof.as_deref())
        .await
}

/// `POST /ui/reset-password`: sets the new password; every session of the account ends. An
/// account with security questions needs their answers on the same form.
pub(super) async fn reset(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ResetForm>,
) -> Response {
    let token = plausible_token(Some(&form.token));
    let outcome = if !ui.csrf_ok(&s, &form.csrf_token) {
        Err(Failure::csrf(ui.t))
    } else if token.is_empty() {
        Err(Failure::from_error(ui.t, &Error::InvalidResetToken))
    } else {
        let confirmed = ensure_confirmed(
            "confirm_password",
            &form.password,
            form.confirm_password.as_ref(),
        );
        match confirmed {
            Ok(()) => reset_with_answers(&s, &token, &form)
                .await
                .map_err(|e| Failure::from_error(ui.t, &e)),
            Err(e) => Err(Failure::from_error(ui.t, &e)),
        }
    };
    match outcome {
        Ok(()) => {
            // A reset lifts the lock: this browser's record of failures goes with it.
            let mut headers = HeaderMap::new();
            s.settings.cookies.clear(&mut headers, ATTEMPTS);
            ui.done(headers, "/ui/login?notice=password_reset")
        }
        Err(f) if ui.wants_json => ui.json_failure(&f, HeaderMap::new()),
        Err(f) => {
            let mut headers = HeaderMap::new();
            let questions = reset_questions(&s, &token).await;
            let page = ResetPage {
                c: ui.chrome(&s, &mut headers, None, "reset"),
                t: ui.t,
                token,
                error: Some(f.message),
                notice: None,
                questions,
            };
            html(f.status, headers, &page)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf_token: String,
}

/// `POST /ui/logout`: ends this browser's session and clears its cookie.
pub(super) async fn logout(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfForm>,
) -> Response {
    // The token first, session or not: a cross-site form carries neither cookie, and must not
    // be able to clear this browser's cookies while its session lives on.
    if !ui.csrf_ok(&s, &form.csrf_token) {
        return ui.refuse(&s, Failure::csrf(ui.t));
    }
    if let Some(p) = ui.principal(&s).await
        && let Err(e) = s.auth.logout(&p).await
    {
        return ui.refuse(&s, Failure::from_error(ui.t, &e));
    }
    let mut headers = HeaderMap::new();
    s.settings.cookies.clear(&mut headers, SESSION);
    // A fresh pre-sign-in CSRF token: the old one was bound to the session that just ended.
    let token = s.auth.csrf_token(None);
    s.settings.cookies.set(&mut headers, CSRF, &token, None);
    ui.done(headers, "/ui/login?notice=signed_out")
}

/// The header's view of a signed-in user.
pub(super) fn nav(p: &porteiro_core::service::Principal) -> Option<NavUser> {
    use porteiro_core::domain::rbac::Permission;
    Some(NavUser {
        console: p.can(Permission::UsersRead),
        roles: super::admin::sees_roles(p),
        audit: p.can(Permission::AuditRead),
        webhooks: p.can(Permission::WebhooksManage),
    })
}
