//! Two instances on one PostgreSQL database: a revocation on one reaches the other within 1 s.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, spawn_app, spawn_twin};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_is_seen_by_the_other_within_a_second() {
    if std::env::var("TEST_POSTGRES_URL").is_err() {
        eprintln!("TEST_POSTGRES_URL is not set: skipping");
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_twin(&a).await;
    let user = a.register("ines").await;
    for revoke in ["logout", "password"] {
        let t = a.sign_in(&user).await;
        // B has seen the token as valid, so its cache holds the session as usable.
        assert_eq!(b.me_status(&t.access).await, StatusCode::OK);
        assert_eq!(b.me_status(&t.access).await, StatusCode::OK);
        let start = Instant::now();
        match revoke {
            "logout" => assert_eq!(
                a.post_auth("/api/auth/logout", &t.access, json!({}))
                    .await
                    .status,
                StatusCode::OK
            ),
            _ => {
                let keep = a.sign_in(&user).await;
                let r = a.post_auth("/change-password", &keep.access, json!({"current_password": user.password, "new_password": "Outra-S3nha-Boa"})).await;
                assert_eq!(r.status, StatusCode::OK);
                let r = a.post_auth("/change-password", &keep.access, json!({"current_password": "Outra-S3nha-Boa", "new_password": user.password})).await;
                assert_eq!(r.status, StatusCode::OK);
            }
        }
        loop {
            if b.me_status(&t.access).await == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "instance B still accepts the token after {:?} ({revoke})",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Lockout state is shared through the database too.
    for _ in 0..3 {
        a.post(
            "/auth",
            json!({"login": "ines", "password": "Wrong-pass-1"}),
        )
        .await;
        b.post(
            "/auth",
            json!({"login": "ines", "password": "Wrong-pass-1"}),
        )
        .await;
    }
    assert_eq!(
        a.post("/auth", json!({"login": "ines", "password": user.password}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_failure_count() {
    if std::env::var("TEST_POSTGRES_URL").is_err() {
        eprintln!("TEST_POSTGRES_URL is not set: skipping");
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_twin(&a).await;
    let user = a.register("lena").await;
    // Three failures on A and two on B make five: the account is locked on both.
    for (app, n) in [(&a, 3), (&b, 2)] {
        for _ in 0..n {
            let r = app
                .post(
                    "/api/auth/login",
                    json!({"login": user.email, "password": "Wrong-passw0rd"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
    }
    for app in [&a, &b] {
        let r = app
            .post(
                "/api/auth/login",
                json!({"login": user.username, "password": user.password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
}
