//! Private messages ([`MessageStore`]), for both backends. Rows hold ciphertext only (see
//! [`porteiro_core::flows::messages`]); every statement names the account it acts for and
//! touches only rows where that account holds a copy (its wrapped key is not null). The
//! partial indexes `messages_inbox` and `messages_sent` serve the folders.
//!
//! [`MessageStore`]: porteiro_core::store::MessageStore

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserId;
use porteiro_core::domain::message::{MessageBox, MessagePage, NewMessage, StoredMessage};
use porteiro_core::store::StoreResult;
use uuid::Uuid;

use crate::{Arg, Row, SqlDb};

/// Stores message `$1` from `$2` to `$3` (null: not delivered) while the sender's account
/// exists; a recipient whose account is gone gets no copy.
const INSERT: &str = "insert into messages \
       (id, sender_id, recipient_id, sender_key, recipient_key, content, read_at, created_at) \
     select $1, s.id, r.id, $4, case when r.id is null then null else $5 end, $6, null, $7 \
     from users s left join users r on r.id = $3 where s.id = $2";

const COLUMNS: &str = "m.id, m.sender_id, m.recipient_id, m.sender_key, m.recipient_key, \
       m.content, m.read_at, m.created_at, s.username as sender_name \
     from messages m left join users s on s.id = m.sender_id";

/// Account `$1`'s inbox, newest first, `$2` from `$3` on.
const INBOX: &str = "where m.recipient_id = $1 and m.recipient_key is not null \
     order by m.created_at desc, m.id desc limit $2 offset $3";

/// Account `$1`'s sent folder, newest first, `$2` from `$3` on.
const SENT: &str = "where m.sender_id = $1 and m.sender_key is not null \
     order by m.created_at desc, m.id desc limit $2 offset $3";

const INBOX_COUNT: &str =
    "select count(*) as n from messages where recipient_id = $1 and recipient_key is not null";

const SENT_COUNT: &str =
    "select count(*) as n from messages where sender_id = $1 and sender_key is not null";

/// Message `$1` where account `$2` holds a copy.
const ONE: &str = "where m.id = $1 and ((m.recipient_id = $2 and m.recipient_key is not null) \
       or (m.sender_id = $2 and m.sender_key is not null))";

const MARK_READ: &str = "update messages set read_at = $3 \
     where id = $1 and recipient_id = $2 and recipient_key is not null and read_at is null";

/// Drops account `$2`'s copies of message `$1`.
const DROP_COPY: &str = "update messages set \
       recipient_key = case when recipient_id = $2 then null else recipient_key end, \
       sender_key = case when sender_id = $2 then null else sender_key end \
     where id = $1 and ((recipient_id = $2 and recipient_key is not null) \
       or (sender_id = $2 and sender_key is not null))";

/// Removes message `$1` once no party holds a copy (a deleted account holds none: its data key
/// is destroyed).
const DELETE_ORPHAN: &str = "delete from messages where id = $1 \
       and (sender_key is null or sender_id is null) \
       and (recipient_key is null or recipient_id is null)";

fn message(r: &Row) -> StoreResult<StoredMessage> {
    Ok(StoredMessage {
        id: r.uuid("id")?,
        sender_id: r.opt_uuid("sender_id")?,
        sender_name: r.opt_text("sender_name")?,
        recipient_id: r.opt_uuid("recipient_id")?,
        sender_key: r.opt_bytes("sender_key")?,
        recipient_key: r.opt_bytes("recipient_key")?,
        content: r.bytes("content")?,
        read_at: r.opt_time("read_at")?,
        created_at: r.time("created_at")?,
    })
}

