//! Abuse protection and browser hardening: rate limits, trusted proxies, the recovery-mail
//! limit, CORS, security headers and HTTPS.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, TestApp, spawn_app_with};

fn limited(capacity: &str, extra: &[(&'static str, &str)]) -> Options {
    let mut env = vec![
        ("RATE_LIMIT_CAPACITY", capacity.to_owned()),
        ("RATE_LIMIT_REFILL_RATE", "0.01".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options { env }
}

async fn login_from(
    app: &TestApp,
    forwarded_for: Option<&str>,
    login: &str,
) -> crate::helpers::Reply {
    let mut req = app
        .client
        .post(format!("{}/api/auth/login", app.url))
        .json(&json!({"login": login, "password": "Wrong-passw0rd"}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    app.request(req).await
}

both_backends! {
    async fn a_burst_beyond_capacity_gets_429_with_retry_after(backend: Backend) {
        // General bucket 30; the sign-in bucket is a tenth of it: 3.
        let app = spawn_app_with(backend, limited("30", &[])).await;
        let user = app.register("rita").await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(login_from(&app, None, &user.username).await.status);
        }
        assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 3]);
        // The fourth attempt is refused before any password check, the same way for an existing
        // and an unknown account.
        let known = login_from(&app, None, &user.username).await;
        let unknown = login_from(&app, None, "nobody-here").await;
        for r in [&known, &unknown] {
            assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
            assert_eq!(r.body["code"], "too_many_requests");
            let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(wait >= 1, "{wait}");
            assert_eq!(r.headers["x-content-type-options"], "nosniff");
        }
        assert_eq!(known.text, unknown.text);
        // Other routes still work: only the sign-in bucket is empty.
        assert_eq!(app.get("/api/health").await.status, StatusCode::OK);
        // The general bucket applies to every route.
        let mut last = StatusCode::OK;
        for _ in 0..40 {
            last = app.get("/api/health").await.status;
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    }

    async fn forged_forwarding_headers_do_not_escape_the_limit(backend: Backend) {
        let app = spawn_app_with(backend, limited("20", &[])).await;
        // Sign-in bucket: 2. Each request claims to come from somewhere else.
        let mut statuses = Vec::new();
        for i in 0..4 {
            statuses.push(login_from(&app, Some(&format!("203.0.113.{i}")), "someone").await.status);
        }
        assert_eq!(
            statuses,
            [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]
        );
    }

    async fn behind_a_trusted_proxy_each_client_has_its_own_bucket(backend: Backend) {
        let app = spawn_app_with(backend, limited("20", &[("TRUSTED_PROXIES", "127.0.0.1/32, ::1")])).await;
        for client in ["203.0.113.7", "203.0.113.8"] {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(login_from(&app, Some(&format!("6.6.6.6, {client}")), "someone").await.status);
            }
            assert_eq!(
                statuses,
                [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS],
                "{client}"
            );
        }
        // The session records the forwarded address, not the proxy's.
        let user = app.register("pia").await;
        let r = app
            .request(
                app.client
                    .post(format!("{}/api/auth/login", app.url))
                    .header("x-forwarded-for", "198.51.100.23")
                    .json(&json!({"login": user.username, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let token = r.data()["access_token"].as_str().unwrap().to_owned();
        let devices = app.get_auth("/api/auth/devices", &token).await;
        assert_eq!(devices.data()[0]["ip_address"], "198.51.100.23", "{}", devices.text);
    }

    async fn at_most_three_recovery_mails_per_address(backend: Backend) {
        let app = crate::helpers::spawn_app(backend).await;
        let user = app.register("mara").await;
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let r = app.post("/api/auth/forgot-password", json!({"email": user.email})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            bodies.push(r.text);
        }
        let unknown = app.post("/api/auth/forgot-password", json!({"email": "ghost@example.com"})).await;
        bodies.push(unknown.text);
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
        app.smtp.wait_for(&user.email, 3).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mails = app.smtp.messages().into_iter().filter(|m| m.to.contains(&user.email)).count();
        assert_eq!(mails, 3);
        // The requests ran concurrently, so mail order is not issue order: exactly one link,
        // the newest, works.
        let mut worked = 0;
        for mail in app.smtp.wait_for(&user.email, 3).await {
            let token = mail.link().split("token=").nth(1).unwrap().to_owned();
            let r = app.post("/api/auth/reset-password", json!({"token": token, "password": "An0ther-Secret!"})).await;
            if r.status == StatusCode::OK {
                worked += 1;
            }
        }
        assert_eq!(worked, 1);
    }

    async fn cors_only_for_configured_origins(backend: Backend) {
        let app = spawn_app_with(
            backend,
            Options { env: vec![("CORS_ALLOWED_ORIGINS", "https://app.example.com, http://localhost:3000".to_owned())] },
        )
        .await;
        let preflight = |origin: &'static str| {
            app.client
                .request(reqwest::Method::OPTIONS, format!("{}/api/auth/login", app.url))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type, x-csrf-token")
        };
        let ok = app.request(preflight("https://app.example.com")).await;
        assert!(ok.status.is_success(), "{}", ok.status);
        assert_eq!(ok.headers["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(ok.headers["access-control-allow-credentials"], "true");
        let allowed = ok.headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(allowed.contains("x-csrf-token") && allowed.contains("content-type"), "{allowed}");

        let evil = app.request(preflight("https://evil.example.net")).await;
        assert!(evil.headers.get("access-control-allow-origin").is_none());
        assert!(evil.headers.get("access-control-allow-credentials").is_none());

        let get = |origin: &'static str| app.client.get(format!("{}/api/health", app.url)).header("origin", origin);
        let r = app.request(get("http://localhost:3000")).await;
        assert_eq!(r.headers["access-control-allow-origin"], "http://localhost:3000");
        let r = app.request(get("https://evil.example.net")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.get("access-control-allow-origin").is_none());
    }

    async fn https_with_a_generated_certificate(backend: Backend) {
        let dir = std::env::temp_dir().join(format!("porteiro-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let mut app = spawn_app_with(
            backend,
            Options {
                env: vec![
                    ("TLS_CERT_FILE", cert.to_string_lossy().into_owned()),
                    ("TLS_KEY_FILE", key.to_string_lossy().into_owned()),
                ],
            },
        )
        .await;
        assert!(app.url.starts_with("https://"), "{}", app.url);
        app.client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap())
            .https_only(true)
            .build()
            .unwrap();
        let user = app.register("tilda").await;
        let tokens = app.sign_in(&user).await;
        assert_eq!(app.me_status(&tokens.access).await, StatusCode::OK);
        let r = app.get("/api/health").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
        // A client that does not trust the certificate cannot talk to it.
        let stranger = reqwest::Client::new();
        assert!(stranger.get(format!("{}/api/health", app.url)).send().await.is_err());
        // Plain HTTP on the TLS port is not served.
        let plain = reqwest::Client::new();
        let http_url = app.url.replacen("https://", "http://", 1);
        let answer = plain.get(format!("{http_url}/api/health")).send().await;
        assert!(answer.map_or(true, |r| r.status() != StatusCode::OK));
    }
}

#[tokio::test]
async fn plain_http_has_no_hsts() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let r = app.get("/api/health").await;
    assert!(r.headers.get("strict-transport-security").is_none());
    for path in ["/api/health", "/nope", "/"] {
        let r = app.get(path).await;
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
    }
}
