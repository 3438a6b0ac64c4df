//! Private messages: folders, visibility to the two parties only, per-party deletion and what
//! account deletion leaves. The store sees ciphertext only, so these use marker bytes.

use std::sync::Arc;

use chrono::Duration;
use porteiro_core::domain::ProfileUpdate;
use porteiro_core::domain::message::{MessageBox, NewMessage};
use porteiro_core::store::Store;
use uuid::Uuid;

use crate::{t0, user};

fn new_message(from: Uuid, to: Option<Uuid>, minutes: i64) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        sender_id: from,
        recipient_id: to,
        sender_key: b"sender-copy".to_vec(),
        recipient_key: to.map(|_| b"recipient-copy".to_vec()),
        content: format!("content-{minutes}").into_bytes(),
        created_at: t0() + Duration::minutes(minutes),
    }
}

async fn send(store: &Arc<dyn Store>, m: &NewMessage) {
    assert!(store.insert_message(m).await.unwrap());
}

async fn ids(
    store: &Arc<dyn Store>,
    user: Uuid,
    folder: MessageBox,
    limit: u32,
    offset: u64,
) -> (Vec<Uuid>, u64) {
    let page = store.messages(user, folder, limit, offset).await.unwrap();
    (page.items.iter().map(|m| m.id).collect(), page.total)
}

/// Each account's inbox and sent folder hold its copies, newest first, with the total.
pub async fn messages_are_listed_per_folder_newest_first_with_totals(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    let bia = user(&store, "bia").await;
    let m1 = new_message(ana.id, Some(bia.id), 1);
    let m2 = new_message(ana.id, Some(bia.id), 2);
    let m3 = new_message(bia.id, Some(ana.id), 3);
    let lost = new_message(ana.id, None, 4);
    for m in [&m1, &m2, &m3, &lost] {
        send(&store, m).await;
    }
    // Act / Assert
    assert_eq!(
        ids(&store, bia.id, MessageBox::Inbox, 10, 0).await,
        (vec![m2.id, m1.id], 2)
    );
    assert_eq!(
        ids(&store, ana.id, MessageBox::Sent, 10, 0).await,
        (vec![lost.id, m2.id, m1.id], 3)
    );
    assert_eq!(
        ids(&store, ana.id, MessageBox::Sent, 1, 1).await,
        (vec![m2.id], 3)
    );
    assert_eq!(
        ids(&store, ana.id, MessageBox::Inbox, 10, 0).await,
        (vec![m3.id], 1)
    );
    assert_eq!(
        ids(&store, bia.id, MessageBox::Sent, 10, 0).await,
        (vec![m3.id], 1)
    );
    let inbox = store
        .messages(bia.id, MessageBox::Inbox, 10, 0)
        .await
        .unwrap();
    let first = &inbox.items[0];
    assert_eq!(first.sender_name.as_deref(), Some("ana"));
    assert_eq!(first.content, b"content-2");
    assert_eq!(first.recipient_key.as_deref(), Some(&b"recipient-copy"[..]));
    assert_eq!(first.created_at, t0() + Duration::minutes(2));
    assert_eq!(first.read_at, None);
    // The undelivered one has no recipient at all.
    let stored = store.message(ana.id, lost.id).await.unwrap().unwrap();
    assert_eq!((stored.recipient_id, stored.recipient_key), (None, None));
}

