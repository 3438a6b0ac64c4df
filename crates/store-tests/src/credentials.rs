//! The contract of credential binding: sessions are only created at the credential epoch that
//! was verified, every event that ends all sessions moves the epoch, password changes are
//! compare-and-set on it, resets need an active account, sessions have an absolute lifetime,
//! retired signing keys are erased, and the hash census finds older parameters.

use std::sync::Arc;

use chrono::Duration;
use porteiro_core::domain::ProfileUpdate;
use porteiro_core::domain::session::RotateOutcome;
use porteiro_core::store::{HASH_PREFIX_CHARS, Store, StoredKey};

use crate::{hash, new_session, new_user, rotate, session, t0, user};

async fn epoch(store: &Arc<dyn Store>, id: uuid::Uuid) -> i64 {
    store
        .user_by_id(id)
        .await
        .unwrap()
        .expect("user exists")
        .credential_epoch
}

async fn issue_reset(store: &Arc<dyn Store>, id: uuid::Uuid, token: &str) {
    assert!(
        store
            .replace_reset_token(
                id,
                &hash(token),
                t0() + Duration::minutes(30),
                t0(),
                t0() - Duration::minutes(15),
                100,
                &[]
            )
            .await
            .unwrap()
    );
}

pub async fn sessions_need_the_credential_epoch_they_were_verified_at(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    assert_eq!(u.credential_epoch, 0);
    let (s, r) = new_session(&u, "stale", t0(), 1);
    assert_eq!(store.create_session(&s, &r, &[]).await.unwrap(), None);
    assert!(store.session_by_id(s.id).await.unwrap().is_none());
    assert!(
        store
            .refresh_token_session(&hash("stale"), t0())
            .await
            .unwrap()
            .is_none()
    );
    let (s, r) = new_session(&u, "current", t0(), 0);
    let created = store
        .create_session(&s, &r, &[])
        .await
        .unwrap()
        .expect("current epoch");
    assert_eq!(created.id, s.id);
    // A disabled account opens no session, whatever the epoch.
    store
        .update_profile(
            u.id,
            &ProfileUpdate {
                is_active: Some(false),
                ..ProfileUpdate::default()
            },
            t0(),
            &[],
        )
        .await
        .unwrap();
    let (s, r) = new_session(&u, "disabled", t0(), 0);
    assert_eq!(store.create_session(&s, &r, &[]).await.unwrap(), None);
    // Nor does an account that no longer exists.
    let (mut s, r) = new_session(&u, "ghost", t0(), 0);
    s.user_id = uuid::Uuid::new_v4();
    assert_eq!(store.create_session(&s, &r, &[]).await.unwrap(), None);
}

pub async fn every_credential_event_moves_the_epoch(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let mut expected = 0;
    store
        .change_password(u.id, "h2", None, None, t0(), &[])
        .await
        .unwrap()
        .unwrap();
    expected += 1;
    assert_eq!(epoch(&store, u.id).await, expected);
    issue_reset(&store, u.id, "before-revoke").await;
    store
        .revoke_all_sessions(u.id, None, t0(), &[])
        .await
        .unwrap();
    expected += 1;
    assert_eq!(epoch(&store, u.id).await, expected);
    // A reset link asked for before "revoke all" (or a disable, which revokes all) is dead.
    assert!(
        store
            .reset_token_owner(&hash("before-revoke"), t0())
            .await
            .unwrap()
            .is_none()
    );
    issue_reset(&store, u.id, "reset").await;
    store
        .complete_reset(&hash("reset"), u.id, "h3", t0(), &[])
        .await
        .unwrap()
        .expect("live token");
    expected += 1;
    assert_eq!(epoch(&store, u.id).await, expected);
    // Neither a re-hash of the same password nor a successful sign-in changes the credential.
    assert!(
        store
            .upgrade_password_hash(u.id, "h3", "h3-upgraded")
            .await
            .unwrap()
    );
    assert!(store.record_successful_login(u.id, t0()).await.unwrap());
    assert_eq!(epoch(&store, u.id).await, expected);
    // A session verified before any of this cannot be opened now.
    let (s, r) = new_session(&u, "old", t0(), 0);
    assert_eq!(store.create_session(&s, &r, &[]).await.unwrap(), None);
}

pub async fn concurrent_password_changes_with_one_epoch_have_one_winner(store: Arc<dyn Store>) {
    for round in 0..20 {
        let u = user(&store, &format!("ana{round}")).await;
        let seen = epoch(&store, u.id).await;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .change_password(u.id, &format!("h{i}"), None, Some(seen), t0(), &[])
                        .await
                        .unwrap()
                        .is_some()
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}");
        assert_eq!(epoch(&store, u.id).await, seen + 1);
    }
}

