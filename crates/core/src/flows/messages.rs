//! Private messages between accounts (seed 001, "Criptografia de mensagens"; issue 17).
//!
//! **Encryption.** Each message gets a key of its own, a fresh AES-256-GCM key from the
//! CSPRNG. Its content — the subject, the body and the recipient as the sender typed it, as
//! JSON — is sealed under that key with the message id as associated data. The message key is
//! then stored wrapped twice through the envelope ([`crate::envelope`]): under the sender's data
//! key (`sender_key`) and under the recipient's (`recipient_key`), each wrapping bound to the
//! message id, its column and its owner. The data keys are themselves wrapped by the RSA
//! key-encryption key, so the seed's "AES for the messages, RSA protecting the AES keys" holds
//! with one more level. A ciphertext copied onto another row, another party's column or another
//! account fails to open (`DataUnreadable`, a `500 data_unreadable` without detail); nothing else
//! of the account is affected. Only the two parties' requests open a message: no route, not even
//! an administrator's, returns another account's messages, and no log line carries a subject or
//! body.
//!
//! **Deletion is crypto-shredding.** Deleting a message drops the caller's wrapped key only (the
//! other party keeps theirs); the row goes when neither party holds a copy. Deleting an account
//! destroys its data key, so every copy wrapped for it can no longer be opened by anyone, while
//! the other party's copies stay readable to them.
//!
//! **No enumeration.** A message to a name or address that is no account, to a disabled account,
//! or to one that turned messages off (`accept_messages = false`) is answered exactly as a
//! delivered one: same status and body, the same store write, the same encryption work (the
//! recipient's wrapping is replaced by one more under the sender's key, which is discarded).
//! The sender keeps it in their sent folder, with the recipient shown as typed — for delivered
//! messages too — and senders are never told whether or when a message was read. The recipient
//! gets nothing. What remains observable is timing when the recipient's data key is not in
//! memory yet (one RSA unwrapping, about a millisecond), see the README.
//!
//! **Limits.** Subjects have 1 to [`MAX_SUBJECT_CHARS`] characters, bodies 1 byte to
//! [`MAX_BODY_BYTES`] (60 KiB, within the 64 KiB request limit). Each account may send
//! [`MessageSettings::per_hour`] messages an hour (`MESSAGES_PER_HOUR`), a token bucket per
//! sender held by each instance, checked before the recipient is looked up. A message to oneself
//! is allowed (a note to self): it is in both folders, and deleting it deletes both copies.
//!
//! A service of its own rather than more of [`crate::Auth`]: it needs only the store, the
//! envelope, the clock and its limits.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::crypto::{AeadKey, framed};
use crate::domain::login_key;
use crate::domain::message::{MessageBox, NewMessage, StoredMessage};
use crate::envelope::{Aad, Envelope, KeyOwner};
use crate::error::Error;
use crate::service::Principal;
use crate::store::Store;

/// Most characters of a subject.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Most bytes (UTF-8) of a body: 60 KiB.
pub const MAX_BODY_BYTES: usize = 60 * 1024;
/// Most characters of the recipient as typed (the longest address).
pub const MAX_TO_CHARS: usize = 254;
/// Most messages to a page.
pub const MAX_PER_PAGE: u64 = 100;
/// Messages to a page unless asked otherwise.
pub const DEFAULT_PER_PAGE: u64 = 20;
/// Messages an account may send per hour unless configured (`MESSAGES_PER_HOUR`).
pub const DEFAULT_PER_HOUR: u32 = 60;
/// The table whose columns the wrapped keys are bound to.
const TABLE: &str = "messages";

/// Settings of [`Messages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSettings {
    /// Messages one account may send per hour (a token bucket: this many at once, then one
    /// every `3600 / per_hour` seconds). At least 1.
    pub per_hour: u32,
}

impl Default for MessageSettings {
    fn default() -> Self {
        Self {
            per_hour: DEFAULT_PER_HOUR,
        }
    }
}

/// What a message says, as sealed: the recipient as typed, the subject and the body.
#[derive(Serialize, Deserialize)]
struct Content {
    to: String,
    subject: String,
    body: String,
}

