//! The security event log: every kind of event appears after its action, with the client's
//! address and user agent, and never a secret.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_PASSWORD, PASSWORD, TestApp, spawn_app};

async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app
        .get_auth(&format!("/api/admin/audit?limit=200{query}"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["events"].as_array().unwrap().clone()
}

both_backends! {
    async fn every_security_event_is_recorded_without_secrets(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let user = app.register("olga").await;
        let victim = app.register("vera").await;

        // Sign-in success and failures, up to a lock.
        let tokens = app.sign_in(&user).await;
        for _ in 0..5 {
            let r = app.post("/auth", json!({"login": user.email, "password": "Wrong-passw0rd"})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }
        let r = app.post("/auth", json!({"login": "nobody", "password": "Wrong-passw0rd"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app.post_auth("/api/auth/unlock", &admin.access, json!({"username_or_email": user.username})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // Password change (refused, then done), recovery requested and completed.
        let path = format!("/api/users/{}/change-password", user.id);
        let r = app.post_auth(&path, &tokens.access, json!({"current_password": "Wrong-passw0rd", "new_password": "N3w-Passphrase!"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"current_password": PASSWORD, "new_password": "N3w-Passphrase!"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        app.post("/api/auth/forgot-password", json!({"email": user.email})).await;
        let mail = app.smtp.wait_for(&user.email, 2).await;
        let link = mail.iter().find(|m| m.text().contains("token=")).unwrap().link();
        let reset_token = link.split("token=").nth(1).unwrap().to_owned();
        let r = app.post("/api/auth/reset-password", json!({"token": reset_token, "password": "Reset-Passphrase-9"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // Refresh reuse, sign-out, revoke-all.
        let t = app.sign_in_as(&user.username, "Reset-Passphrase-9").await;
        let r = app.post("/refresh", json!({"refresh": t.refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        app.clock.advance(chrono::Duration::seconds(11)); // past the grace window
        let r = app.post("/refresh", json!({"refresh": t.refresh})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let t2 = app.sign_in_as(&user.username, "Reset-Passphrase-9").await;
        let r = app.post_auth("/api/auth/logout", &t2.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        let t3 = app.sign_in_as(&user.username, "Reset-Passphrase-9").await;
        let r = app.post_auth(&format!("/api/auth/revoke-all/{}", user.id), &t3.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);

        // Administrator actions.
        let r = app.put_auth(&format!("/api/users/{}", victim.id), &admin.access, json!({"is_active": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.delete_auth(&format!("/api/users/{}", victim.id), &admin.access).await;
        assert!(r.status.is_success(), "{}", r.text);

        let events = audit(&app, &admin.access, "").await;
        let types: std::collections::HashSet<&str> =
            events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        for kind in [
            "server.started", "user.registered", "sign_in.succeeded", "sign_in.failed",
            "account.locked", "account.unlocked", "password.changed", "password.reset_requested",
            "password.reset_completed", "refresh_token.reused", "session.revoked",
            "sessions.revoked_all", "user.updated", "user.deleted",
        ] {
            assert!(types.contains(kind), "missing {kind}: {types:?}");
        }
        let of = |kind: &'static str| events.iter().filter(move |e| e["type"] == kind);
        // Failures carry reasons; the unknown identifier has no user.
        let reasons: Vec<_> = of("sign_in.failed").map(|e| e["details"]["reason"].as_str().unwrap()).collect();
        assert!(reasons.contains(&"wrong_password") && reasons.contains(&"unknown_account"), "{reasons:?}");
        assert!(of("sign_in.failed").any(|e| e["user_id"].is_null()));
        // The lock is recorded once, for the right account, with the client.
        let locked: Vec<_> = of("account.locked").collect();
        assert_eq!(locked.len(), 1);
        assert_eq!(locked[0]["user_id"], user.id.as_str());
        let ok = of("sign_in.succeeded").next_back().unwrap();
        assert_eq!(ok["ip_address"], "127.0.0.1");
        assert!(ok["user_agent"].is_string() || ok["user_agent"].is_null());
        assert_eq!(ok["outcome"], "success");
        // Administrator actions name the administrator as actor.
        let admin_id = app.get_auth("/api/auth/me", &admin.access).await.data()["id"].clone();
        for kind in ["account.unlocked", "user.updated", "user.deleted"] {
            assert_eq!(of(kind).next().unwrap()["actor_id"], admin_id, "{kind}");
        }
        assert!(of("password.changed").any(|e| e["outcome"] == "failure"));
        assert_eq!(of("server.started").next().unwrap()["details"]["backend"], if backend == crate::helpers::Backend::Sqlite { "sqlite" } else { "postgres" });

        // No secret anywhere in the log.
        let text = serde_json::to_string(&events).unwrap();
        for secret in [
            PASSWORD, "Wrong-passw0rd", "N3w-Passphrase!", "Reset-Passphrase-9", ADMIN_PASSWORD,
            &tokens.access, &tokens.refresh, &t.refresh, &reset_token,
        ] {
            assert!(!text.contains(secret), "a secret leaked into the audit log");
        }

        // Filters, cursor and validation.
        let failed = audit(&app, &admin.access, "&type=sign_in.failed").await;
        assert!(!failed.is_empty() && failed.iter().all(|e| e["type"] == "sign_in.failed"));
        let mine = audit(&app, &admin.access, &format!("&user_id={}", user.id)).await;
        assert!(mine.iter().all(|e| e["user_id"] == user.id.as_str()));
        let r = app.get_auth("/api/admin/audit?limit=2", &admin.access).await;
        let cursor = r.data()["next_before"].as_i64().unwrap();
        let next = app.get_auth(&format!("/api/admin/audit?limit=2&before={cursor}"), &admin.access).await;
        assert!(next.data()["events"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < cursor));
        let r = app.get_auth("/api/admin/audit?type=nonsense", &admin.access).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_event_type")));
        let r = app.get_auth("/api/admin/audit?since=yesterday", &admin.access).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    async fn users_see_only_their_own_events(backend: Backend) {
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bob = app.register("bob").await;
        let ta = app.sign_in(&ana).await;
        app.sign_in(&bob).await;
        let r = app.get_auth("/api/admin/audit", &ta.access).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app.get_auth(&format!("/api/auth/me/events?user_id={}", bob.id), &ta.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let events = r.data()["events"].as_array().unwrap();
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e["user_id"] == ana.id.as_str()), "{}", r.text);
        assert!(events.iter().any(|e| e["type"] == "sign_in.succeeded"));
        let r = app.get("/api/auth/me/events").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}
