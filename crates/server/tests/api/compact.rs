//! Every row of the compact API table (PRODUCT.md §2), success and failure.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, spawn_app, spawn_app_with};

both_backends! {
    async fn auth_accepts_email_username_or_login(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("carla").await;
        for body in [
            json!({"email": "CARLA@example.com", "password": PASSWORD}),
            json!({"username": "Carla", "password": PASSWORD}),
            json!({"login": " carla@example.com ", "password": PASSWORD}),
        ] {
            let r = app.post("/auth", body).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.body.as_object().unwrap().len(), 2, "exactly auth and refresh: {}", r.text);
            let auth = r.body["auth"].as_str().unwrap();
            assert_eq!(auth.split('.').count(), 3, "auth is a JWT");
            assert!(!r.body["refresh"].as_str().unwrap().contains('.'), "refresh is opaque, not a JWT");
            assert_eq!(r.headers["cache-control"], "no-store");
            assert_eq!(app.me_status(auth).await, StatusCode::OK);
        }
        let _ = user;
    }

    async fn auth_failures_are_403_with_one_body(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "3".to_owned())] }).await;
        app.register("davi").await;
        let wrong = app.post("/auth", json!({"login": "davi", "password": "Wrong-pass-1"})).await;
        let unknown = app.post("/auth", json!({"login": "nobody", "password": "Wrong-pass-1"})).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN);
        assert_eq!(wrong.text, unknown.text, "unknown and wrong look the same");
        assert_eq!(wrong.body["code"], "invalid_credentials");
        // Lock the account (3 failures here), then even the right password gets the same answer.
        app.post("/auth", json!({"login": "davi", "password": "Wrong-pass-1"})).await;
        app.post("/auth", json!({"login": "davi", "password": "Wrong-pass-1"})).await;
        let locked = app.post("/auth", json!({"login": "davi", "password": PASSWORD})).await;
        assert_eq!((locked.status, locked.text.clone()), (StatusCode::FORBIDDEN, wrong.text.clone()));
        // A disabled account, right password: same body too.
        let admin = app.admin().await;
        let eva = app.register("eva").await;
        let r = app.put_auth(&format!("/api/users/{}", eva.id), &admin.access, json!({"is_active": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let disabled = app.post("/auth", json!({"login": "eva", "password": PASSWORD})).await;
        assert_eq!((disabled.status, disabled.text), (StatusCode::FORBIDDEN, wrong.text));
    }

    async fn auth_rejects_malformed_bodies_with_400(backend: Backend) {
        let app = spawn_app(backend).await;
        assert_eq!(app.post("/auth", json!({"password": PASSWORD})).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.post("/auth", json!({"login": "x"})).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.post("/auth", json!({"login": 5, "password": PASSWORD})).await.status, StatusCode::BAD_REQUEST);
    }

    async fn refresh_returns_a_new_pair_and_spends_the_old_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("fabio").await;
        let first = app.sign_in(&user).await;
        let r = app.post("/refresh", json!({"refresh": first.refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_ne!(r.body["refresh"], first.refresh.as_str());
        assert_ne!(r.body["auth"], first.access.as_str());
        assert_eq!(app.me_status(r.body["auth"].as_str().unwrap()).await, StatusCode::OK);
        // Past the grace window (REFRESH_REUSE_INTERVAL) a spent token is refused.
        app.clock.advance(chrono::Duration::seconds(11));
        let again = app.post("/refresh", json!({"refresh": first.refresh})).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN, "a spent token is refused");
        for bad in ["", "garbage", &first.access] {
            assert_eq!(app.post("/refresh", json!({"refresh": bad})).await.status, StatusCode::FORBIDDEN);
        }
    }

    async fn refresh_tokens_expire(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("gabi").await;
        let t = app.sign_in(&user).await;
        app.clock.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
        assert_eq!(app.post("/refresh", json!({"refresh": t.refresh})).await.status, StatusCode::FORBIDDEN);
    }

    async fn change_password_works_and_revokes_other_sessions(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("hugo").await;
        let here = app.sign_in(&user).await;
        let elsewhere = app.sign_in(&user).await;
        let body = json!({"current_password": PASSWORD, "new_password": "Outra-S3nha-Boa"});
        let r = app.post_auth("/change-password", &here.access, body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.me_status(&here.access).await, StatusCode::OK, "the caller's session survives");
        assert_eq!(app.me_status(&elsewhere.access).await, StatusCode::UNAUTHORIZED, "other access tokens die at once");
        assert_eq!(app.post("/refresh", json!({"refresh": elsewhere.refresh})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.post("/refresh", json!({"refresh": here.refresh})).await.status, StatusCode::OK);
        app.sign_in_as("hugo", "Outra-S3nha-Boa").await;
        assert_eq!(app.post("/auth", json!({"login": "hugo", "password": PASSWORD})).await.status, StatusCode::FORBIDDEN);
    }

    async fn change_password_refuses_wrong_current_and_weak_new(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("iara").await;
        let t = app.sign_in(&user).await;
        let wrong = app.post_auth("/change-password", &t.access, json!({"current_password": "nope-1234", "new_password": "Outra-S3nha-Boa"})).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN);
        let weak = app.post_auth("/change-password", &t.access, json!({"current_password": PASSWORD, "new_password": "123"})).await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST);
        assert_eq!(weak.body["code"], "weak_password");
        assert!(weak.body["reasons"].as_array().unwrap().contains(&json!("too_short")));
        let anonymous = app.post("/change-password", json!({"current_password": PASSWORD, "new_password": "Outra-S3nha-Boa"})).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        app.sign_in(&user).await;
    }

    async fn forgot_password_answers_the_same_for_unknown_emails(backend: Backend) {
        let app = spawn_app(backend).await;
        app.register("joana").await;
        let known = app.post("/forgot-password", json!({"email": "joana@example.com"})).await;
        let unknown = app.post("/forgot-password", json!({"email": "ninguem@example.com"})).await;
        assert_eq!(known.status, StatusCode::OK);
        assert_eq!((known.status, known.text.clone()), (unknown.status, unknown.text));
        app.smtp.wait_for("joana@example.com", 1).await;
        let malformed = app.post("/forgot-password", json!({"email": "teste@"})).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        assert_eq!(malformed.body["code"], "invalid_email");
    }

    async fn reset_password_with_the_mailed_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("lia").await;
        let session = app.sign_in(&user).await;
        app.post("/forgot-password", json!({"email": user.email})).await;
        let mail = app.smtp.wait_for(&user.email, 1).await.remove(0);
        let token = mail.link().split("token=").nth(1).unwrap().to_owned();
        let wrong_email = app.post("/reset-password", json!({"email": "other@example.com", "token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(wrong_email.status, StatusCode::FORBIDDEN);
        let weak = app.post("/reset-password", json!({"email": user.email, "token": token, "password": "abc"})).await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST);
        let ok = app.post("/reset-password", json!({"email": user.email, "token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
        assert_eq!(app.me_status(&session.access).await, StatusCode::UNAUTHORIZED, "all sessions revoked");
        let spent = app.post("/reset-password", json!({"email": user.email, "token": token, "password": "Nova-S3nha-Boa2"})).await;
        assert_eq!(spent.status, StatusCode::FORBIDDEN, "single use");
        let bogus = app.post("/reset-password", json!({"email": user.email, "token": "A".repeat(32), "password": "Nova-S3nha-Boa2"})).await;
        assert_eq!(bogus.status, StatusCode::FORBIDDEN);
        app.sign_in_as("lia", "Nova-S3nha-Boa").await;
    }

    async fn wrong_current_passwords_count_towards_the_lock(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("jonas").await;
        let t = app.sign_in(&user).await;
        for _ in 0..5 {
            let r = app.post_auth("/change-password", &t.access, json!({"current_password": "Guess-1234", "new_password": "Outra-S3nha-Boa"})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }
        let right = app.post_auth("/change-password", &t.access, json!({"current_password": PASSWORD, "new_password": "Outra-S3nha-Boa"})).await;
        assert_eq!(right.status, StatusCode::FORBIDDEN, "locked: even the right password is refused");
        assert_eq!(app.post("/auth", json!({"login": "jonas", "password": PASSWORD})).await.status, StatusCode::FORBIDDEN);
    }
}