/// A message as one of its parties reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Identifier.
    pub id: Uuid,
    /// The folder the caller has it in (`Inbox` when it is a message to oneself).
    pub folder: MessageBox,
    /// The sender's username (`None` once their account is deleted).
    pub from: Option<String>,
    /// The recipient as the sender typed it.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// When the recipient first opened it: shown to the recipient only (a sender is never told,
    /// see the module documentation).
    pub read_at: Option<DateTime<Utc>>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Subject and body stay out of logs and panics.
        f.debug_struct("Message")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A folder entry.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// Identifier.
    pub id: Uuid,
    /// The sender's username (`None` once their account is deleted).
    pub from: Option<String>,
    /// The recipient as typed (`None` when the message cannot be read).
    pub to: Option<String>,
    /// Subject (`None` when the message cannot be read).
    pub subject: Option<String>,
    /// Inbox only: not opened yet.
    pub unread: bool,
    /// False when its copy could not be decrypted (logged); opening it answers `DataUnreadable`.
    pub readable: bool,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for MessageSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSummary")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One page of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageList {
    /// Newest first.
    pub items: Vec<MessageSummary>,
    /// Messages in the folder.
    pub total: u64,
    /// This page (from 1).
    pub page: u64,
    /// Page size.
    pub per_page: u64,
}

/// A message to send, as received.
#[derive(Clone, Default)]
pub struct Draft {
    /// Username or email address of the recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Draft(..)")
    }
}

