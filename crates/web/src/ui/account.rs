//! The account page: profile, password, two-factor authentication, security questions
//! (`account/questions.rs`), sessions, sign-out. (The administrators' pages are in `admin.rs`;
//! the recovery-address forms in `recovery_emails.rs`.)
//!
//! Two-factor setup shows the new secret (QR code and text) and the backup codes only in the
//! answer to the setup form: they are never put in a cookie or a URL, and the page cannot be
//! loaded again (the pending secret stays sealed in the database until a first code enables
//! it; setting up again starts over with a new secret).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use porteiro_core::Error;
use porteiro_core::domain::audit::AuditFilter;
use porteiro_core::flows::mfa::{SecondFactor, TwoFactorStatus};
use porteiro_core::flows::registration::ensure_confirmed;
use porteiro_core::flows::settings::ProfileChange;
use porteiro_core::service::Principal;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{CsrfForm, nav, notice};
use super::{CSP_DATA_IMAGES, Chrome, Failure, Messages, Ui, html};
use crate::state::AppState;

pub(super) mod questions;

/// A time as shown (the language's date-time format, UTC) and as `<time datetime>` wants it.
pub(super) fn when(t: Messages, at: DateTime<Utc>) -> (String, String) {
    (
        at.format(t.get("format.datetime")).to_string(),
        at.to_rfc3339(),
    )
}

/// A day as shown, and as `<time datetime>` wants it.
pub(super) fn day(t: Messages, at: DateTime<Utc>) -> (String, String) {
    (at.format(t.get("format.date")).to_string(), at.to_rfc3339())
}

struct Profile {
    username: String,
    email: String,
    first_name: String,
    last_name: String,
    created: String,
    created_iso: String,
    /// When the address was confirmed (shown, `datetime`), if it was.
    email_confirmed: Option<(String, String)>,
}

struct EventRow {
    at: String,
    at_iso: String,
    what: String,
    failed: bool,
    ip: String,
}

/// How many of the account's own security events the page shows.
const RECENT_EVENTS: u32 = 10;

/// One sign-in of the history section.
struct HistoryRow {
    at: String,
    at_iso: String,
    device: String,
    ip: String,
    ok: bool,
    method: String,
}

/// Sign-ins per page of the history section.
const HISTORY_PAGE: u32 = 10;

/// The account page's query: a notice, and the history's cursor (`history_before`, an event
/// id; anything else shows the newest sign-ins).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AccountQuery {
    notice: Option<String>,
    history_before: Option<String>,
}

struct SessionRow {
    id: Uuid,
    name: String,
    detail: String,
    ip: String,
    created: String,
    created_iso: String,
    active: String,
    active_iso: String,
    is_current: bool,
}

/// The account's two-factor state as the page shows it.
struct TwoFactorView {
    enabled: bool,
    since: String,
    since_iso: String,
    /// "n backup codes left", in the page's language.
    codes_left: String,
    /// Few codes left: the page suggests a new set.
    codes_low: bool,
}

impl TwoFactorView {
    fn new(t: Messages, status: &TwoFactorStatus) -> Self {
        let (since, since_iso) = status.enabled_at.map(|at| day(t, at)).unwrap_or_default();
        let left = status.backup_codes_remaining;
        let key = if left == 1 {
            "twofactor.codes_left_one"
        } else {
            "twofactor.codes_left"
        };
        Self {
            enabled: status.enabled,
            since,
            since_iso,
            codes_left: t.fmt(key, &[("count", &left.to_string())]),
            codes_low: left <= LOW_BACKUP_CODES,
        }
    }
}

/// Backup codes left at which the page suggests a new set.
const LOW_BACKUP_CODES: u32 = 3;

#[derive(Template)]
#[template(path = "ui/account.html")]
struct AccountPage {
    c: Chrome,
    t: Messages,
    heading: String,
    user: Profile,
    two_factor: TwoFactorView,
    sessions: Vec<SessionRow>,
    events: Vec<EventRow>,
    login_alerts: bool,
    /// Other accounts may send private messages.
    accept_messages: bool,
    messages_error: Option<String>,
    history: Vec<HistoryRow>,
    /// The cursor of the next (older) history page.
    history_next: Option<i64>,
    /// Not on the newest history page: the page links back to it.
    history_paged: bool,
    alerts_error: Option<String>,
    notice: Option<String>,
    profile_error: Option<String>,
    password_error: Option<String>,
    two_factor_error: Option<String>,
    two_factor_off_error: Option<String>,
    backup_codes_error: Option<String>,
    sessions_error: Option<String>,
    /// The security-questions section, and the errors of its two forms.
    questions: questions::QuestionsView,
    questions_error: Option<String>,
    questions_remove_error: Option<String>,
    recovery_emails: Vec<super::recovery_emails::RecoveryRow>,
    recovery_error: Option<String>,
}

