//! Private messages in the hosted UI: the inbox and sent folders (`/ui/messages`), reading one
//! (`/ui/messages/{id}`), writing (`/ui/messages/new`) and deleting, over
//! [`porteiro_core::flows::messages::Messages`]; and the account page's "accept messages"
//! toggle.
//!
//! Like the rest of the UI, every form works without JavaScript and carries the CSRF token;
//! pages only ever show the signed-in account's own copies. A message is answered "sent" in the
//! same words whoever the recipient is (see the flow on enumeration), and senders see no read
//! marks.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use porteiro_core::Error;
use porteiro_core::domain::message::MessageBox;
use porteiro_core::flows::messages::{
    DEFAULT_PER_PAGE, Draft, MAX_BODY_BYTES, MAX_SUBJECT_CHARS, MAX_TO_CHARS, Message,
};
use porteiro_core::flows::settings::ProfileChange;
use porteiro_core::service::Principal;
use serde::Deserialize;
use uuid::Uuid;

use super::account::{Section, account_outcome, form_caller, when};
use super::pages::nav;
use super::{Chrome, Failure, Messages, Ui, html};
use crate::state::AppState;

/// Notices a redirect may ask the folder page to show (`?notice=`); anything else is ignored.
const NOTICES: &[&str] = &["message_sent", "message_deleted"];

/// The folder page's query, read leniently: anything malformed falls back to the default.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FolderQuery {
    #[serde(rename = "box")]
    folder: Option<String>,
    page: Option<String>,
    notice: Option<String>,
}

/// One row of a folder.
struct Row {
    id: Uuid,
    /// The other party: the sender's name (inbox) or the recipient as typed (sent).
    who: String,
    subject: String,
    unread: bool,
    readable: bool,
    at: (String, String),
}

#[derive(Template)]
#[template(path = "ui/messages.html")]
struct FolderPage {
    c: Chrome,
    t: Messages,
    inbox: bool,
    folder: &'static str,
    rows: Vec<Row>,
    page: u64,
    pages: u64,
    page_label: String,
    notice: Option<String>,
}

/// `GET /ui/messages[?box=inbox|sent&page=N]`.
pub(super) async fn folder_page(
    State(s): State<AppState>,
    Query(q): Query<FolderQuery>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    let t = ui.t;
    let folder = q
        .folder
        .as_deref()
        .and_then(MessageBox::parse)
        .unwrap_or(MessageBox::Inbox);
    let page = q
        .page
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|p| (1..=1_000_000).contains(p))
        .unwrap_or(1);
    let list = match s.messages.list(&p, folder, page, DEFAULT_PER_PAGE).await {
        Ok(l) => l,
        Err(e) => return ui.refuse(&s, Failure::from_error(t, &e)),
    };
    let inbox = folder == MessageBox::Inbox;
    let rows = list
        .items
        .into_iter()
        .map(|m| Row {
            id: m.id,
            who: if inbox {
                m.from
                    .unwrap_or_else(|| t.get("messages.deleted_account").to_owned())
            } else {
                m.to.unwrap_or_default()
            },
            subject: m
                .subject
                .unwrap_or_else(|| t.get("messages.unreadable").to_owned()),
            unread: m.unread,
            readable: m.readable,
            at: when(t, m.created_at),
        })
        .collect();
    let pages = list.total.div_ceil(list.per_page).max(1);
    let notice = q
        .notice
        .as_deref()
        .filter(|n| NOTICES.contains(n))
        .map(|n| t.get(&format!("notice.{n}")).to_owned());
    let mut headers = HeaderMap::new();
    let view = FolderPage {
        c: ui.chrome(&s, &mut headers, nav(&p), "messages"),
        t,
        inbox,
        folder: folder.as_str(),
        rows,
        page,
        pages,
        page_label: t.fmt(
            "messages.page",
            &[("page", &page.to_string()), ("pages", &pages.to_string())],
        ),
        notice,
    };
    html(StatusCode::OK, headers, &view)
}

#[derive(Template)]
#[template(path = "ui/messages_compose.html")]
struct ComposePage {
    c: Chrome,
    t: Messages,
    to: String,
    subject: String,
    body: String,
    max_to: usize,
    max_subject: usize,
    max_body: usize,
    error: Option<String>,
    field: &'static str,
}

fn compose(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    draft: Draft,
    failure: Option<Failure>,
) -> Response {
    let status = failure.as_ref().map_or(StatusCode::OK, |f| f.status);
    let mut headers = HeaderMap::new();
    let page = ComposePage {
        c: ui.chrome(s, &mut headers, nav(p), "messages"),
        t: ui.t,
        to: draft.to,
        subject: draft.subject,
        body: draft.body,
        max_to: MAX_TO_CHARS,
        max_subject: MAX_SUBJECT_CHARS,
        max_body: MAX_BODY_BYTES,
        field: failure.as_ref().and_then(|f| f.field).unwrap_or_default(),
        error: failure.map(|f| f.message),
    };
    html(status, headers, &page)
}

