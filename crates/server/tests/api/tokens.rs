//! Sessions and tokens: rotation, reuse detection, races, immediate revocation, introspection.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, spawn_app, spawn_app_with};

both_backends! {
    async fn reuse_of_a_spent_refresh_token_revokes_its_family_only(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("sara").await;
        let laptop = app.sign_in(&user).await;
        let phone = app.sign_in(&user).await;
        let rotated = app.post("/api/auth/refresh", json!({"refresh_token": laptop.refresh})).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
        let live_access = rotated.data()["access_token"].as_str().unwrap().to_owned();
        let live_refresh = rotated.data()["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(rotated.data()["token_type"], "Bearer");
        assert_eq!(rotated.data()["expires_in"], 300);
        // An attacker replays the stolen, already-spent token, after the grace window.
        app.clock.advance(chrono::Duration::seconds(11));
        let replay = app.post("/api/auth/refresh", json!({"refresh_token": laptop.refresh})).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
        // The whole family is dead: its newest refresh token and its live access tokens.
        assert_eq!(app.post("/api/auth/refresh", json!({"refresh_token": live_refresh})).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.me_status(&live_access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.me_status(&laptop.access).await, StatusCode::UNAUTHORIZED);
        // The other device is untouched.
        assert_eq!(app.me_status(&phone.access).await, StatusCode::OK);
        assert_eq!(app.post("/refresh", json!({"refresh": phone.refresh})).await.status, StatusCode::OK);
    }

    async fn without_the_grace_window_twelve_concurrent_refreshes_have_exactly_one_winner(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("REFRESH_REUSE_INTERVAL", "0".to_owned())] }).await;
        let user = app.register("tiago").await;
        let t = app.sign_in(&user).await;
        let attempts = (0..12).map(|_| app.post("/refresh", json!({"refresh": t.refresh.clone()})));
        let replies = futures::future::join_all(attempts).await;
        let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        assert_eq!(ok, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        assert!(replies.iter().all(|r| r.status == StatusCode::OK || r.status == StatusCode::FORBIDDEN));
        // With the window off, the losers presented a token that was already spent: that is
        // reuse, and it revokes the family, the winner's new pair included (README).
        let winner = replies.iter().find(|r| r.status == StatusCode::OK).unwrap();
        assert_eq!(app.me_status(winner.body["auth"].as_str().unwrap()).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.post("/refresh", json!({"refresh": winner.body["refresh"]})).await.status, StatusCode::FORBIDDEN);
    }

    async fn concurrent_refreshes_within_the_grace_window_share_one_successor(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("tania").await;
        let t = app.sign_in(&user).await;
        let attempts = (0..12).map(|_| app.post("/refresh", json!({"refresh": t.refresh.clone()})));
        let replies = futures::future::join_all(attempts).await;
        assert!(replies.iter().all(|r| r.status == StatusCode::OK), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        let successor = replies[0].body["refresh"].as_str().unwrap().to_owned();
        assert!(replies.iter().all(|r| r.body["refresh"] == successor.as_str()), "one successor for all");
        for r in &replies {
            assert_eq!(app.me_status(r.body["auth"].as_str().unwrap()).await, StatusCode::OK);
        }
        // The family goes on with that successor; the spent token is replayed no more once the
        // successor is spent in turn.
        let next = app.post("/api/auth/refresh", json!({"refresh_token": successor})).await;
        assert_eq!(next.status, StatusCode::OK, "{}", next.text);
        let live_access = next.data()["access_token"].as_str().unwrap().to_owned();
        let late = app.post("/refresh", json!({"refresh": t.refresh})).await;
        assert_eq!(late.status, StatusCode::FORBIDDEN, "reuse after the successor was spent");
        assert_eq!(app.me_status(&live_access).await, StatusCode::UNAUTHORIZED, "the family is revoked");
    }

    async fn racing_refreshes_keep_exactly_one_live_family(backend: Backend) {
        // A mobile app's two requests race on one token, again and again: both always succeed,
        // with the same successor, and the account ends with one live session.
        let app = spawn_app(backend).await;
        let user = app.register("ulisses").await;
        let mut current = app.sign_in(&user).await.refresh;
        for trial in 0..1000 {
            let (a, b) = tokio::join!(
                app.post("/api/auth/refresh", json!({"refresh_token": current})),
                app.post("/api/auth/refresh", json!({"refresh_token": current})),
            );
            assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK), "trial {trial}: {} / {}", a.text, b.text);
            assert_eq!(a.data()["refresh_token"], b.data()["refresh_token"], "trial {trial}");
            current = a.data()["refresh_token"].as_str().unwrap().to_owned();
        }
        let id: uuid::Uuid = user.id.parse().unwrap();
        let live = app.auth.store().list_active_sessions(id, app.auth.now()).await.unwrap();
        assert_eq!(live.len(), 1, "one live family");
        assert_eq!(app.post("/api/auth/refresh", json!({"refresh_token": current})).await.status, StatusCode::OK);
    }

    async fn outside_the_grace_window_a_spent_token_revokes_its_family(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("REFRESH_REUSE_INTERVAL", "2s".to_owned())] }).await;
        let user = app.register("vitor").await;
        let t = app.sign_in(&user).await;
        let rotated = app.post("/refresh", json!({"refresh": t.refresh})).await;
        assert_eq!(rotated.status, StatusCode::OK);
        app.clock.advance(chrono::Duration::seconds(3));
        let late = app.post("/refresh", json!({"refresh": t.refresh})).await;
        assert_eq!(late.status, StatusCode::FORBIDDEN);
        assert_eq!(app.post("/refresh", json!({"refresh": rotated.body["refresh"]})).await.status, StatusCode::FORBIDDEN);
    }

    async fn logout_and_revocations_kill_access_tokens_immediately(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("ursula").await;
        let a = app.sign_in(&user).await;
        assert_eq!(app.me_status(&a.access).await, StatusCode::OK, "warm the cache");
        assert_eq!(app.post_auth("/api/auth/logout", &a.access, json!({})).await.status, StatusCode::OK);
        assert_eq!(app.me_status(&a.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.post("/refresh", json!({"refresh": a.refresh})).await.status, StatusCode::FORBIDDEN);

        let b = app.sign_in(&user).await;
        let c = app.sign_in(&user).await;
        let r = app.post_auth("/api/auth/token/revoke", &b.access, json!({"token": c.refresh})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(app.me_status(&c.access).await, StatusCode::UNAUTHORIZED, "revoking a refresh token ends its session");
        assert_eq!(app.me_status(&b.access).await, StatusCode::OK);
        let r = app.request(app.client.post(format!("{}/api/auth/token/revoke", app.url)).bearer_auth(&b.access)).await;
        assert_eq!(r.status, StatusCode::OK, "no body: the current session: {}", r.text);
        assert_eq!(app.me_status(&b.access).await, StatusCode::UNAUTHORIZED);

        let d = app.sign_in(&user).await;
        let e = app.sign_in(&user).await;
        let r = app.post_auth(&format!("/api/auth/revoke-all/{}", user.id), &d.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.data()["revoked"], 2);
        assert_eq!(app.me_status(&d.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.me_status(&e.access).await, StatusCode::UNAUTHORIZED);
    }

    async fn users_cannot_revoke_someone_elses_sessions(backend: Backend) {
        let app = spawn_app(backend).await;
        let victim = app.register("vitor").await;
        let attacker = app.register("wagner").await;
        let v = app.sign_in(&victim).await;
        let w = app.sign_in(&attacker).await;
        assert_eq!(app.post_auth(&format!("/api/auth/revoke-all/{}", victim.id), &w.access, json!({})).await.status, StatusCode::FORBIDDEN);
        app.post_auth("/api/auth/token/revoke", &w.access, json!({"token": v.refresh})).await;
        assert_eq!(app.me_status(&v.access).await, StatusCode::OK);
        let admin = app.admin().await;
        assert_eq!(app.post_auth(&format!("/api/auth/revoke-all/{}", victim.id), &admin.access, json!({})).await.status, StatusCode::OK);
        assert_eq!(app.me_status(&v.access).await, StatusCode::UNAUTHORIZED);
    }

    async fn token_rotate_needs_the_callers_own_refresh_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("xenia").await;
        let a = app.sign_in(&user).await;
        let b = app.sign_in(&user).await;
        let cross = app.post_auth("/api/auth/token/rotate", &a.access, json!({"refresh_token": b.refresh})).await;
        assert_eq!(cross.status, StatusCode::UNAUTHORIZED);
        let own = app.post_auth("/api/auth/token/rotate", &a.access, json!({"refresh_token": a.refresh})).await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.text);
        assert_eq!(app.post("/refresh", json!({"refresh": b.refresh})).await.status, StatusCode::OK, "b untouched");
    }

    async fn password_reset_kills_every_access_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("yara").await;
        let a = app.sign_in(&user).await;
        assert_eq!(app.me_status(&a.access).await, StatusCode::OK);
        app.post("/forgot-password", json!({"email": user.email})).await;
        let link = app.smtp.wait_for(&user.email, 1).await.remove(0).link();
        let token = link.split("token=").nth(1).unwrap();
        let r = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(app.me_status(&a.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.post("/refresh", json!({"refresh": a.refresh})).await.status, StatusCode::FORBIDDEN);
    }

    async fn introspection_reports_active_and_inactive_tokens(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("INTROSPECTION_CLIENT_ID", "api-gateway".to_owned()),
            ("INTROSPECTION_CLIENT_SECRET", "gateway-secret-123".to_owned()),
        ] }).await;
        let user = app.register("zeca").await;
        let t = app.sign_in(&user).await;
        let introspect = |token: String, auth: Option<(&'static str, &'static str)>| {
            let mut req = app.client.post(format!("{}/api/auth/introspect", app.url)).form(&[("token", token)]);
            if let Some((id, secret)) = auth {
                req = req.basic_auth(id, Some(secret));
            }
            app.request(req)
        };
        assert_eq!(introspect(t.access.clone(), None).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(introspect(t.access.clone(), Some(("api-gateway", "wrong"))).await.status, StatusCode::UNAUTHORIZED);
        let user_token = app.request(app.client.post(format!("{}/api/auth/introspect", app.url)).bearer_auth(&t.access).form(&[("token", &t.access)])).await;
        assert_eq!(user_token.status, StatusCode::FORBIDDEN, "only administrators or the client");
        let active = introspect(t.access.clone(), Some(("api-gateway", "gateway-secret-123"))).await;
        assert_eq!(active.status, StatusCode::OK, "{}", active.text);
        assert_eq!(active.body["active"], true);
        assert_eq!(active.body["sub"], user.id.as_str());
        assert_eq!(active.body["token_type"], "access_token");
        let refresh = introspect(t.refresh.clone(), Some(("api-gateway", "gateway-secret-123"))).await;
        assert_eq!((refresh.body["active"].clone(), refresh.body["token_type"].clone()), (json!(true), json!("refresh_token")));
        app.post_auth("/api/auth/logout", &t.access, json!({})).await;
        for token in [t.access.clone(), t.refresh.clone(), "junk".to_owned()] {
            let r = introspect(token, Some(("api-gateway", "gateway-secret-123"))).await;
            assert_eq!(r.body, json!({"active": false}));
        }
        let admin = app.admin().await;
        let by_admin = app.request(app.client.post(format!("{}/api/auth/introspect", app.url)).bearer_auth(&admin.access).json(&json!({"token": admin.access}))).await;
        assert_eq!(by_admin.body["active"], true, "{}", by_admin.text);
    }

    async fn access_tokens_expire_after_five_minutes(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("alvaro").await;
        let t = app.sign_in(&user).await;
        app.clock.advance(chrono::Duration::seconds(4 * 60 + 50));
        assert_eq!(app.me_status(&t.access).await, StatusCode::OK);
        app.clock.advance(chrono::Duration::seconds(20));
        assert_eq!(app.me_status(&t.access).await, StatusCode::UNAUTHORIZED);
    }
}