/// [`porteiro_core::store::MessageStore::insert_message`].
///
/// # Errors
/// On store failure.
pub async fn insert(db: &dyn SqlDb, m: &NewMessage) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    let n = tx
        .execute(
            INSERT,
            &[
                Arg::Uuid(m.id),
                Arg::Uuid(m.sender_id),
                Arg::OptUuid(m.recipient_id),
                Arg::Bytes(&m.sender_key),
                Arg::OptBytes(m.recipient_key.as_deref()),
                Arg::Bytes(&m.content),
                Arg::Time(m.created_at),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// [`porteiro_core::store::MessageStore::messages`].
///
/// # Errors
/// On store failure.
pub async fn list(
    db: &dyn SqlDb,
    user_id: UserId,
    folder: MessageBox,
    limit: u32,
    offset: u64,
) -> StoreResult<MessagePage> {
    let (filter, count) = match folder {
        MessageBox::Inbox => (INBOX, INBOX_COUNT),
        MessageBox::Sent => (SENT, SENT_COUNT),
    };
    let sql = format!("select {COLUMNS} {filter}");
    let rows = db
        .read(
            &sql,
            &[
                Arg::Uuid(user_id),
                Arg::Int(i64::from(limit)),
                Arg::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
            ],
        )
        .await?;
    let items = rows.iter().map(message).collect::<StoreResult<Vec<_>>>()?;
    let total = db
        .read(count, &[Arg::Uuid(user_id)])
        .await?
        .first()
        .map(|r| r.big("n"))
        .transpose()?
        .unwrap_or(0);
    Ok(MessagePage {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// [`porteiro_core::store::MessageStore::message`].
///
/// # Errors
/// On store failure.
pub async fn one(db: &dyn SqlDb, user_id: UserId, id: Uuid) -> StoreResult<Option<StoredMessage>> {
    let sql = format!("select {COLUMNS} {ONE}");
    db.read(&sql, &[Arg::Uuid(id), Arg::Uuid(user_id)])
        .await?
        .first()
        .map(message)
        .transpose()
}

/// [`porteiro_core::store::MessageStore::mark_message_read`].
///
/// # Errors
/// On store failure.
pub async fn mark_read(
    db: &dyn SqlDb,
    user_id: UserId,
    id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    let n = tx
        .execute(
            MARK_READ,
            &[Arg::Uuid(id), Arg::Uuid(user_id), Arg::Time(now)],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// [`porteiro_core::store::MessageStore::delete_message`].
///
/// # Errors
/// On store failure.
pub async fn delete(db: &dyn SqlDb, user_id: UserId, id: Uuid) -> StoreResult<bool> {
    let mut tx = db.begin(false).await?;
    let dropped = tx
        .execute(DROP_COPY, &[Arg::Uuid(id), Arg::Uuid(user_id)])
        .await?
        == 1;
    if dropped {
        tx.execute(DELETE_ORPHAN, &[Arg::Uuid(id)]).await?;
    }
    tx.commit().await?;
    Ok(dropped)
}

/// Implements [`porteiro_core::store::MessageStore`] for a store type that implements
/// [`SqlDb`](crate::SqlDb).
#[macro_export]
macro_rules! impl_message_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::porteiro_core::store::MessageStore for $store {
            async fn insert_message(
                &self,
                message: &::porteiro_core::domain::message::NewMessage,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::messages::insert(self, message).await
            }
            async fn messages(
                &self,
                user_id: ::uuid::Uuid,
                folder: ::porteiro_core::domain::message::MessageBox,
                limit: u32,
                offset: u64,
            ) -> ::porteiro_core::store::StoreResult<::porteiro_core::domain::message::MessagePage>
            {
                $crate::messages::list(self, user_id, folder, limit, offset).await
            }
            async fn message(
                &self,
                user_id: ::uuid::Uuid,
                id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<
                Option<::porteiro_core::domain::message::StoredMessage>,
            > {
                $crate::messages::one(self, user_id, id).await
            }
            async fn mark_message_read(
                &self,
                user_id: ::uuid::Uuid,
                id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::messages::mark_read(self, user_id, id, now).await
            }
            async fn delete_message(
                &self,
                user_id: ::uuid::Uuid,
                id: ::uuid::Uuid,
            ) -> ::porteiro_core::store::StoreResult<bool> {
                $crate::messages::delete(self, user_id, id).await
            }
        }
    };
}