/// The compose page's query: a reply fills the recipient and subject in.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ComposeQuery {
    to: Option<String>,
    subject: Option<String>,
}

/// `GET /ui/messages/new[?to=…&subject=…]`.
pub(super) async fn compose_page(
    State(s): State<AppState>,
    Query(q): Query<ComposeQuery>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    let clip = |v: Option<String>, max: usize| -> String {
        v.unwrap_or_default().chars().take(max).collect()
    };
    let draft = Draft {
        to: clip(q.to, MAX_TO_CHARS),
        subject: clip(q.subject, MAX_SUBJECT_CHARS),
        body: String::new(),
    };
    compose(&s, &ui, &p, draft, None)
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
}

/// `POST /ui/messages`: sends; on to the sent folder, or the form again with the error.
pub(super) async fn send(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<SendForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let draft = Draft {
        to: form.to,
        subject: form.subject,
        body: form.body,
    };
    match s.messages.send(&p, &draft).await {
        Ok(_) => ui.done(
            HeaderMap::new(),
            "/ui/messages?box=sent&notice=message_sent",
        ),
        Err(e) => {
            let f = Failure::from_error(ui.t, &e);
            if ui.wants_json {
                ui.json_failure(&f, HeaderMap::new())
            } else {
                compose(&s, &ui, &p, draft, Some(f))
            }
        }
    }
}

#[derive(Template)]
#[template(path = "ui/messages_read.html")]
struct ReadPage {
    c: Chrome,
    t: Messages,
    id: Uuid,
    inbox: bool,
    folder: &'static str,
    from: String,
    /// The sender's username, for the reply link (none once their account is deleted).
    reply_to: Option<String>,
    reply_subject: String,
    to: String,
    subject: String,
    body: String,
    at: (String, String),
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::NotFound)
}

/// `GET /ui/messages/{id}`: one message (opening a received one marks it read).
pub(super) async fn read_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    let t = ui.t;
    let m: Message = match parse_id(&id) {
        Ok(id) => match s.messages.read(&p, id).await {
            Ok(m) => m,
            Err(e) => return ui.refuse(&s, Failure::from_error(t, &e)),
        },
        Err(e) => return ui.refuse(&s, Failure::from_error(t, &e)),
    };
    let inbox = m.folder == MessageBox::Inbox;
    let reply_subject = if m.subject.starts_with("Re: ") {
        m.subject.clone()
    } else {
        format!("Re: {}", m.subject)
    }
    .chars()
    .take(MAX_SUBJECT_CHARS)
    .collect();
    let mut headers = HeaderMap::new();
    let page = ReadPage {
        c: ui.chrome(&s, &mut headers, nav(&p), "messages"),
        t,
        id: m.id,
        inbox,
        folder: m.folder.as_str(),
        from: m
            .from
            .clone()
            .unwrap_or_else(|| t.get("messages.deleted_account").to_owned()),
        reply_to: m.from.filter(|_| inbox),
        reply_subject,
        to: m.to,
        subject: m.subject,
        body: m.body,
        at: when(t, m.created_at),
    };
    html(StatusCode::OK, headers, &page)
}

#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    csrf_token: String,
    /// The folder to go back to.
    #[serde(default, rename = "box")]
    folder: String,
}

/// `POST /ui/messages/{id}/delete`: deletes the caller's copy.
pub(super) async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<DeleteForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let result = match parse_id(&id) {
        Ok(id) => s.messages.delete(&p, id).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            let folder = MessageBox::parse(&form.folder).unwrap_or(MessageBox::Inbox);
            ui.done(
                HeaderMap::new(),
                &format!(
                    "/ui/messages?box={}&notice=message_deleted",
                    folder.as_str()
                ),
            )
        }
        Err(e) => ui.refuse(&s, Failure::from_error(ui.t, &e)),
    }
}

#[derive(Deserialize)]
pub(super) struct AcceptForm {
    #[serde(default)]
    csrf_token: String,
    /// Present (any value) when the box is ticked.
    accept_messages: Option<String>,
}

/// `POST /ui/account/accept-messages`: lets other accounts send messages, or stops them.
pub(super) async fn save_accept_messages(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<AcceptForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let change = ProfileChange {
        accept_messages: Some(form.accept_messages.is_some()),
        ..ProfileChange::default()
    };
    let result = s.auth.update_user(&p, p.user_id, change).await.map(|_| ());
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::Messages,
        "accept_messages_saved",
    )
    .await
}
