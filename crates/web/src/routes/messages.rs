//! `/api/messages`: private messages between accounts (seed 001, issue 17), over
//! [`porteiro_core::flows::messages::Messages`]. Every route needs a signed-in caller (bearer)
//! and acts on the caller's own copies only: there is no route, for administrators either,
//! that reads another account's messages. Subjects and bodies are never logged.
//!
//! Sending answers `201` with the caller's copy whether or not the recipient exists, is
//! enabled and accepts messages: what the answer says, and what it costs, does not depend on
//! the recipient (see the flow's documentation).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Utc};
use porteiro_core::Error;
use porteiro_core::domain::message::MessageBox;
use porteiro_core::flows::messages::{
    DEFAULT_PER_PAGE, Draft, Message, MessageList, MessageSummary,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, Bearer};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok, ok_with};

/// Send body.
#[derive(Deserialize, ToSchema)]
pub struct SendMessage {
    /// The recipient's username or email address.
    #[schema(example = "bia")]
    pub to: String,
    /// Subject: 1 to 200 characters, one line.
    pub subject: String,
    /// Body: 1 byte to 60 KiB (UTF-8).
    pub body: String,
}

/// The folder query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MessageListQuery {
    /// `inbox` (default) or `sent`.
    #[serde(rename = "box")]
    pub folder: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<u64>,
    /// Page size, 1–100 (default 20).
    pub per_page: Option<u64>,
}

/// A message as one of its parties reads it.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// Identifier.
    pub id: Uuid,
    /// `inbox` (received; a message to yourself is here) or `sent`.
    #[serde(rename = "box")]
    pub folder: &'static str,
    /// The sender's username, for received messages (null once the sender's account is deleted,
    /// and for sent ones).
    pub from: Option<String>,
    /// The recipient as the sender typed it.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Received messages: when first opened. Never shown to the sender.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let inbox = m.folder == MessageBox::Inbox;
        Self {
            id: m.id,
            folder: m.folder.as_str(),
            from: m.from.filter(|_| inbox),
            to: m.to,
            subject: m.subject,
            body: m.body,
            read_at: m.read_at.filter(|_| inbox),
            created_at: m.created_at,
        }
    }
}

/// A folder entry.
#[derive(Serialize, ToSchema)]
pub struct MessageSummaryView {
    /// Identifier.
    pub id: Uuid,
    /// The sender's username (inbox; null once the sender's account is deleted).
    pub from: Option<String>,
    /// The recipient as the sender typed it (null when unreadable).
    pub to: Option<String>,
    /// Subject (null when unreadable).
    pub subject: Option<String>,
    /// Inbox: not opened yet (always false in the sent folder).
    pub unread: bool,
    /// False when this copy could not be decrypted: opening it answers `500 data_unreadable`.
    pub readable: bool,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl MessageSummaryView {
    fn new(m: MessageSummary, folder: MessageBox) -> Self {
        Self {
            id: m.id,
            from: m.from.filter(|_| folder == MessageBox::Inbox),
            to: m.to,
            subject: m.subject,
            unread: m.unread,
            readable: m.readable,
            created_at: m.created_at,
        }
    }
}

/// One page of a folder.
#[derive(Serialize, ToSchema)]
pub struct MessageListView {
    /// `inbox` or `sent`.
    #[serde(rename = "box")]
    pub folder: &'static str,
    /// Newest first.
    pub items: Vec<MessageSummaryView>,
    /// Messages in the folder.
    pub total: u64,
    /// This page.
    pub page: u64,
    /// Page size.
    pub per_page: u64,
    /// Pages in all.
    pub total_pages: u64,
}

impl MessageListView {
    fn new(list: MessageList, folder: MessageBox) -> Self {
        Self {
            folder: folder.as_str(),
            total_pages: list.total.div_ceil(list.per_page.max(1)),
            items: list
                .items
                .into_iter()
                .map(|m| MessageSummaryView::new(m, folder))
                .collect(),
            total: list.total,
            page: list.page,
            per_page: list.per_page,
        }
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, send))
        .routes(routes!(get_one, delete))
}

/// Parses the `box` query value.
///
/// # Errors
/// `Validation` (`invalid_box`).
pub fn parse_folder(value: Option<&str>) -> Result<MessageBox, Error> {
    match value {
        None => Ok(MessageBox::Inbox),
        Some(v) => MessageBox::parse(v)
            .ok_or_else(|| Error::validation("box", "invalid_box", "box is inbox or sent.")),
    }
}

/// Send a private message.
///
/// `to` is a username or an email address. The answer is `201` with your copy (in your sent
/// folder) whether or not that account exists, is enabled and accepts messages: messages to
/// anyone else are kept in your sent folder only, and nothing tells them apart (not even a read
/// time). Subject and body are encrypted at rest: a key per message, wrapped for you and for the
/// recipient. A message to yourself is allowed (in both of your folders). At most
/// `MESSAGES_PER_HOUR` (default 60) per account.
#[utoipa::path(post, path = "/api/messages", tag = "messages", request_body = SendMessage, security(("bearer" = [])),
    responses((status = 201, body = Envelope<MessageView>),
              (status = 400, body = ErrorBody, description = "`invalid_recipient`, `invalid_subject`, `invalid_body`, `invalid_json`, `invalid_request`"),
              (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "Body over 64 KiB"),
              (status = 429, body = ErrorBody, description = "`too_many_requests`, with `Retry-After`")))]
async fn send(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppJson(req): AppJson<SendMessage>,
) -> ApiResult<Response> {
    let draft = Draft {
        to: req.to,
        subject: req.subject,
        body: req.body,
    };
    let sent = s.messages.send(&p, &draft).await?;
    Ok((
        StatusCode::CREATED,
        ok_with("Message sent.", MessageView::from(sent)),
    )
        .into_response())
}

/// A page of your inbox or sent folder, newest first, with the total.
#[utoipa::path(get, path = "/api/messages", tag = "messages", params(MessageListQuery), security(("bearer" = [])),
    responses((status = 200, body = Envelope<MessageListView>),
              (status = 400, body = ErrorBody, description = "`invalid_box`, `invalid_pagination`, `invalid_query`"),
              (status = 401, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppQuery(q): AppQuery<MessageListQuery>,
) -> ApiResult<Json<Envelope<MessageListView>>> {
    let folder = parse_folder(q.folder.as_deref())?;
    let list = s
        .messages
        .list(
            &p,
            folder,
            q.page.unwrap_or(1),
            q.per_page.unwrap_or(DEFAULT_PER_PAGE),
        )
        .await?;
    Ok(ok(MessageListView::new(list, folder)))
}

/// One of your messages; opening a received one marks it read.
#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<MessageView>),
              (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "No such message, someone else's, or deleted"),
              (status = 500, body = ErrorBody, description = "`data_unreadable`: your copy cannot be decrypted")))]
async fn get_one(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<MessageView>>> {
    Ok(ok(MessageView::from(s.messages.read(&p, id).await?)))
}

/// Delete your copy of a message (the other party keeps theirs). Your wrapped key is erased,
/// so your copy cannot be recovered.
#[utoipa::path(delete, path = "/api/messages/{id}", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Option<String>>),
              (status = 400, body = ErrorBody, description = "`invalid_path`"),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn delete(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Option<String>>>> {
    s.messages.delete(&p, id).await?;
    Ok(ok_with("Message deleted.", None))
}
