//! Secure storage (issue 17): secrets at rest are encrypted with data keys wrapped by an RSA
//! key-encryption key; a value altered or moved to another row is a clean `data_unreadable`
//! error that leaves the rest of the account working; rotating the key-encryption key under
//! traffic loses nothing; values sealed the old way (directly under the master key) keep
//! working and move onto data keys online; an account's deletion destroys its data key.

use base64::Engine as _;
use porteiro_core::envelope::MAGIC;
use porteiro_core::store::SealedColumn;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::cli::Cli;
use crate::helpers::{Options, at_rest, holds, spawn_app, spawn_app_with};
use crate::mfa::{enrol, mfa_token, verify, verify_backup};

fn raw_secret(base32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(base32)
        .unwrap()
        .as_bytes()
        .to_vec()
}

both_backends! {
    async fn a_key_encryption_key_row_forged_without_the_master_key_wraps_nothing(backend: Backend) {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
        let app = spawn_app(backend).await;
        let mut before = enrol(&app, "antes").await;
        let store = app.auth.store();
        // An intruder with write access to the database, but not the master key, plants newer
        // versions: its own public key without a private half; its public key with the real
        // version 1's sealed private half copied; and garbage as the private half.
        let attacker = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
        let public = AsDer::<PublicKeyX509Der<'_>>::as_der(&attacker.public_key()).unwrap().as_ref().to_vec();
        let real = store.key_encryption_keys().await.unwrap().remove(0);
        for (version, private) in [(2, None), (3, real.private_key_enc.clone()), (4, Some(vec![7u8; 2000]))] {
            let forged = porteiro_core::store::StoredKek {
                version,
                algorithm: real.algorithm.clone(),
                public_key: public.clone(),
                private_key_enc: private,
                created_at: app.auth.now(),
                retired_at: None,
            };
            assert!(store.insert_key_encryption_key(&forged, &[]).await.unwrap());
        }
        // New data keys are still wrapped by the real version; a re-wrap moves nothing to the
        // forged ones and retires nothing real.
        let after = enrol(&app, "depois").await;
        let key = store.data_key_of(Some(after.user.id.parse().unwrap())).await.unwrap().unwrap();
        assert_eq!(key.kek_version, 1);
        let report = app.auth.envelope().rewrap_all(10).await.unwrap();
        assert_eq!(report.rewrapped, 0);
        assert!(!report.retired.contains(&1), "the real version stays: {report:?}");
        assert!(store.data_key_counts().await.unwrap().iter().all(|(v, _)| *v == 1));
        // A real rotation still works: the new version is real, and everything moves onto it.
        let v5 = app.auth.envelope().rotate_kek(app.auth.now(), "test").await.unwrap();
        assert_eq!(v5, 5);
        let report = app.auth.envelope().rewrap_all(10).await.unwrap();
        assert_eq!(report.failed, 0);
        assert!(store.data_key_counts().await.unwrap().iter().all(|(v, _)| *v == 5));
        let token = mfa_token(&app, &before.user).await;
        assert_eq!(verify(&app, &token, &before.code(&app)).await.status, StatusCode::OK);
    }

    async fn no_secret_is_stored_in_the_clear(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("WEBHOOK_ALLOW_PRIVATE", "true".to_owned())] }).await;
        let enrolled = enrol(&app, "cofre").await;
        // A reset link waits in the outbox (or has been sent: its payload is erased then).
        let user = app.register("caixa").await;
        app.post("/forgot-password", json!({"email": user.email})).await;
        let link = app.smtp.wait_for(&user.email, 1).await.remove(0).link();
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let admin = app.admin().await;
        let r = app.post_auth("/api/admin/webhooks", &admin.access,
            json!({"url": "http://127.0.0.1:9/hook", "description": "vault"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let webhook_secret = base64::engine::general_purpose::STANDARD
            .decode(r.data()["secret"].as_str().unwrap().trim_start_matches("whsec_")).unwrap();
        let store = app.auth.store();
        let signing = store.signing_keys().await.unwrap().remove(0);
        let pkcs8 = app.auth.envelope()
            .open_deployment_column(SealedColumn::SigningKey, &signing.kid, &signing.private_key_enc)
            .unwrap()
            .to_vec();

        let bytes = at_rest(&app);
        for (what, needle) in [
            ("TOTP secret", raw_secret(&enrolled.secret)),
            ("TOTP secret (base32)", enrolled.secret.clone().into_bytes()),
            ("reset token", token.into_bytes()),
            ("webhook secret", webhook_secret),
            // The Ed25519 seed (the PKCS#8 document ends with the public key, which is public).
            ("signing key", pkcs8[16..48].to_vec()),
        ] {
            assert!(!holds(&bytes, &needle), "the {what} is stored in the clear");
        }
        // Every encrypted value is in the envelope format, bound to a data key.
        let credential = store.totp_credential(enrolled.user.id.parse().unwrap()).await.unwrap().unwrap();
        assert!(credential.secret_enc.starts_with(MAGIC));
        assert!(signing.private_key_enc.starts_with(MAGIC));
        for column in SealedColumn::ALL {
            assert!(store.legacy_sealed_values(column, MAGIC, None, 10).await.unwrap().is_empty(), "{column:?}");
        }
        // The account's data key exists only wrapped; deleting the account destroys it.
        assert!(store.data_key_of(Some(enrolled.user.id.parse().unwrap())).await.unwrap().is_some());
        let r = app.request(app.client.delete(format!("{}/api/users/{}", app.url, enrolled.user.id))
            .bearer_auth(&admin.access)).await;
        assert!(r.status.is_success(), "{}", r.text);
        assert!(store.data_key_of(Some(enrolled.user.id.parse().unwrap())).await.unwrap().is_none());
        assert_eq!(store.destroyed_data_key_count().await.unwrap(), 1);
    }

    async fn a_tampered_or_moved_secret_is_a_clean_error_and_the_account_keeps_working(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut alice = enrol(&app, "alice").await;
        let mut bruno = enrol(&app, "bruno").await;
        let store = app.auth.store();
        let a_id = alice.user.id.clone();
        let b_id = bruno.user.id.clone();
        let a_value = store.totp_credential(a_id.parse().unwrap()).await.unwrap().unwrap().secret_enc;
        let b_value = store.totp_credential(b_id.parse().unwrap()).await.unwrap().unwrap().secret_enc;

        // One byte changed anywhere: the header, the nonce, the ciphertext or the tag.
        for at in [0, 3, 20, 35, a_value.len() / 2, a_value.len() - 1] {
            let mut bad = a_value.clone();
            bad[at] ^= 0x01;
            assert!(store.replace_sealed_value(SealedColumn::TotpSecret, &a_id, &a_value, &bad).await.unwrap());
            let token = mfa_token(&app, &alice.user).await;
            let r = verify(&app, &token, &alice.code(&app)).await;
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "byte {at}: {}", r.text);
            assert_eq!(r.body["code"], "data_unreadable");
            assert!(!r.text.to_lowercase().contains("aes") && !r.text.contains("panick"), "{}", r.text);
            assert!(store.replace_sealed_value(SealedColumn::TotpSecret, &a_id, &bad, &a_value).await.unwrap());
        }
        // Bruno's secret copied onto Alice's row does not open there: not with her codes, not
        // with his.
        assert!(store.replace_sealed_value(SealedColumn::TotpSecret, &a_id, &a_value, &b_value).await.unwrap());
        let token = mfa_token(&app, &alice.user).await;
        let r = verify(&app, &token, &bruno.code(&app)).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("data_unreadable")), "{}", r.text);
        // The rest of the account works: a backup code signs her in, her profile answers.
        let token = mfa_token(&app, &alice.user).await;
        let r = verify_backup(&app, &token, &alice.backup_codes[0]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let access = r.data()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.me_status(&access).await, StatusCode::OK);
        // Bruno is untouched.
        let token = mfa_token(&app, &bruno.user).await;
        assert_eq!(verify(&app, &token, &bruno.code(&app)).await.status, StatusCode::OK);
        // Put back, Alice's own value works again.
        assert!(store.replace_sealed_value(SealedColumn::TotpSecret, &a_id, &b_value, &a_value).await.unwrap());
        let token = mfa_token(&app, &alice.user).await;
        assert_eq!(verify(&app, &token, &alice.code(&app)).await.status, StatusCode::OK);
    }

    async fn rotating_the_key_encryption_key_under_traffic_loses_nothing(backend: Backend) {
        let app = std::sync::Arc::new(spawn_app(backend).await);
        let mut enrolled = Vec::new();
        for i in 0..4 {
            enrolled.push(enrol(&app, &format!("rot{i}")).await);
        }
        let envelope = app.auth.envelope().clone();
        // Traffic: new accounts get data keys (wrapped by whatever version is newest when they
        // ask), existing ones sign in with their app, while the key-encryption key rotates twice
        // and the data keys are re-wrapped.
        let traffic = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut made = Vec::new();
                for i in 0..6 {
                    made.push(enrol(&app, &format!("new{i}")).await);
                }
                made
            })
        };
        let v2 = envelope.rotate_kek(app.auth.now(), "test").await.unwrap();
        let mid = envelope.rewrap_all(2).await.unwrap();
        let v3 = envelope.rotate_kek(app.auth.now(), "test").await.unwrap();
        assert_eq!((v2, v3), (2, 3));
        for e in &mut enrolled {
            let token = mfa_token(&app, &e.user).await;
            assert_eq!(verify(&app, &token, &e.code(&app)).await.status, StatusCode::OK);
        }
        let mut made = traffic.await.unwrap();
        let done = envelope.rewrap_all(3).await.unwrap();
        assert_eq!(done.failed + mid.failed, 0);
        assert_eq!(done.remaining, 0);
        let store = app.auth.store();
        assert_eq!(store.data_key_counts().await.unwrap().iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![3]);
        let keks = store.key_encryption_keys().await.unwrap();
        assert_eq!(keks.iter().map(|k| (k.version, k.retired_at.is_some(), k.private_key_enc.is_some())).collect::<Vec<_>>(),
            vec![(3, false, true), (2, true, false), (1, true, false)], "old versions retired, private halves erased");
        // Every account, old and new, still signs in with its app; and a fresh hierarchy (no key
        // in memory, as in a new process) opens every secret.
        let config = porteiro::config::Config::from_env(&app.env).unwrap();
        let master = std::sync::Arc::new(porteiro::app::load_master_key(&config).unwrap());
        let fresh = porteiro_core::envelope::Envelope::load(master, store.clone(), app.auth.now()).await.unwrap();
        for e in enrolled.iter_mut().chain(made.iter_mut()) {
            let token = mfa_token(&app, &e.user).await;
            let r = verify(&app, &token, &e.code(&app)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let sealed = store.totp_credential(e.user.id.parse().unwrap()).await.unwrap().unwrap().secret_enc;
            let opened = fresh.open_column(SealedColumn::TotpSecret, &e.user.id, &sealed).await.unwrap();
            assert_eq!(opened.as_slice(), raw_secret(&e.secret).as_slice());
        }
        let events = store.list_audit(&porteiro_core::domain::audit::AuditFilter {
            event_type: Some("key_encryption_key.retired".to_owned()),
            ..Default::default()
        }, 10).await.unwrap();
        assert_eq!(events.len(), 2, "each retirement is an event");
    }

    async fn values_sealed_under_the_master_key_keep_working_and_move_onto_data_keys(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "antigo").await;
        let store = app.auth.store();
        let config = porteiro::config::Config::from_env(&app.env).unwrap();
        let master = porteiro::app::load_master_key(&config).unwrap();
        // As an older release stored them: the TOTP secret and the signing key sealed directly
        // under the master key.
        let id = enrolled.user.id.clone();
        let current = store.totp_credential(id.parse().unwrap()).await.unwrap().unwrap().secret_enc;
        let old_style = master.seal(format!("totp-secret:{id}").as_bytes(), &raw_secret(&enrolled.secret));
        assert!(store.replace_sealed_value(SealedColumn::TotpSecret, &id, &current, &old_style).await.unwrap());
        let key = store.signing_keys().await.unwrap().remove(0);
        let pkcs8 = app.auth.envelope()
            .open_deployment_column(SealedColumn::SigningKey, &key.kid, &key.private_key_enc).unwrap();
        let old_key = master.seal(key.kid.as_bytes(), &pkcs8);
        assert!(store.replace_sealed_value(SealedColumn::SigningKey, &key.kid, &key.private_key_enc, &old_key).await.unwrap());
        app.auth.reload_keys().await;
        let token = mfa_token(&app, &enrolled.user).await;
        assert_eq!(verify(&app, &token, &enrolled.code(&app)).await.status, StatusCode::OK, "old-style values still open");

        let moved = app.auth.envelope().reseal_legacy_all(1).await.unwrap();
        assert_eq!(moved, 2);
        assert!(store.totp_credential(id.parse().unwrap()).await.unwrap().unwrap().secret_enc.starts_with(MAGIC));
        assert!(store.signing_keys().await.unwrap().remove(0).private_key_enc.starts_with(MAGIC));
        assert_eq!(app.auth.envelope().reseal_legacy_all(10).await.unwrap(), 0, "nothing left");
        app.auth.reload_keys().await;
        let token = mfa_token(&app, &enrolled.user).await;
        let r = verify(&app, &token, &enrolled.code(&app)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.me_status(r.data()["access_token"].as_str().unwrap()).await, StatusCode::OK);
    }
}

