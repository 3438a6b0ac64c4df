//! The contract of rewriting emails stored before they had one canonical form.

use std::sync::Arc;

use porteiro_core::store::{Store, StoreError};

use crate::{new_user, t0};

pub async fn legacy_emails_are_found_and_rewritten_without_collisions(store: Arc<dyn Store>) {
    let mut legacy = new_user("ana");
    legacy.email = "ana@ex\u{e4}mple.test".to_owned();
    store.insert_user(&legacy, &[]).await.unwrap();
    let plain = new_user("bia");
    store.insert_user(&plain, &[]).await.unwrap();
    let mut twin = new_user("caio");
    twin.email = "caio@ex\u{e4}mple.test".to_owned();
    store.insert_user(&twin, &[]).await.unwrap();
    let mut taken = new_user("caio2");
    taken.email = "caio@xn--exmple-cua.test".to_owned();
    store.insert_user(&taken, &[]).await.unwrap();

    let found = store.users_with_non_ascii_email().await.unwrap();
    assert_eq!(
        found,
        vec![
            (legacy.id, legacy.email.clone()),
            (twin.id, twin.email.clone())
        ]
    );
    assert!(
        store
            .rewrite_email(
                legacy.id,
                &legacy.email,
                "ana@xn--exmple-cua.test",
                t0(),
                &[]
            )
            .await
            .unwrap()
    );
    // Compare-and-set: a second rewrite from the old value changes nothing.
    assert!(
        !store
            .rewrite_email(legacy.id, &legacy.email, "x@example.test", t0(), &[])
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .user_by_login("ana@xn--exmple-cua.test")
            .await
            .unwrap()
            .map(|u| u.id),
        Some(legacy.id)
    );
    assert!(matches!(
        store
            .rewrite_email(twin.id, &twin.email, "caio@xn--exmple-cua.test", t0(), &[])
            .await,
        Err(StoreError::Conflict { field: "email" })
    ));
    assert_eq!(
        store.users_with_non_ascii_email().await.unwrap(),
        vec![(twin.id, twin.email.clone())]
    );
}
