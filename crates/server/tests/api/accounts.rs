//! Registration, sign-in through `/api`, users and administration, sign-in timing.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, spawn_app, spawn_app_with};

both_backends! {
    async fn registration_normalises_and_validates(backend: Backend) {
        let app = spawn_app(backend).await;
        let r = app.post("/api/auth/register", json!({
            "username": "  Ana.Silva ", "email": " Ana.Silva@Example.COM ", "password": PASSWORD,
            "confirm_password": PASSWORD, "first_name": " Ana ", "last_name": "Silva"
        })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["status"], "success");
        let user = r.data();
        assert_eq!(user["username"], "Ana.Silva");
        assert_eq!(user["email"], "ana.silva@example.com");
        assert_eq!(user["first_name"], "Ana");
        for secret in ["password", "password_hash", "two_factor_secret", "backup_codes"] {
            assert!(user.get(secret).is_none(), "{secret} must never be returned");
        }
        let cases = [
            (json!({"username": "ANA.silva", "email": "x@example.com", "password": PASSWORD}), StatusCode::CONFLICT, "username_taken"),
            (json!({"username": "other", "email": "ANA.SILVA@example.com", "password": PASSWORD}), StatusCode::CONFLICT, "email_taken"),
            (json!({"username": "other", "email": "teste@", "password": PASSWORD}), StatusCode::BAD_REQUEST, "invalid_email"),
            (json!({"username": "a", "email": "o@example.com", "password": PASSWORD}), StatusCode::BAD_REQUEST, "invalid_username"),
            (json!({"username": "other", "email": "o@example.com", "password": "123"}), StatusCode::BAD_REQUEST, "weak_password"),
            (json!({"username": "other", "email": "o@example.com", "password": "password123"}), StatusCode::BAD_REQUEST, "weak_password"),
            (json!({"username": "other", "email": "o@example.com", "password": "other"}), StatusCode::BAD_REQUEST, "weak_password"),
            (json!({"username": "other", "email": "o@example.com", "password": PASSWORD, "confirm_password": "x"}), StatusCode::BAD_REQUEST, "password_mismatch"),
        ];
        for (body, status, code) in cases {
            let r = app.post("/api/auth/register", body.clone()).await;
            assert_eq!((r.status, r.body["code"].as_str()), (status, Some(code)), "{body}: {}", r.text);
            assert_eq!(r.body["status"], "error");
        }
        let weak = app.post("/api/auth/register", json!({"username": "other", "email": "o@example.com", "password": "123"})).await;
        assert_eq!(weak.body["reasons"], json!(["too_short", "no_letter"]));
        assert!(weak.body["message"].as_str().unwrap().contains("at least 8 characters"));
    }

    async fn api_login_returns_the_auth_response(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("beto").await;
        for field in ["username_or_email", "login", "email", "username"] {
            let id = if field == "email" { user.email.clone() } else { "BETO".to_owned() };
            let r = app.post("/api/auth/login", json!({field: id, "password": PASSWORD})).await;
            assert_eq!(r.status, StatusCode::OK, "{field}: {}", r.text);
            let d = r.data();
            assert_eq!(d["token_type"], "Bearer");
            assert_eq!(d["expires_in"], 300);
            assert_eq!(d["requires_2fa"], false);
            assert_eq!(d["requires_email_verification"], false);
            assert_eq!(d["user"]["id"], user.id.as_str());
            assert!(d["access_token"].is_string() && d["refresh_token"].is_string());
            assert_eq!(r.headers["cache-control"], "no-store");
        }
        let wrong = app.post("/api/auth/login", json!({"username_or_email": "beto", "password": "Wrong-pass-1"})).await;
        let unknown = app.post("/api/auth/login", json!({"username_or_email": "nobody", "password": "Wrong-pass-1"})).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.text, unknown.text);
        assert_eq!(wrong.body["code"], "invalid_credentials");
        let me = app.get_auth("/api/auth/me", &app.sign_in(&user).await.access).await;
        assert_eq!(me.data()["username"], "beto");
        assert_eq!(app.get("/api/auth/me").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn users_see_only_themselves_and_admins_see_everyone(backend: Backend) {
        let app = spawn_app(backend).await;
        let a = app.register("caio").await;
        let b = app.register("duda").await;
        let ta = app.sign_in(&a).await;
        assert_eq!(app.get_auth(&format!("/api/users/{}", a.id), &ta.access).await.status, StatusCode::OK);
        assert_eq!(app.get_auth(&format!("/api/users/{}", b.id), &ta.access).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get_auth(&format!("/api/users/{}", uuid::Uuid::new_v4()), &ta.access).await.status, StatusCode::FORBIDDEN, "no existence oracle");
        assert_eq!(app.put_auth(&format!("/api/users/{}", b.id), &ta.access, json!({"first_name": "x"})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get_auth("/api/users", &ta.access).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.put_auth(&format!("/api/users/{}", a.id), &ta.access, json!({"is_active": false})).await.status, StatusCode::FORBIDDEN);
        let own = app.put_auth(&format!("/api/users/{}", a.id), &ta.access, json!({"first_name": "Caio", "last_name": "Prado"})).await;
        assert_eq!((own.status, own.data()["last_name"].as_str()), (StatusCode::OK, Some("Prado")));
        let change = app.post_auth(&format!("/api/users/{}/change-password", b.id), &ta.access, json!({"current_password": PASSWORD, "new_password": "Outra-S3nha-Boa"})).await;
        assert_eq!(change.status, StatusCode::FORBIDDEN);

        let admin = app.admin().await;
        let page = app.get_auth("/api/users?page=1&per_page=2", &admin.access).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert_eq!(page.data()["total"], 3);
        assert_eq!(page.data()["items"].as_array().unwrap().len(), 2);
        assert_eq!(page.data()["total_pages"], 2);
        assert_eq!(app.get_auth("/api/users?per_page=1000", &admin.access).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.get_auth("/api/users?page=abc", &admin.access).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.get_auth(&format!("/api/users/{}", b.id), &admin.access).await.status, StatusCode::OK);
        assert_eq!(app.delete_auth(&format!("/api/users/{}", b.id), &ta.access).await.status, StatusCode::FORBIDDEN);
        let tb = app.sign_in(&b).await;
        assert_eq!(app.delete_auth(&format!("/api/users/{}", b.id), &admin.access).await.status, StatusCode::OK);
        assert_eq!(app.me_status(&tb.access).await, StatusCode::UNAUTHORIZED, "a deleted user's tokens die");
        assert_eq!(app.get_auth(&format!("/api/users/{}", b.id), &admin.access).await.status, StatusCode::NOT_FOUND);
        // Disabling revokes sessions.
        let r = app.put_auth(&format!("/api/users/{}", a.id), &admin.access, json!({"is_active": false})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(app.me_status(&ta.access).await, StatusCode::UNAUTHORIZED);
        let refresh = app.post("/refresh", json!({"refresh": ta.refresh})).await;
        assert_eq!(refresh.status, StatusCode::FORBIDDEN, "a disabled account cannot refresh");
        let disabled = app.post("/api/auth/login", json!({"username_or_email": "caio", "password": PASSWORD})).await;
        assert_eq!((disabled.status, disabled.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("account_disabled")));
    }

    async fn admins_change_passwords_and_unlock_accounts(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("edu").await;
        let admin = app.admin().await;
        for _ in 0..5 {
            app.post("/auth", json!({"login": "edu", "password": "Wrong-pass-1"})).await;
        }
        let view = app.get_auth(&format!("/api/users/{}", user.id), &admin.access).await;
        assert_eq!(view.data()["is_locked"], true);
        assert_eq!(app.post("/auth", json!({"login": "edu", "password": PASSWORD})).await.status, StatusCode::FORBIDDEN);
        let t_user = app.register("fred").await;
        let non_admin = app.sign_in(&t_user).await;
        assert_eq!(app.post_auth("/api/auth/unlock", &non_admin.access, json!({"user_id": user.id})).await.status, StatusCode::FORBIDDEN);
        let r = app.post_auth("/api/auth/unlock", &admin.access, json!({"username_or_email": "EDU@example.com"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["is_locked"], false);
        app.sign_in(&user).await;
        let r = app.post_auth(&format!("/api/users/{}/change-password", user.id), &admin.access, json!({"new_password": "Admin-Set-S3nha"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        app.sign_in_as("edu", "Admin-Set-S3nha").await;
        let unknown = app.post_auth("/api/auth/unlock", &admin.access, json!({"user_id": uuid::Uuid::new_v4()})).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }

    async fn unknown_users_cost_the_same_as_wrong_passwords(backend: Backend) {
        // Production hashing parameters, so the measurement is about hashing, not noise.
        let app = spawn_app_with(backend, Options { env: vec![
            ("ARGON2_MEMORY_KIB", "19456".to_owned()),
            ("ARGON2_ITERATIONS", "2".to_owned()),
            ("SECURITY_LOCKOUT_ATTEMPTS", "100".to_owned()),
        ] }).await;
        app.register("gil").await;
        // Forty interleaved pairs (a full suite shares the machine with PostgreSQL and the build).
        let (w, u) = app.median_failed_sign_in_secs("gil", "nobody", 40).await;
        let ratio = u / w;
        eprintln!("sign-in timing: unknown {u:.4}s vs wrong password {w:.4}s (ratio {ratio:.2})");
        assert!((0.8..=1.2).contains(&ratio), "unknown {u:.4}s vs wrong {w:.4}s (ratio {ratio:.2})");
    }
}