/// Nobody but the two parties reads, marks or deletes a message; only the recipient marks it
/// read, once.
pub async fn only_the_parties_see_a_message_and_only_the_recipient_marks_it_read(
    store: Arc<dyn Store>,
) {
    // Arrange
    let ana = user(&store, "ana").await;
    let bia = user(&store, "bia").await;
    let cleo = user(&store, "cleo").await;
    let m = new_message(ana.id, Some(bia.id), 1);
    send(&store, &m).await;
    let later = t0() + Duration::hours(1);
    // Act / Assert
    assert!(store.message(cleo.id, m.id).await.unwrap().is_none());
    assert!(
        store
            .message(ana.id, Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.mark_message_read(cleo.id, m.id, later).await.unwrap());
    assert!(!store.mark_message_read(ana.id, m.id, later).await.unwrap());
    assert!(!store.delete_message(cleo.id, m.id).await.unwrap());
    assert!(store.mark_message_read(bia.id, m.id, later).await.unwrap());
    assert!(
        !store
            .mark_message_read(bia.id, m.id, later + Duration::hours(1))
            .await
            .unwrap()
    );
    for party in [ana.id, bia.id] {
        let seen = store.message(party, m.id).await.unwrap().unwrap();
        assert_eq!(seen.read_at, Some(later));
    }
}

/// Deleting drops the caller's copy only; the row goes with the last copy.
pub async fn deleting_a_message_drops_only_the_callers_copy(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    let bia = user(&store, "bia").await;
    let m = new_message(ana.id, Some(bia.id), 1);
    let lost = new_message(ana.id, None, 2);
    let note = new_message(ana.id, Some(ana.id), 3);
    for x in [&m, &lost, &note] {
        send(&store, x).await;
    }
    // Act / Assert: the recipient's copy goes, the sender's stays.
    assert!(store.delete_message(bia.id, m.id).await.unwrap());
    assert!(!store.delete_message(bia.id, m.id).await.unwrap());
    assert!(store.message(bia.id, m.id).await.unwrap().is_none());
    let kept = store.message(ana.id, m.id).await.unwrap().unwrap();
    assert_eq!(
        (kept.recipient_key, kept.sender_key.is_some()),
        (None, true)
    );
    assert_eq!(ids(&store, bia.id, MessageBox::Inbox, 10, 0).await.1, 0);
    assert!(store.delete_message(ana.id, m.id).await.unwrap());
    assert!(store.message(ana.id, m.id).await.unwrap().is_none());
    // An undelivered message and a note to self go with their sender's deletion.
    assert!(store.delete_message(ana.id, lost.id).await.unwrap());
    assert!(store.delete_message(ana.id, note.id).await.unwrap());
    assert!(store.message(ana.id, note.id).await.unwrap().is_none());
    assert_eq!(
        ids(&store, ana.id, MessageBox::Sent, 10, 0).await,
        (vec![], 0)
    );
    assert_eq!(
        ids(&store, ana.id, MessageBox::Inbox, 10, 0).await,
        (vec![], 0)
    );
}

/// A message to an account that does not exist is stored undelivered; one from an account that
/// does not exist is not stored; deleting the sender's account keeps the recipient's copy, and the
/// recipient's deletion then removes the row.
pub async fn account_deletion_keeps_the_other_partys_copy(store: Arc<dyn Store>) {
    // Arrange
    let ana = user(&store, "ana").await;
    let bia = user(&store, "bia").await;
    let ghost = Uuid::now_v7();
    let to_ghost = new_message(ana.id, Some(ghost), 1);
    let from_ghost = new_message(ghost, Some(ana.id), 2);
    let m = new_message(ana.id, Some(bia.id), 3);
    // Act
    assert!(store.insert_message(&to_ghost).await.unwrap());
    assert!(!store.insert_message(&from_ghost).await.unwrap());
    send(&store, &m).await;
    let stored = store.message(ana.id, to_ghost.id).await.unwrap().unwrap();
    assert_eq!((stored.recipient_id, stored.recipient_key), (None, None));
    store.delete_user(ana.id, &[]).await.unwrap().unwrap();
    // Assert
    let kept = store.message(bia.id, m.id).await.unwrap().unwrap();
    assert_eq!((kept.sender_id, kept.sender_name), (None, None));
    assert!(kept.recipient_key.is_some());
    assert_eq!(
        kept.sender_key, None,
        "the erased account's wrapped copy goes with it"
    );
    assert_eq!(ids(&store, bia.id, MessageBox::Inbox, 10, 0).await.1, 1);
    assert!(store.delete_message(bia.id, m.id).await.unwrap());
    assert!(store.message(bia.id, m.id).await.unwrap().is_none());
}

/// `accept_messages` is on for new accounts and changes through the profile.
pub async fn accounts_accept_messages_until_they_turn_them_off(store: Arc<dyn Store>) {
    let ana = user(&store, "ana").await;
    assert!(ana.accept_messages);
    let off = store
        .update_profile(
            ana.id,
            &ProfileUpdate {
                accept_messages: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    assert!(!off.accept_messages);
    assert!(off.login_alerts);
    assert!(
        !store
            .user_by_id(ana.id)
            .await
            .unwrap()
            .unwrap()
            .accept_messages
    );
}
