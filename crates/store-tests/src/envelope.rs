//! The contract of key storage (envelope encryption): key-encryption key versions are added
//! once each and retired only when nothing refers to them; one data key per account plus the
//! deployment's, re-wrapped only from the version it was read with; an account's deletion
//! records its data key as destroyed; values sealed the old way are found and replaced only if
//! unchanged.

use std::sync::Arc;

use porteiro_core::envelope::{DEPLOYMENT_KEY_ID, MAGIC};
use porteiro_core::store::{SealedColumn, Store, StoredDataKey, StoredKek};
use uuid::Uuid;

use crate::{ev, t0, user};

fn kek(version: i32) -> StoredKek {
    StoredKek {
        version,
        algorithm: "RSA-3072-OAEP-SHA256".to_owned(),
        public_key: vec![1, 2, 3],
        private_key_enc: Some(vec![4, 5, 6]),
        created_at: t0(),
        retired_at: None,
    }
}

fn data_key(owner: Option<Uuid>, version: i32) -> StoredDataKey {
    StoredDataKey {
        id: owner.map_or(DEPLOYMENT_KEY_ID, |_| Uuid::new_v4()),
        owner_id: owner,
        kek_version: version,
        wrapped_key: vec![version as u8; 8],
    }
}

pub async fn key_encryption_key_versions_are_added_once_and_retired_when_unused(
    store: Arc<dyn Store>,
) {
    assert!(store.key_encryption_keys().await.unwrap().is_empty());
    assert!(
        store
            .insert_key_encryption_key(&kek(1), &[ev()])
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_key_encryption_key(&kek(1), &[ev()])
            .await
            .unwrap(),
        "a version exists once"
    );
    let stored = store.key_encryption_keys().await.unwrap();
    assert_eq!(stored, vec![kek(1)]);
    // The newest version is never retired.
    assert!(!store.retire_key_encryption_key(1, t0(), &[]).await.unwrap());
    let u = user(&store, "kek").await;
    assert!(
        store
            .insert_data_key(&data_key(Some(u.id), 1), t0())
            .await
            .unwrap()
    );
    assert!(store.insert_key_encryption_key(&kek(2), &[]).await.unwrap());
    assert_eq!(
        store
            .key_encryption_keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.version)
            .collect::<Vec<_>>(),
        vec![2, 1],
        "newest first"
    );
    // Version 1 still wraps a data key.
    assert!(!store.retire_key_encryption_key(1, t0(), &[]).await.unwrap());
    let k = store.data_key_of(Some(u.id)).await.unwrap().unwrap();
    assert!(
        store
            .rewrap_data_key(k.id, 1, 2, b"rewrapped", t0())
            .await
            .unwrap()
    );
    assert!(
        store
            .retire_key_encryption_key(1, t0(), &[ev()])
            .await
            .unwrap()
    );
    assert!(
        !store.retire_key_encryption_key(1, t0(), &[]).await.unwrap(),
        "once"
    );
    let v1 = store.key_encryption_keys().await.unwrap().pop().unwrap();
    assert_eq!(v1.retired_at, Some(t0()));
    assert_eq!(v1.private_key_enc, None, "the private half is erased");
    // Nothing is wrapped by a retired version any more: a key made from a stale read of the
    // newest version is refused, and so is a re-wrap to it.
    let late = user(&store, "late").await;
    assert!(
        !store
            .insert_data_key(&data_key(Some(late.id), 1), t0())
            .await
            .unwrap()
    );
    assert!(store.data_key_of(Some(late.id)).await.unwrap().is_none());
    assert!(
        store
            .insert_data_key(&data_key(Some(late.id), 2), t0())
            .await
            .unwrap()
    );
    assert!(store.insert_key_encryption_key(&kek(3), &[]).await.unwrap());
    let lk = store.data_key_of(Some(late.id)).await.unwrap().unwrap();
    assert!(
        store
            .rewrap_data_key(lk.id, 2, 3, b"to3", t0())
            .await
            .unwrap()
    );
    assert!(
        store
            .rewrap_data_key(k.id, 2, 3, b"to3", t0())
            .await
            .unwrap()
    );
    assert!(store.retire_key_encryption_key(2, t0(), &[]).await.unwrap());
    assert!(
        !store
            .rewrap_data_key(lk.id, 3, 2, b"back", t0())
            .await
            .unwrap(),
        "not to a retired version"
    );
}