/// Which form of the account page an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Profile,
    Password,
    /// Starting the authenticator-app setup.
    TwoFactor,
    /// Turning two-factor authentication off.
    TwoFactorOff,
    /// New backup codes.
    BackupCodes,
    Sessions,
    /// Recovery addresses (any of their forms).
    RecoveryEmails,
    /// The new-device alerts toggle.
    Alerts,
    /// The "accept messages" toggle.
    Messages,
    /// Answering a security question.
    Questions,
    /// Removing security answers.
    QuestionsRemove,
}

async fn render_account(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    notice_text: Option<String>,
    error: Option<(Section, Failure)>,
) -> Response {
    render_account_at(s, ui, p, notice_text, error, None).await
}

async fn render_account_at(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    notice_text: Option<String>,
    error: Option<(Section, Failure)>,
    history_before: Option<i64>,
) -> Response {
    let t = ui.t;
    let history = match s.auth.login_history(p, history_before, HISTORY_PAGE).await {
        Ok(h) => h,
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let questions = match questions::QuestionsView::load(s, t, p).await {
        Ok(q) => q,
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let recent = s
        .auth
        .my_events(p, AuditFilter::default(), RECENT_EVENTS)
        .await;
    let two_factor = s.two_factor.status(p, p.user_id).await;
    let (user, devices, recent, two_factor) = match (
        s.auth.me(p).await,
        s.auth.devices(p).await,
        recent,
        two_factor,
    ) {
        (Ok(u), Ok(d), Ok(r), Ok(f)) => (u, d, r, f),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            return ui.refuse(s, Failure::from_error(t, &e));
        }
    };
    let recovery_emails = match s.recovery_emails.list(p).await {
        Ok(list) => list
            .into_iter()
            .map(|a| super::recovery_emails::RecoveryRow::new(t, a))
            .collect(),
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let login_alerts = user.login_alerts;
    let accept_messages = user.accept_messages;
    let name = user
        .first_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| user.username.clone());
    let (created, created_iso) = day(t, user.created_at);
    let sessions = devices
        .into_iter()
        .map(|d| {
            let s = d.session;
            let (created, created_iso) = when(t, s.created_at);
            let (active, active_iso) = when(t, s.last_active_at);
            let detail = [s.browser.clone(), s.os.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ");
            SessionRow {
                id: s.id,
                name: s.device_name,
                detail,
                ip: s
                    .ip_address
                    .unwrap_or_else(|| t.get("account.unknown").to_owned()),
                created,
                created_iso,
                active,
                active_iso,
                is_current: d.is_current,
            }
        })
        .collect();
    let events = recent
        .into_iter()
        .map(|e| {
            let (at, at_iso) = when(t, e.occurred_at);
            EventRow {
                at,
                at_iso,
                what: t.event(&e.event_type),
                // A failed sign-in says so in its wording; other refusals get a "(failed)" mark.
                failed: e.outcome != "success" && !e.event_type.ends_with(".failed"),
                // An administrator's action on this account: their address is not the user's.
                ip: if e.actor_id.is_some() {
                    String::new()
                } else {
                    e.ip_address.unwrap_or_default()
                },
            }
        })
        .collect();
    let history_next = history.next_before;
    let history = history
        .items
        .into_iter()
        .map(|a| {
            let (at, at_iso) = when(t, a.occurred_at);
            let method = a.method();
            let key = format!("history.method.{method}");
            let label = t.get(&key);
            HistoryRow {
                at,
                at_iso,
                device: porteiro_core::domain::device::describe(a.user_agent.as_deref()).name,
                ip: a.ip_address.clone().unwrap_or_default(),
                ok: a.outcome == "success",
                method: if label == key {
                    method
                } else {
                    label.to_owned()
                },
            }
        })
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |(_, f)| f.status);
    let pick = |want: Section| {
        error
            .as_ref()
            .filter(|(section, _)| *section == want)
            .map(|(_, f)| f.message.clone())
    };
    let mut headers = HeaderMap::new();
    let page = AccountPage {
        c: ui.chrome(s, &mut headers, nav(p), "account"),
        t,
        heading: t.fmt("account.heading", &[("name", &name)]),
        user: Profile {
            email_confirmed: user.email_verified_at.map(|at| day(t, at)),
            username: user.username,
            email: user.email,
            first_name: user.first_name.unwrap_or_default(),
            last_name: user.last_name.unwrap_or_default(),
            created,
            created_iso,
        },
        two_factor: TwoFactorView::new(t, &two_factor),
        sessions,
        events,
        login_alerts,
        history,
        history_next,
        history_paged: history_before.is_some(),
        alerts_error: pick(Section::Alerts),
        accept_messages,
        messages_error: pick(Section::Messages),
        notice: notice_text,
        profile_error: pick(Section::Profile),
        password_error: pick(Section::Password),
        two_factor_error: pick(Section::TwoFactor),
        two_factor_off_error: pick(Section::TwoFactorOff),
        backup_codes_error: pick(Section::BackupCodes),
        sessions_error: pick(Section::Sessions),
        questions,
        questions_error: pick(Section::Questions),
        questions_remove_error: pick(Section::QuestionsRemove),
        recovery_emails,
        recovery_error: pick(Section::RecoveryEmails),
    };
    html(status, headers, &page)
}

/// `GET /ui/account[?history_before=…]`.
pub(super) async fn account_page(
    State(s): State<AppState>,
    Query(q): Query<AccountQuery>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    let before = q
        .history_before
        .as_deref()
        .and_then(|b| b.parse::<i64>().ok())
        .filter(|b| *b > 0);
    render_account_at(&s, &ui, &p, notice(ui.t, q.notice.as_deref()), None, before).await
}

#[derive(Deserialize)]
pub(super) struct AlertsForm {
    #[serde(default)]
    csrf_token: String,
    /// Present (any value) when the box is ticked.
    login_alerts: Option<String>,
}

/// `POST /ui/account/login-alerts`: turns new-device alerts on or off.
pub(super) async fn save_login_alerts(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<AlertsForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let change = ProfileChange {
        login_alerts: Some(form.login_alerts.is_some()),
        ..ProfileChange::default()
    };
    let result = s.auth.update_user(&p, p.user_id, change).await.map(|_| ());
    account_outcome(&s, &ui, &p, result, Section::Alerts, "login_alerts_saved").await
}

/// The signed-in caller of a form post whose CSRF token holds, or the answer to give instead.
pub(super) async fn form_caller(s: &AppState, ui: &Ui, csrf: &str) -> Result<Principal, Response> {
    let Some(p) = ui.principal(s).await else {
        if ui.wants_json {
            let f = Failure::new(ui.t, StatusCode::UNAUTHORIZED, "invalid_token");
            return Err(ui.json_failure(&f, HeaderMap::new()));
        }
        return Err(ui.to_login());
    };
    if !ui.csrf_ok(s, csrf) {
        return Err(ui.refuse(s, Failure::csrf(ui.t)));
    }
    Ok(p)
}

/// The answer to an account form: on to the page with a notice, or the error in its section.
pub(super) async fn account_outcome(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    result: Result<(), Error>,
    section: Section,
    notice_code: &str,
) -> Response {
    match result {
        Ok(()) => ui.done(
            HeaderMap::new(),
            &format!("/ui/account?notice={notice_code}"),
        ),
        Err(e) => {
            let f = Failure::from_error(ui.t, &e);
            if ui.wants_json {
                ui.json_failure(&f, HeaderMap::new())
            } else {
                render_account(s, ui, p, None, Some((section, f))).await
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct ProfileForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

/// `POST /ui/account/profile`.
pub(super) async fn save_profile(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ProfileForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let change = ProfileChange {
        first_name: Some(form.first_name.trim().to_owned()),
        last_name: Some(form.last_name.trim().to_owned()),
        ..ProfileChange::default()
    };
    let result = s.auth.update_user(&p, p.user_id, change).await.map(|_| ());
    account_outcome(&s, &ui, &p, result, Section::Profile, "profile_saved").await
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    current_password: SecretString,
    password: SecretString,
    confirm_password: Option<SecretString>,
}

/// `POST /ui/account/password`: needs the current password; every other session ends.
pub(super) async fn change_password(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<PasswordForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match ensure_confirmed(
        "confirm_password",
        &form.password,
        form.confirm_password.as_ref(),
    ) {
        Ok(()) => {
            s.auth
                .change_password(&p, p.user_id, Some(&form.current_password), &form.password)
                .await
        }
        Err(e) => Err(e),
    };
    account_outcome(&s, &ui, &p, result, Section::Password, "password_changed").await
}

/// `POST /ui/account/sessions/{id}/revoke`.
pub(super) async fn revoke_session(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<CsrfForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match Uuid::parse_str(&id) {
        Ok(id) => s.auth.revoke_device(&p, id).await,
        Err(_) => Err(Error::NotFound),
    };
    account_outcome(&s, &ui, &p, result, Section::Sessions, "session_revoked").await
}

/// The answer to the setup form: the secret as a QR code and as text, the backup codes, and
/// the form for the first code. Without `setup` it is the page after a wrong first code (no
/// JavaScript): the form again, and a way to start over.
#[derive(Template)]
#[template(path = "ui/two_factor_setup.html")]
struct SetupPage {
    c: Chrome,
    t: Messages,
    setup: Option<SetupView>,
    codes: Vec<String>,
    error: Option<String>,
    notice: Option<String>,
    field: &'static str,
}

struct SetupView {
    /// `data:image/png;base64,…`
    qr: String,
    /// The base32 secret in groups of four, for typing.
    secret: String,
    otpauth_uri: String,
}

/// New backup codes, shown once.
#[derive(Template)]
#[template(path = "ui/backup_codes.html")]
struct BackupCodesPage {
    c: Chrome,
    t: Messages,
    codes: Vec<String>,
}

/// A base32 secret in groups of four characters, as authenticator apps accept it typed.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `POST /ui/account/2fa/setup`: a new secret and backup codes, shown in this answer only.
pub(super) async fn two_factor_setup(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<CsrfForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match s.two_factor.setup(&p, p.user_id).await {
        Ok(setup) => {
            let mut headers = HeaderMap::new();
            // The QR code is an inline PNG: this answer alone may show `data:` images.
            headers.insert(
                axum::http::header::CONTENT_SECURITY_POLICY,
                axum::http::HeaderValue::from_static(CSP_DATA_IMAGES),
            );
            let page = SetupPage {
                c: ui.chrome(&s, &mut headers, nav(&p), "account"),
                t: ui.t,
                setup: Some(SetupView {
                    qr: format!("data:image/png;base64,{}", setup.qr_png_base64),
                    secret: grouped(&setup.secret),
                    otpauth_uri: setup.otpauth_uri,
                }),
                codes: setup.backup_codes,
                error: None,
                notice: None,
                field: "",
            };
            html(StatusCode::OK, headers, &page)
        }
        Err(e) => {
            let result = Err(e);
            account_outcome(&s, &ui, &p, result, Section::TwoFactor, "").await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    code: String,
    /// Needed when the sign-in is more than 5 minutes old.
    #[serde(default)]
    password: String,
}

/// `POST /ui/account/2fa/enable`: the first code from the app turns two-factor on.
pub(super) async fn two_factor_enable(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<CodeForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let password = (!form.password.is_empty()).then(|| SecretString::from(form.password));
    match s
        .two_factor
        .enable(&p, p.user_id, &form.code, password.as_ref())
        .await
    {
        Ok(()) => ui.done(HeaderMap::new(), "/ui/account?notice=two_factor_enabled"),
        // A wrong or malformed first code, or a password that is needed or wrong: try again
        // (the app holds the secret already).
        Err(
            e @ (Error::IncorrectCode
            | Error::Validation(_)
            | Error::IncorrectPassword
            | Error::MfaState {
                code: "reauthentication_required",
                ..
            }),
        ) => {
            let on = if matches!(e, Error::IncorrectCode | Error::Validation(_)) {
                "code"
            } else {
                "password"
            };
            let f = Failure::from_error(ui.t, &e).on(on);
            if ui.wants_json {
                return ui.json_failure(&f, HeaderMap::new());
            }
            let mut headers = HeaderMap::new();
            let page = SetupPage {
                c: ui.chrome(&s, &mut headers, nav(&p), "account"),
                t: ui.t,
                setup: None,
                codes: Vec::new(),
                error: Some(f.message),
                notice: None,
                field: on,
            };
            html(f.status, headers, &page)
        }
        Err(e) => account_outcome(&s, &ui, &p, Err(e), Section::TwoFactor, "").await,
    }
}

#[derive(Deserialize)]
pub(super) struct ReauthForm {
    #[serde(default)]
    csrf_token: String,
    password: SecretString,
    /// An app code or a backup code (six digits are an app code).
    #[serde(default)]
    code: String,
}

/// `POST /ui/account/2fa/disable`: needs the password and a current code.
pub(super) async fn two_factor_disable(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ReauthForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let factor = SecondFactor::from_otp(form.code.trim());
    let result = s
        .two_factor
        .disable(&p, p.user_id, &form.password, &factor)
        .await;
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::TwoFactorOff,
        "two_factor_disabled",
    )
    .await
}

/// `POST /ui/account/2fa/backup-codes`: a new set (password and a current code), shown once in
/// this answer; the old set stops working.
pub(super) async fn two_factor_backup_codes(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<ReauthForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let factor = SecondFactor::from_otp(form.code.trim());
    match s
        .two_factor
        .regenerate_backup_codes(&p, p.user_id, &form.password, &factor)
        .await
    {
        Ok(codes) => {
            let mut headers = HeaderMap::new();
            let page = BackupCodesPage {
                c: ui.chrome(&s, &mut headers, nav(&p), "account"),
                t: ui.t,
                codes,
            };
            html(StatusCode::OK, headers, &page)
        }
        Err(e) => account_outcome(&s, &ui, &p, Err(e), Section::BackupCodes, "").await,
    }
}