#[test]
fn key_encryption_keys_rotate_and_rewrap_from_the_command_line() {
    let cli = Cli::new();
    cli.ok(&["migrate"], None);
    // Nothing is made before something needs it: the first signing key makes version 1 and the
    // deployment's data key.
    assert!(
        cli.ok(&["keys", "status"], None)
            .contains("key-encryption keys:\ndestroyed")
    );
    cli.ok(&["keys", "rotate"], None);
    let status = cli.ok(&["keys", "status"], None);
    assert!(status.contains("v1  RSA-3072-OAEP-SHA256"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.contains("v1 ") && l.contains("current")),
        "{status}"
    );
    let rotated = cli.ok(&["keys", "rotate-kek"], None);
    assert!(rotated.contains("version 2"), "{rotated}");
    let status = cli.ok(&["keys", "status"], None);
    assert!(
        status
            .lines()
            .any(|l| l.contains("v2 ") && l.contains("current")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("v1 ") && l.contains("re-wrapping") && l.contains(" 1 data keys")),
        "{status}"
    );
    let rewrapped = cli.ok(&["keys", "rewrap"], None);
    assert!(
        rewrapped.contains("1 data keys re-wrapped; 0 still"),
        "{rewrapped}"
    );
    assert!(rewrapped.contains("version 1 retired"), "{rewrapped}");
    let status = cli.ok(&["keys", "status"], None);
    assert!(
        status
            .lines()
            .any(|l| l.contains("v1 ") && l.contains("retired")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("v2 ") && l.contains(" 1 data keys")),
        "{status}"
    );
    assert!(
        status.contains("destroyed data keys (erased accounts): 0"),
        "{status}"
    );
}
