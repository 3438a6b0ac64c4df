//! Maintenance (seed 004 `/api/admin/clean-*`): each job removes exactly what can no longer be
//! used — aged with the server's shifted clock — and keeps the rest working; it needs
//! `system:maintain`; each run is audited with the caller as actor; and a scheduled round skips
//! while another holder has the maintenance lock.

use chrono::Duration;
use porteiro_core::flows::email_confirmation::ConfirmationSettings;
use porteiro_core::flows::maintenance::{Maintenance, MaintenanceSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{TestApp, TestUser, Tokens, spawn_app};
use crate::mfa::{claims, enrol, mfa_token, verify, verify_backup};

const ROUTES: [&str; 3] = [
    "/api/admin/clean-tokens",
    "/api/admin/clean-verification-codes",
    "/api/admin/clean-sessions",
];

/// Runs a job as `token`; returns `data.removed`.
async fn clean(app: &TestApp, route: &str, token: &str) -> u64 {
    let r = app.post_auth(route, token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{route}: {}", r.text);
    assert_eq!(r.body["status"], "success", "{}", r.text);
    r.data()["removed"].as_u64().expect("removed is a count")
}

/// Registers `name` and waits for the confirmation link, so that its row exists before the
/// test moves the clock.
async fn register(app: &TestApp, name: &str) -> TestUser {
    let user = app.register(name).await;
    app.smtp.wait_for_confirmation(&user.email, 1).await;
    user
}

/// The session id of an access token.
fn sid(tokens: &Tokens) -> Uuid {
    claims(&tokens.access)["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn session_exists(app: &TestApp, tokens: &Tokens) -> bool {
    app.auth
        .store()
        .session_by_id(sid(tokens))
        .await
        .unwrap()
        .is_some()
}

/// The `maintenance.run` events, newest first.
async fn runs(app: &TestApp, admin: &str) -> Vec<Value> {
    let r = app
        .get_auth("/api/admin/audit?type=maintenance.run", admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["events"].as_array().unwrap().clone()
}

async fn refresh_status(app: &TestApp, refresh: &str) -> StatusCode {
    app.post("/refresh", json!({"refresh": refresh}))
        .await
        .status
}

both_backends! {
    async fn clean_tokens_removes_dead_tokens_and_keeps_reuse_detection(backend: Backend) {
        // Arrange: ana rotates once (her first token is spent); bob signs out; carl asks for a
        // recovery link.
        let app = spawn_app(backend).await;
        let ana = register(&app, "ana").await;
        let bob = register(&app, "bob").await;
        let carl = register(&app, "carl").await;
        let first = app.sign_in(&ana).await;
        let r = app.post("/refresh", json!({"refresh": first.refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let bob_tokens = app.sign_in(&bob).await;
        let r = app.post_auth("/api/auth/logout", &bob_tokens.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        app.post("/forgot-password", json!({"email": carl.email})).await;
        app.smtp.wait_for(&carl.email, 1).await;
        // Eight days on: ana's session expired a day ago (its current token with it), bob's
        // was revoked more than the seven days ended sessions are kept, carl's link expired.
        app.clock.advance(Duration::days(8));
        let dan = register(&app, "dan").await;
        let live = app.sign_in(&dan).await;
        let admin = app.admin().await;

        // Act
        let removed = clean(&app, ROUTES[0], &admin.access).await;

        // Assert: ana's rotated token, bob's token and carl's link went; ana's spent token
        // stays (a replay is still detected), the live sessions still refresh.
        assert_eq!(removed, 3, "ana's current token, bob's token, carl's reset link");
        assert_eq!(clean(&app, ROUTES[0], &admin.access).await, 0);
        assert_eq!(refresh_status(&app, &first.refresh).await, StatusCode::FORBIDDEN);
        let reuse = app.get_auth("/api/admin/audit?type=refresh_token.reused", &admin.access).await;
        let reuse = reuse.data()["events"].as_array().unwrap().clone();
        assert_eq!(reuse.len(), 1, "the spent token was recognised");
        assert_eq!(reuse[0]["user_id"], ana.id.as_str());
        assert_eq!(refresh_status(&app, &live.refresh).await, StatusCode::OK);
        assert_eq!(refresh_status(&app, &admin.refresh).await, StatusCode::OK);
        let events = runs(&app, &admin.access).await;
        assert_eq!(events.len(), 2);
        let admin_id = claims(&admin.access)["sub"].clone();
        assert_eq!(events[1]["actor_id"], admin_id);
        assert_eq!(events[1]["user_id"], Value::Null);
        assert_eq!(events[1]["details"], json!({"job": "tokens", "removed": 3}));
        assert_eq!(events[0]["details"], json!({"job": "tokens", "removed": 0}));
    }

    async fn clean_verification_codes_removes_dead_links_and_second_steps(backend: Backend) {
        // Arrange: three links (bob's used), then an authenticator app for eve and a second
        // step she leaves open.
        let app = spawn_app(backend).await;
        register(&app, "ana").await;
        let bob = register(&app, "bob").await;
        let link = app.smtp.wait_for_confirmation(&bob.email, 1).await[0].link();
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let r = app.post("/api/auth/verify-email", json!({"token": token})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mut eve = enrol(&app, "eve").await;
        app.smtp.wait_for_confirmation(&eve.user.email, 1).await;
        mfa_token(&app, &eve.user).await;
        // A day and an hour on: every link is dead (ana's and eve's expired, bob's used more
        // than an hour ago) and so is eve's open step. Then eve completes one step and leaves
        // another open, and dan registers.
        app.clock.advance(Duration::hours(25));
        let completed = mfa_token(&app, &eve.user).await;
        let code = eve.backup_codes[0].clone();
        let r = verify_backup(&app, &completed, &code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let open = mfa_token(&app, &eve.user).await;
        let dan = register(&app, "dan").await;
        let admin = app.admin().await;

        // Act
        let removed = clean(&app, ROUTES[1], &admin.access).await;

        // Assert
        assert_eq!(removed, 5, "three links, the expired step and the completed one");
        assert_eq!(clean(&app, ROUTES[1], &admin.access).await, 0);
        let link = app.smtp.wait_for_confirmation(&dan.email, 1).await[0].link();
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let r = app.post("/api/auth/verify-email", json!({"token": token})).await;
        assert_eq!(r.status, StatusCode::OK, "dan's live link still works: {}", r.text);
        let code = eve.code(&app);
        let r = verify(&app, &open, &code).await;
        assert_eq!(r.status, StatusCode::OK, "eve's open step still works: {}", r.text);
        let events = runs(&app, &admin.access).await;
        assert_eq!(events[1]["details"], json!({"job": "verification_codes", "removed": 5}));
    }

    async fn clean_sessions_removes_sessions_ended_more_than_the_retention_ago(backend: Backend) {
        // Arrange: ana signs out and bob's session runs out, both more than seven days before
        // the run; eve's expired a day before it; carl signs out just before it; dan is live.
        let app = spawn_app(backend).await;
        let [ana, bob, carl, dan, eve] = [
            register(&app, "ana").await,
            register(&app, "bob").await,
            register(&app, "carl").await,
            register(&app, "dan").await,
            register(&app, "eve").await,
        ];
        let ana_tokens = app.sign_in(&ana).await;
        let r = app.post_auth("/api/auth/logout", &ana_tokens.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        let bob_tokens = app.sign_in(&bob).await;
        app.clock.advance(Duration::days(7));
        let eve_tokens = app.sign_in(&eve).await;
        app.clock.advance(Duration::days(8));
        let carl_tokens = app.sign_in(&carl).await;
        let r = app.post_auth("/api/auth/logout", &carl_tokens.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        let dan_tokens = app.sign_in(&dan).await;
        let admin = app.admin().await;

        // Act
        let removed = clean(&app, ROUTES[2], &admin.access).await;

        // Assert
        assert_eq!(removed, 2, "ana's and bob's sessions");
        assert_eq!(clean(&app, ROUTES[2], &admin.access).await, 0);
        assert!(!session_exists(&app, &ana_tokens).await);
        assert!(!session_exists(&app, &bob_tokens).await);
        for kept in [&eve_tokens, &carl_tokens, &dan_tokens, &admin] {
            assert!(session_exists(&app, kept).await);
        }
        assert_eq!(app.me_status(&dan_tokens.access).await, StatusCode::OK);
        assert_eq!(refresh_status(&app, &dan_tokens.refresh).await, StatusCode::OK);
        let events = runs(&app, &admin.access).await;
        assert_eq!(events[1]["details"], json!({"job": "sessions", "removed": 2}));
    }

    async fn maintenance_needs_system_maintain_and_a_caller(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("olga").await;
        let plain = app.sign_in(&user).await;
        for route in ROUTES {
            let r = app.post_auth(route, &plain.access, json!({})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{route}: {}", r.text);
            assert_eq!(r.body["status"], "error");
            let r = app.post(route, json!({})).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{route}: {}", r.text);
            assert_eq!(r.body["status"], "error");
            let r = app.get_auth(route, &plain.access).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{route}: {}", r.text);
        }
        let admin = app.admin().await;
        assert!(runs(&app, &admin.access).await.is_empty(), "refusals run nothing");
    }

    async fn a_scheduled_round_skips_while_another_holds_the_lock(backend: Backend) {
        let app = spawn_app(backend).await;
        let ana = register(&app, "ana").await;
        let tokens = app.sign_in(&ana).await;
        let r = app.post_auth("/api/auth/logout", &tokens.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        app.clock.advance(Duration::days(8));
        let store = app.auth.store().clone();
        let settings = MaintenanceSettings::new(
            app.auth.config(),
            &ConfirmationSettings::new(String::new(), String::new()),
        );
        let maintenance = Maintenance::new(store.clone(), app.clock.clone(), settings);

        let held = store.try_maintenance_lock().await.unwrap().expect("free");
        assert!(maintenance.run_scheduled().await.unwrap().is_none(), "skipped while held");
        assert!(session_exists(&app, &tokens).await, "and removed nothing");
        held.release().await.unwrap();
        let round = maintenance.run_scheduled().await.unwrap().expect("runs once free");
        assert!(round.jobs.iter().any(|(job, n)| job.as_str() == "sessions" && *n == 1), "{round:?}");
        assert!(!session_exists(&app, &tokens).await);
    }
}
