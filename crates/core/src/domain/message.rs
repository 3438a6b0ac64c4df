//! Private messages between accounts, as stored (see [`crate::flows::messages`]).
//!
//! The store holds ciphertext only: `content` is the message (subject, body and the recipient
//! as the sender typed it) under a key of its own, and that key is stored wrapped once per
//! party (`sender_key`, `recipient_key`) under the party's data key. A party's copy is gone
//! when their wrapped key is null.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;

/// Which of a user's two folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageBox {
    /// Messages the user received (and still has).
    Inbox,
    /// Messages the user sent (and still has).
    Sent,
}

impl MessageBox {
    /// `inbox` or `sent`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Sent => "sent",
        }
    }

    /// Parses `inbox` or `sent`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbox" => Some(Self::Inbox),
            "sent" => Some(Self::Sent),
            _ => None,
        }
    }
}

/// A message to store.
#[derive(Clone)]
pub struct NewMessage {
    /// Identifier (bound into every ciphertext of the row).
    pub id: Uuid,
    /// The sender.
    pub sender_id: UserId,
    /// The recipient; `None` when the message is not delivered (unknown, disabled or opted-out
    /// recipient): the sender keeps their copy, nobody else gets one.
    pub recipient_id: Option<UserId>,
    /// The message key wrapped under the sender's data key.
    pub sender_key: Vec<u8>,
    /// The message key wrapped under the recipient's data key (`None` with `recipient_id`).
    pub recipient_key: Option<Vec<u8>>,
    /// The sealed content.
    pub content: Vec<u8>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A stored message as one of its parties sees the row.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Identifier.
    pub id: Uuid,
    /// The sender (`None` once their account is deleted).
    pub sender_id: Option<UserId>,
    /// The sender's username now (`None` once their account is deleted).
    pub sender_name: Option<String>,
    /// The recipient (`None` when not delivered, or once their account is deleted).
    pub recipient_id: Option<UserId>,
    /// The sender's wrapped copy of the message key (`None`: the sender deleted it).
    pub sender_key: Option<Vec<u8>>,
    /// The recipient's wrapped copy (`None`: not delivered, or the recipient deleted it).
    pub recipient_key: Option<Vec<u8>>,
    /// The sealed content.
    pub content: Vec<u8>,
    /// When the recipient first opened it.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("id", &self.id)
            .field("sender_id", &self.sender_id)
            .field("recipient_id", &self.recipient_id)
            .finish_non_exhaustive()
    }
}

impl StoredMessage {
    /// Whether `user` holds the recipient's copy.
    #[must_use]
    pub fn received_by(&self, user: UserId) -> bool {
        self.recipient_id == Some(user) && self.recipient_key.is_some()
    }

    /// Whether `user` holds the sender's copy.
    #[must_use]
    pub fn sent_by(&self, user: UserId) -> bool {
        self.sender_id == Some(user) && self.sender_key.is_some()
    }
}

/// One page of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    /// The messages, newest first.
    pub items: Vec<StoredMessage>,
    /// Messages in the folder.
    pub total: u64,
}