pub async fn one_data_key_per_owner_and_rewraps_apply_only_to_what_was_read(store: Arc<dyn Store>) {
    store.insert_key_encryption_key(&kek(1), &[]).await.unwrap();
    let a = user(&store, "dka").await;
    let b = user(&store, "dkb").await;
    assert!(store.data_key_of(Some(a.id)).await.unwrap().is_none());
    let first = data_key(Some(a.id), 1);
    assert!(store.insert_data_key(&first, t0()).await.unwrap());
    assert!(
        !store
            .insert_data_key(&data_key(Some(a.id), 1), t0())
            .await
            .unwrap(),
        "one per account"
    );
    assert_eq!(
        store.data_key_of(Some(a.id)).await.unwrap(),
        Some(first.clone())
    );
    assert!(
        store
            .insert_data_key(&data_key(Some(b.id), 1), t0())
            .await
            .unwrap()
    );
    // The deployment's key: one, with its fixed id.
    assert!(store.data_key_of(None).await.unwrap().is_none());
    assert!(
        store
            .insert_data_key(&data_key(None, 1), t0())
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_data_key(&data_key(None, 1), t0())
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_key_of(None).await.unwrap().unwrap().id,
        DEPLOYMENT_KEY_ID
    );
    assert_eq!(store.data_key_counts().await.unwrap(), vec![(1, 3)]);

    store.insert_key_encryption_key(&kek(2), &[]).await.unwrap();
    let todo = store.data_keys_to_rewrap(2, 10).await.unwrap();
    assert_eq!(todo.len(), 3);
    assert_eq!(
        store.data_keys_to_rewrap(2, 2).await.unwrap().len(),
        2,
        "batched"
    );
    assert!(
        store
            .rewrap_data_key(first.id, 1, 2, b"new", t0())
            .await
            .unwrap()
    );
    assert!(
        !store
            .rewrap_data_key(first.id, 1, 2, b"stale", t0())
            .await
            .unwrap(),
        "already re-wrapped"
    );
    let now = store.data_key_of(Some(a.id)).await.unwrap().unwrap();
    assert_eq!(
        (now.kek_version, now.wrapped_key.as_slice()),
        (2, &b"new"[..])
    );
    assert_eq!(store.data_keys_to_rewrap(2, 10).await.unwrap().len(), 2);
    assert_eq!(store.data_key_counts().await.unwrap(), vec![(1, 2), (2, 1)]);
}

pub async fn deleting_an_account_records_its_data_key_as_destroyed(store: Arc<dyn Store>) {
    store.insert_key_encryption_key(&kek(1), &[]).await.unwrap();
    let gone = user(&store, "shredded").await;
    let kept = user(&store, "kept").await;
    let key = data_key(Some(gone.id), 1);
    store.insert_data_key(&key, t0()).await.unwrap();
    store
        .insert_data_key(&data_key(Some(kept.id), 1), t0())
        .await
        .unwrap();
    assert_eq!(store.destroyed_data_key_count().await.unwrap(), 0);
    store.delete_user(gone.id, &[ev()]).await.unwrap().unwrap();
    assert!(
        store.data_key_of(Some(gone.id)).await.unwrap().is_none(),
        "the key is gone"
    );
    assert_eq!(
        store.destroyed_data_key_count().await.unwrap(),
        1,
        "and recorded"
    );
    assert!(store.data_key_of(Some(kept.id)).await.unwrap().is_some());
    // An account without a data key leaves no record.
    let plain = user(&store, "nokey").await;
    store.delete_user(plain.id, &[ev()]).await.unwrap().unwrap();
    assert_eq!(store.destroyed_data_key_count().await.unwrap(), 1);
}

pub async fn old_style_sealed_values_are_listed_and_replaced_only_if_unchanged(
    store: Arc<dyn Store>,
) {
    let users = [
        user(&store, "legacy1").await,
        user(&store, "legacy2").await,
        user(&store, "modern").await,
    ];
    let mut legacy = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let value: Vec<u8> = if i == 2 {
            [MAGIC.as_slice(), b"already moved"].concat()
        } else {
            format!("old secret {i}").into_bytes()
        };
        assert!(
            store
                .begin_totp_setup(u.id, &value, &[], t0())
                .await
                .unwrap()
        );
        if i < 2 {
            legacy.push((u.id.to_string(), value));
        }
    }
    legacy.sort();
    let found = store
        .legacy_sealed_values(SealedColumn::TotpSecret, MAGIC, None, 10)
        .await
        .unwrap();
    assert_eq!(
        found
            .iter()
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect::<Vec<_>>(),
        legacy,
        "in key order, without the moved one"
    );
    let page = store
        .legacy_sealed_values(SealedColumn::TotpSecret, MAGIC, None, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let next = store
        .legacy_sealed_values(SealedColumn::TotpSecret, MAGIC, Some(&page[0].key), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].key, page[0].key);
    let (key, old) = &legacy[0];
    let new = [MAGIC.as_slice(), b"moved"].concat();
    assert!(
        !store
            .replace_sealed_value(SealedColumn::TotpSecret, key, b"not it", &new)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_sealed_value(SealedColumn::TotpSecret, key, old, &new)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .totp_credential(Uuid::parse_str(key).unwrap())
            .await
            .unwrap()
            .unwrap()
            .secret_enc,
        new
    );
    assert_eq!(
        store
            .legacy_sealed_values(SealedColumn::TotpSecret, MAGIC, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The other columns are listed the same way (none here has an old-style value).
    for column in SealedColumn::ALL {
        if column != SealedColumn::TotpSecret {
            assert!(
                store
                    .legacy_sealed_values(column, MAGIC, None, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
