//! Password recovery: generic answers, the token's format, storage, lifetime and single use,
//! links built from `EMAIL_BASE_URL` whatever the `Host` header says.

use chrono::Duration;
use porteiro_core::crypto::token_hash;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, spawn_app};

fn token_of(link: &str) -> String {
    link.split("token=")
        .nth(1)
        .expect("token parameter")
        .to_owned()
}

both_backends! {
    async fn reset_link_uses_email_base_url_even_with_a_forged_host(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("marta").await;
        let req = app
            .client
            .post(format!("{}/api/auth/forgot-password", app.url))
            .header("Host", "evil.example.net")
            .header("X-Forwarded-Host", "evil.example.net")
            .json(&json!({"email": user.email}));
        let r = app.request(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mail = app.smtp.wait_for(&user.email, 1).await.remove(0);
        let link = mail.link();
        assert!(link.starts_with("https://id.example.com/ui/reset-password?token="), "{link}");
        assert!(!mail.raw.contains("evil.example.net"));
        let token = token_of(&link);
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "URL-safe: {token}");
        assert!(mail.text().contains("30 minutes"));
    }

    async fn reset_token_is_stored_hashed(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("nina").await;
        app.post("/forgot-password", json!({"email": user.email})).await;
        let token = token_of(&app.smtp.wait_for(&user.email, 1).await.remove(0).link());
        let store = app.auth.store();
        let now = app.auth.now();
        assert!(store.reset_token_owner(&token_hash(&token), now).await.unwrap().is_some(), "found by its hash");
        assert!(store.reset_token_owner(&token, now).await.unwrap().is_none(), "not stored in the clear");
        if backend == Backend::Sqlite {
            // Neither the database nor its WAL holds the token (the outbox payload is sealed too).
            for name in ["porteiro.db", "porteiro.db-wal"] {
                let bytes = std::fs::read(app.dir.join(name)).unwrap_or_default();
                assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{name} contains the raw token");
            }
        }
    }

    async fn reset_token_expires_after_30_minutes(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("otto").await;
        app.post("/forgot-password", json!({"email": user.email})).await;
        let token = token_of(&app.smtp.wait_for(&user.email, 1).await.remove(0).link());
        app.clock.advance(Duration::minutes(30) + Duration::seconds(1));
        let r = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["code"], "invalid_reset_token");
    }

    async fn only_the_newest_reset_token_works(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("paula").await;
        app.post("/forgot-password", json!({"email": user.email})).await;
        let first = token_of(&app.smtp.wait_for(&user.email, 1).await[0].link());
        app.post("/forgot-password", json!({"email": user.email})).await;
        let mails = app.smtp.wait_for(&user.email, 2).await;
        let second = token_of(&mails[1].link());
        assert_ne!(first, second);
        let old = app.post("/api/auth/reset-password", json!({"token": first, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(old.status, StatusCode::BAD_REQUEST);
        let new = app.post("/api/auth/reset-password", json!({"token": second, "password": "Nova-S3nha-Boa", "confirm_password": "Nova-S3nha-Boa"})).await;
        assert_eq!(new.status, StatusCode::OK, "{}", new.text);
        // A notice of the change follows the reset.
        let notice = app.smtp.wait_for(&user.email, 3).await.remove(2);
        assert!(notice.subject().contains("password was changed"), "{}", notice.subject());
    }

    async fn reset_unlocks_a_locked_account(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("quim").await;
        for _ in 0..5 {
            app.post("/auth", json!({"login": "quim", "password": "Wrong-pass-1"})).await;
        }
        assert_eq!(app.post("/auth", json!({"login": "quim", "password": PASSWORD})).await.status, StatusCode::FORBIDDEN);
        app.post("/forgot-password", json!({"email": user.email})).await;
        let token = token_of(&app.smtp.wait_for(&user.email, 1).await.remove(0).link());
        let r = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(r.status, StatusCode::OK);
        app.sign_in_as("quim", "Nova-S3nha-Boa").await;
    }

    async fn mail_is_in_portuguese_for_portuguese_speakers(backend: Backend) {
        let app = spawn_app(backend).await;
        let req = app
            .client
            .post(format!("{}/api/auth/register", app.url))
            .header("Accept-Language", "pt-BR,pt;q=0.9,en;q=0.5")
            .json(&json!({"username": "rita", "email": "rita@example.com", "password": PASSWORD}));
        assert_eq!(app.request(req).await.status, StatusCode::CREATED);
        app.post("/forgot-password", json!({"email": "rita@example.com"})).await;
        let mail = app.smtp.wait_for("rita@example.com", 1).await.remove(0);
        assert!(mail.subject().contains("Redefina sua senha"), "{}", mail.subject());
        assert!(mail.text().contains("expira em 30 minutos"));
    }
}