/// A sign-in reads the account (and its epoch), verifies the password, then opens a session; a
/// reset commits meanwhile. Whatever the interleaving, no session may survive the reset.
pub async fn sign_ins_racing_a_reset_never_leave_a_live_session(store: Arc<dyn Store>) {
    let mut opened = 0;
    for trial in 0..1_000 {
        let u = user(&store, &format!("u{trial}")).await;
        issue_reset(&store, u.id, &format!("reset{trial}")).await;
        let sign_ins: Vec<_> = (0..3)
            .map(|i| {
                let store = Arc::clone(&store);
                let old_hash = u.password_hash.clone();
                tokio::spawn(async move {
                    let seen = store.user_by_id(u.id).await.unwrap().unwrap();
                    // The password check happens here, off the database: the old password only
                    // matches if the account read still had the old hash.
                    tokio::task::yield_now().await;
                    if seen.password_hash != old_hash {
                        return false;
                    }
                    let (s, r) =
                        new_session(&seen, &format!("{trial}-{i}"), t0(), seen.credential_epoch);
                    store.create_session(&s, &r, &[]).await.unwrap().is_some()
                })
            })
            .collect();
        let reset = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .complete_reset(&hash(&format!("reset{trial}")), u.id, "new", t0(), &[])
                    .await
                    .unwrap()
                    .expect("live token")
            })
        };
        for task in sign_ins {
            opened += usize::from(task.await.unwrap());
        }
        reset.await.unwrap();
        let live = store.list_active_sessions(u.id, t0()).await.unwrap();
        assert!(
            live.is_empty(),
            "trial {trial}: {} sessions outlived the reset",
            live.len()
        );
    }
    // The race was real: some sign-ins got in before the reset (and were revoked by it).
    eprintln!("{opened} sessions opened before their reset, all revoked");
}

pub async fn disabled_accounts_cannot_complete_a_reset(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    issue_reset(&store, u.id, "reset").await;
    let disable = |active| ProfileUpdate {
        is_active: Some(active),
        ..ProfileUpdate::default()
    };
    store
        .update_profile(u.id, &disable(false), t0(), &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .complete_reset(&hash("reset"), u.id, "new", t0(), &[])
            .await
            .unwrap(),
        None
    );
    let after = store.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(after.password_hash, u.password_hash);
    // Nothing changed, the token included: it works again once the account is re-enabled.
    store
        .update_profile(u.id, &disable(true), t0(), &[])
        .await
        .unwrap();
    assert!(
        store
            .complete_reset(&hash("reset"), u.id, "new", t0(), &[])
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn refresh_never_extends_a_session_past_its_maximum_lifetime(store: Arc<dyn Store>) {
    let u = user(&store, "ana").await;
    let sid = session(&store, &u, "r0").await; // created at t0, expires t0 + 1 day
    let cap = Duration::hours(30);
    let mut token = "r0".to_owned();
    for (step, hours) in [12, 24, 29].into_iter().enumerate() {
        let at = t0() + Duration::hours(hours);
        let next = format!("r{}", step + 1);
        let outcome = store
            .rotate_refresh_token(
                &hash(&token),
                &hash(&next),
                at + Duration::days(1),
                cap,
                None,
                at,
                None,
                &crate::no_reuse,
            )
            .await
            .unwrap();
        let RotateOutcome::Rotated(rotation) = outcome else {
            panic!("step {step}: {outcome:?}");
        };
        let want = (at + Duration::days(1)).min(t0() + cap);
        assert_eq!(rotation.session.expires_at, want, "step {step}");
        token = next;
    }
    // Past the cap neither the session nor its newest token is alive.
    let late = t0() + cap + Duration::seconds(1);
    assert!(
        store
            .refresh_token_session(&hash(&token), late)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        rotate(&store, &token, "r9", late).await,
        RotateOutcome::Invalid
    );
    assert!(
        !store
            .session_by_id(sid)
            .await
            .unwrap()
            .unwrap()
            .is_active(late)
    );
}

pub async fn retired_keys_are_marked_and_erased_once(store: Arc<dyn Store>) {
    for (i, kid) in ["k1", "k2"].into_iter().enumerate() {
        store
            .insert_signing_key(
                &StoredKey {
                    kid: kid.to_owned(),
                    algorithm: "EdDSA".to_owned(),
                    public_key: vec![1, 2, 3],
                    private_key_enc: vec![4, 5, 6],
                    created_at: t0() + Duration::seconds(i64::try_from(i).unwrap()),
                    retired_at: None,
                },
                &[],
            )
            .await
            .unwrap();
    }
    let at = t0() + Duration::hours(1);
    assert!(store.retire_signing_key("k1", at, &[]).await.unwrap());
    assert!(!store.retire_signing_key("k1", at, &[]).await.unwrap());
    assert!(!store.retire_signing_key("nope", at, &[]).await.unwrap());
    let keys = store.signing_keys().await.unwrap();
    let k1 = keys.iter().find(|k| k.kid == "k1").unwrap();
    assert_eq!(k1.retired_at, Some(at));
    assert!(k1.private_key_enc.is_empty(), "the private half is erased");
    assert_eq!(k1.public_key, vec![1, 2, 3]);
    let k2 = keys.iter().find(|k| k.kid == "k2").unwrap();
    assert_eq!((k2.retired_at, k2.private_key_enc.len()), (None, 3));
}

pub async fn census_counts_hashes_with_other_parameters(store: Arc<dyn Store>) {
    let current = "$argon2id$v=19$m=64,t=1,p=1$";
    for name in ["ana", "bia"] {
        user(&store, name).await; // new_user hashes with m=64,t=1,p=1
    }
    let old_bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    let mut legacy = new_user("caio");
    legacy.password_hash = old_bcrypt.to_owned();
    store.insert_user(&legacy, &[]).await.unwrap();
    let census = store.password_hash_census(current, 10).await.unwrap();
    assert_eq!((census.total, census.stale), (3, 1));
    assert_eq!(
        census.stale_prefixes,
        vec![old_bcrypt[..HASH_PREFIX_CHARS].to_owned()]
    );
    let none = store.password_hash_census(current, 0).await.unwrap();
    assert_eq!((none.stale, none.stale_prefixes.len()), (1, 0));
}
