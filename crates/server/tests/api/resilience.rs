//! Overload and outages: a saturated hash pool answers 503 at once; a dead mail server changes
//! nothing about the response, and the message waits in the outbox.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, spawn_app_with};

both_backends! {
    async fn a_saturated_hash_pool_answers_503_with_retry_after(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("HASH_WORKERS", "1".to_owned()),
            ("HASH_QUEUE", "0".to_owned()),
            ("ARGON2_MEMORY_KIB", "19456".to_owned()),
            ("ARGON2_ITERATIONS", "3".to_owned()),
        ] }).await;
        let user = app.register("kiko").await;
        // Let the single hashing thread get back to its receive loop after the registration's
        // hash: with no queue, only a waiting thread accepts (the others get 503 at once).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let attempts = (0..6).map(|_| app.post("/auth", json!({"login": user.username, "password": PASSWORD})));
        let replies = futures::future::join_all(attempts).await;
        let busy: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
        assert!(!busy.is_empty(), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        assert!(replies.iter().any(|r| r.status == StatusCode::OK));
        for r in busy {
            assert_eq!(r.body["code"], "service_unavailable");
            assert_eq!(r.headers["retry-after"], "1");
        }
    }

    async fn a_dead_mail_server_neither_delays_nor_changes_the_answer(backend: Backend) {
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_SMTP_PORT", closed_port.to_string())] }).await;
        let user = app.register("lara").await;
        let start = Instant::now();
        let known = app.post("/forgot-password", json!({"email": user.email})).await;
        assert!(start.elapsed() < Duration::from_secs(2));
        let unknown = app.post("/forgot-password", json!({"email": "ghost@example.com"})).await;
        assert_eq!((known.status, known.text), (unknown.status, unknown.text));
        // The message is queued and kept for retry, not lost: the registration's confirmation
        // link and the reset link both wait in the outbox.
        let store = app.auth.store();
        for _ in 0..100 {
            if store.pending_mail_count().await.unwrap() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the reset mail should wait in the outbox");
    }
}