/// A sender's token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// The private-messages service.
pub struct Messages {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
    settings: MessageSettings,
    /// Sending buckets by sender. A bucket idle for an hour has refilled completely, so
    /// forgetting it then changes nothing.
    buckets: moka::sync::Cache<Uuid, Arc<Mutex<Bucket>>>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The associated data of a message's content: its id.
fn content_aad(id: Uuid) -> Vec<u8> {
    framed(&[b"porteiro-message-v1", id.as_bytes()])
}

/// Where a party's wrapped copy of a message key lives.
fn key_aad<'a>(column: &'static str, record: &'a str, owner: Uuid) -> Aad<'a> {
    Aad {
        table: TABLE,
        column,
        record,
        owner: KeyOwner::User(owner),
    }
}

fn invalid(field: &'static str, code: &'static str, message: &str) -> Error {
    Error::validation(field, code, message)
}

/// Checks a draft: the recipient, subject and body as they will be sealed (trimmed).
///
/// # Errors
/// `Validation`: `invalid_recipient`, `invalid_subject`, `invalid_body`.
pub fn check_draft(draft: &Draft) -> Result<CheckedDraft, Error> {
    let to = draft.to.trim();
    if to.is_empty() || to.chars().count() > MAX_TO_CHARS || to.chars().any(char::is_control) {
        return Err(invalid(
            "to",
            "invalid_recipient",
            "Give the recipient's username or email address.",
        ));
    }
    let subject = draft.subject.trim();
    if subject.is_empty()
        || subject.chars().count() > MAX_SUBJECT_CHARS
        || subject.chars().any(char::is_control)
    {
        return Err(invalid(
            "subject",
            "invalid_subject",
            "The subject has 1 to 200 characters, on one line.",
        ));
    }
    let body = draft.body.trim_end();
    if body.trim().is_empty() || body.len() > MAX_BODY_BYTES {
        return Err(invalid(
            "body",
            "invalid_body",
            "The message must not be empty and has at most 60 KiB.",
        ));
    }
    Ok(CheckedDraft {
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
    })
}

/// A checked draft (trimmed), ready to seal.
pub struct CheckedDraft {
    to: String,
    subject: String,
    body: String,
}

impl Messages {
    /// The service over `store`, sealing with `envelope`.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        envelope: Arc<Envelope>,
        clock: Arc<dyn Clock>,
        settings: MessageSettings,
    ) -> Self {
        Self {
            store,
            envelope,
            clock,
            settings: MessageSettings {
                per_hour: settings.per_hour.max(1),
            },
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    /// The settings in force.
    #[must_use]
    pub const fn settings(&self) -> MessageSettings {
        self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    /// Takes one sending token of `sender`.
    fn take_token(&self, sender: Uuid, now: DateTime<Utc>) -> Result<(), Error> {
        let capacity = f64::from(self.settings.per_hour);
        let rate = capacity / 3600.0;
        let bucket = self.buckets.get_with(sender, || {
            Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                at: now,
            }))
        });
        let mut b = bucket
            .lock()
            .map_err(|_| anyhow::anyhow!("message bucket lock poisoned"))?;
        #[allow(clippy::cast_precision_loss)]
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let retry_after_secs = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
            Err(Error::RateLimited { retry_after_secs })
        }
    }

    /// Sends a message from the caller to `draft.to` (a username or an email address). The
    /// answer is the caller's copy, the same whether or not the message was delivered (see the
    /// module documentation).
    ///
    /// # Errors
    /// `Validation` (`invalid_recipient`, `invalid_subject`, `invalid_body`), `RateLimited`,
    /// `NotFound` (the caller's account is gone).
    pub async fn send(&self, principal: &Principal, draft: &Draft) -> Result<Message, Error> {
        let checked = check_draft(draft)?;
        let now = self.now();
        let sender = principal.user_id;
        self.take_token(sender, now)?;
        let recipient = self
            .store
            .user_by_login(&login_key(&checked.to))
            .await?
            .filter(|u| u.is_active && u.accept_messages)
            .map(|u| u.id);
        let id = Uuid::now_v7();
        let record = id.to_string();
        let key = AeadKey::generate();
        let content = Content {
            to: checked.to,
            subject: checked.subject,
            body: checked.body,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&content).map_err(|e| anyhow::anyhow!("message encoding: {e}"))?,
        );
        let sealed = key.seal(&content_aad(id), &plain);
        let sender_key = self
            .envelope
            .seal(&key_aad("sender_key", &record, sender), key.expose())
            .await?;
        let recipient_key = match recipient {
            Some(to) => Some(
                self.envelope
                    .seal(&key_aad("recipient_key", &record, to), key.expose())
                    .await?,
            ),
            None => {
                // The same work as a delivery, thrown away: the answer and its cost must not
                // tell whether the recipient exists.
                let _ = self
                    .envelope
                    .seal(&key_aad("recipient_key", &record, sender), key.expose())
                    .await?;
                None
            }
        };
        let stored = self
            .store
            .insert_message(&NewMessage {
                id,
                sender_id: sender,
                recipient_id: recipient,
                sender_key,
                recipient_key,
                content: sealed,
                created_at: now,
            })
            .await?;
        if !stored {
            return Err(Error::NotFound);
        }
        Ok(Message {
            id,
            folder: MessageBox::Sent,
            from: None,
            to: content.to,
            subject: content.subject,
            body: content.body,
            read_at: None,
            created_at: now,
        })
    }

    /// Opens `user_id`'s copy of `m` (the recipient's when they hold it, else the sender's).
    async fn open(&self, m: &StoredMessage, user_id: Uuid) -> Result<(MessageBox, Content), Error> {
        let record = m.id.to_string();
        let (folder, column, wrapped) = if m.received_by(user_id) {
            (
                MessageBox::Inbox,
                "recipient_key",
                m.recipient_key.as_deref(),
            )
        } else {
            (MessageBox::Sent, "sender_key", m.sender_key.as_deref())
        };
        let wrapped = wrapped.ok_or(Error::NotFound)?;
        let key_bytes = self
            .envelope
            .open(&key_aad(column, &record, user_id), wrapped)
            .await?;
        let unreadable = || {
            tracing::warn!(table = TABLE, record = %m.id, "message content could not be decrypted");
            Error::DataUnreadable
        };
        let key = AeadKey::from_bytes(&key_bytes).map_err(|_| unreadable())?;
        let plain = key
            .open(&content_aad(m.id), &m.content)
            .map_err(|_| unreadable())?;
        let content: Content = serde_json::from_slice(&plain).map_err(|_| unreadable())?;
        Ok((folder, content))
    }

    /// A page of the caller's `folder`, newest first. A message whose copy cannot be decrypted
    /// is listed without subject (`readable: false`), so one damaged row does not hide the
    /// others.
    ///
    /// # Errors
    /// `Validation` (`invalid_pagination`: `page` from 1, `per_page` 1 to 100).
    pub async fn list(
        &self,
        principal: &Principal,
        folder: MessageBox,
        page: u64,
        per_page: u64,
    ) -> Result<MessageList, Error> {
        let offset = page
            .checked_sub(1)
            .and_then(|p| p.checked_mul(per_page))
            .filter(|o| i64::try_from(*o).is_ok());
        let (Some(offset), true) = (offset, (1..=MAX_PER_PAGE).contains(&per_page)) else {
            return Err(Error::validation(
                "page",
                "invalid_pagination",
                "page starts at 1; per_page is 1 to 100.",
            ));
        };
        let user_id = principal.user_id;
        let limit = u32::try_from(per_page).unwrap_or(20);
        let stored = self.store.messages(user_id, folder, limit, offset).await?;
        let mut items = Vec::with_capacity(stored.items.len());
        for m in stored.items {
            let opened = match self.open_in(&m, user_id, folder).await {
                Ok(c) => Some(c),
                Err(Error::DataUnreadable) => None,
                Err(e) => return Err(e),
            };
            items.push(MessageSummary {
                id: m.id,
                from: m.sender_name.clone(),
                readable: opened.is_some(),
                to: opened.as_ref().map(|c| c.to.clone()),
                subject: opened.map(|c| c.subject),
                unread: folder == MessageBox::Inbox && m.read_at.is_none(),
                created_at: m.created_at,
            });
        }
        Ok(MessageList {
            items,
            total: stored.total,
            page,
            per_page,
        })
    }

    /// Opens the copy of `m` that belongs in `folder`.
    async fn open_in(
        &self,
        m: &StoredMessage,
        user_id: Uuid,
        folder: MessageBox,
    ) -> Result<Content, Error> {
        match folder {
            MessageBox::Inbox => self.open(m, user_id).await.map(|(_, c)| c),
            MessageBox::Sent => {
                // A note to self listed among sent messages: the sender's copy.
                let as_sent = StoredMessage {
                    recipient_key: None,
                    ..m.clone()
                };
                self.open(&as_sent, user_id).await.map(|(_, c)| c)
            }
        }
    }

    /// Reads one of the caller's messages; opening a received one marks it read.
    ///
    /// # Errors
    /// `NotFound` (no such message, someone else's, or deleted by the caller),
    /// `DataUnreadable` (its copy cannot be decrypted).
    pub async fn read(&self, principal: &Principal, id: Uuid) -> Result<Message, Error> {
        let user_id = principal.user_id;
        let m = self
            .store
            .message(user_id, id)
            .await?
            .ok_or(Error::NotFound)?;
        let (folder, content) = self.open(&m, user_id).await?;
        let mut read_at = None;
        if folder == MessageBox::Inbox {
            read_at = m.read_at;
            if read_at.is_none() {
                let now = self.now();
                if self.store.mark_message_read(user_id, id, now).await? {
                    read_at = Some(now);
                }
            }
        }
        Ok(Message {
            id,
            folder,
            from: m.sender_name,
            to: content.to,
            subject: content.subject,
            body: content.body,
            read_at,
            created_at: m.created_at,
        })
    }

    /// Deletes the caller's copy of a message (both copies of a message to oneself). The other
    /// party's copy stays.
    ///
    /// # Errors
    /// `NotFound` (no such message, someone else's, or deleted already).
    pub async fn delete(&self, principal: &Principal, id: Uuid) -> Result<(), Error> {
        if self.store.delete_message(principal.user_id, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(to: &str, subject: &str, body: &str) -> Draft {
        Draft {
            to: to.to_owned(),
            subject: subject.to_owned(),
            body: body.to_owned(),
        }
    }

    fn code(d: &Draft) -> Option<&'static str> {
        match check_draft(d) {
            Ok(_) => None,
            Err(Error::Validation(f)) => Some(f.code),
            Err(_) => Some("other"),
        }
    }

    #[test]
    fn drafts_are_bounded() {
        assert_eq!(code(&draft("bia", "Oi", "Olá")), None);
        assert_eq!(code(&draft(" ", "Oi", "Olá")), Some("invalid_recipient"));
        assert_eq!(
            code(&draft("a\u{0}b", "Oi", "Olá")),
            Some("invalid_recipient")
        );
        assert_eq!(code(&draft("bia", "", "Olá")), Some("invalid_subject"));
        assert_eq!(code(&draft("bia", "a\nb", "Olá")), Some("invalid_subject"));
        assert_eq!(code(&draft("bia", &"é".repeat(200), "x")), None);
        assert_eq!(
            code(&draft("bia", &"é".repeat(201), "x")),
            Some("invalid_subject")
        );
        assert_eq!(code(&draft("bia", "Oi", " \n ")), Some("invalid_body"));
        assert_eq!(code(&draft("bia", "Oi", &"x".repeat(MAX_BODY_BYTES))), None);
        assert_eq!(
            code(&draft("bia", "Oi", &"x".repeat(MAX_BODY_BYTES + 1))),
            Some("invalid_body")
        );
    }

    #[test]
    fn content_is_bound_to_its_message() {
        let key = AeadKey::generate();
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let sealed = key.seal(&content_aad(a), b"hello");
        assert!(key.open(&content_aad(a), &sealed).is_ok());
        assert!(key.open(&content_aad(b), &sealed).is_err());
    }
}
