//! HTTP hygiene: 4xx JSON for every malformed request, headers, health, docs.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, spawn_app, spawn_app_with};

both_backends! {
    async fn malformed_requests_get_enveloped_4xx(backend: Backend) {
        let app = spawn_app(backend).await;
        let raw = |method: reqwest::Method, path: &str, body: &'static str, ct: &'static str| {
            app.client.request(method, format!("{}{path}", app.url)).header("content-type", ct).body(body)
        };
        let cases = [
            (raw(reqwest::Method::POST, "/auth", "{not json", "application/json"), StatusCode::BAD_REQUEST, "invalid_json"),
            (raw(reqwest::Method::POST, "/auth", "{\"login\": [], \"password\": 1}", "application/json"), StatusCode::BAD_REQUEST, "invalid_request"),
            (raw(reqwest::Method::POST, "/auth", "login=a&password=b", "application/x-www-form-urlencoded"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (raw(reqwest::Method::POST, "/api/auth/register", "null", "application/json"), StatusCode::BAD_REQUEST, "invalid_request"),
            (raw(reqwest::Method::GET, "/nope", "", "text/plain"), StatusCode::NOT_FOUND, "not_found"),
            (raw(reqwest::Method::DELETE, "/auth", "", "text/plain"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (raw(reqwest::Method::GET, "/api/users/not-a-uuid", "", "text/plain"), StatusCode::UNAUTHORIZED, "invalid_token"),
        ];
        for (req, status, code) in cases {
            let r = app.request(req).await;
            assert_eq!((r.status, r.body["code"].as_str()), (status, Some(code)), "{}", r.text);
            assert_eq!(r.body["status"], "error");
            assert_eq!(r.headers["content-type"], "application/json");
        }
        // The server answers 413 before reading the oversized body and then closes the connection;
        // the client can see a reset instead of the answer if it is still sending, so allow a retry.
        let big = format!("{{\"login\": \"{}\", \"password\": \"x\"}}", "a".repeat(70 * 1024));
        // A client of its own, without pooling: the connection the server closes is not reused.
        let once = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let mut answered = None;
        for _ in 0..5 {
            let req = once.post(format!("{}/auth", app.url)).header("content-type", "application/json").body(big.clone());
            if let Ok(resp) = req.send().await {
                answered = Some((resp.status(), resp.json::<serde_json::Value>().await.unwrap()));
                break;
            }
        }
        let (status, body) = answered.expect("an answer to the oversized request");
        assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
        // Odd but valid input never reaches a 5xx.
        for login in ["' OR 1=1 --", "\u{0}", "ä".repeat(300).as_str(), "%00", "{{7*7}}"] {
            let r = app.post("/auth", json!({"login": login, "password": "x"})).await;
            assert!(r.status.is_client_error(), "{login:?} -> {}", r.status);
        }
        let r = app.post("/api/auth/register", json!({"username": "x\u{0}y", "email": "a@b.c\u{0}", "password": "\u{0}"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    async fn every_response_carries_hardening_headers(backend: Backend) {
        let app = spawn_app(backend).await;
        for path in ["/api/health", "/nope", "/", "/api/openapi.json"] {
            let r = app.get(path).await;
            assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(r.headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(r.headers["referrer-policy"], "no-referrer", "{path}");
            assert!(r.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
            assert!(r.headers.contains_key("x-request-id"), "{path}");
        }
        assert_eq!(app.get("/api/health").await.headers["cache-control"], "no-store");
    }

    async fn health_version_and_docs_are_served(backend: Backend) {
        let app = spawn_app(backend).await;
        let health = app.get("/api/health").await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.data()["status"], "online");
        let version = app.get("/api/health/version").await;
        assert_eq!(version.data()["version"], env!("CARGO_PKG_VERSION"));
        let spec = app.get("/api/openapi.json").await;
        assert_eq!(spec.status, StatusCode::OK);
        assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in ["/auth", "/refresh", "/change-password", "/forgot-password", "/reset-password", "/api/auth/login",
                     "/api/auth/devices/{id}", "/api/users/{id}/change-password", "/.well-known/jwks.json", "/api/auth/introspect"] {
            assert!(spec.body["paths"].get(path).is_some(), "{path} missing from the spec");
        }
        let page = app.get("/").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(page.text.contains("/api/openapi.json") && page.text.contains("/api/auth/login"));
        assert!(!page.text.contains("<script"), "no script, no CDN");
        let css = app.get("/assets/docs.css").await;
        assert_eq!(css.status, StatusCode::OK);
    }

    async fn api_messages_follow_accept_language_and_the_default_language(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("lucia").await;
        let bad = json!({"login": user.email, "password": "Wrong-passw0rd-x"});
        let pt = |req: reqwest::RequestBuilder| req.header("accept-language", "pt-BR,pt;q=0.9,en;q=0.5");
        // Errors: the same wording as the hosted pages, the code unchanged.
        let r = app.request(pt(app.client.post(format!("{}/api/auth/login", app.url)).json(&bad))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "invalid_credentials");
        assert_eq!(r.body["message"], "Email ou senha incorretos");
        assert_eq!(r.headers["content-language"], "pt-BR");
        // Success messages: the seed-004 system's Portuguese where it has one.
        let t = app.sign_in(&user).await;
        let change = json!({"current_password": PASSWORD, "new_password": "Nova-Frase-Secreta-42"});
        let r = app.request(pt(app.client.post(format!("{}/api/users/{}/change-password", app.url, user.id)).bearer_auth(&t.access).json(&change))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.body["message"].as_str().unwrap().starts_with("Senha alterada com sucesso"), "{}", r.text);
        // English when asked, and for clients that name no language by default.
        let r = app.request(app.client.post(format!("{}/api/auth/login", app.url)).header("accept-language", "en-US").json(&bad)).await;
        assert_eq!(r.body["message"], "Email or password incorrect.");
        assert_eq!(r.headers["content-language"], "en");
        let r = app.post("/api/auth/login", bad.clone()).await;
        assert_eq!(r.body["message"], "Email or password incorrect.");
        // Route-level errors too.
        let r = app.request(pt(app.client.get(format!("{}/api/nothing-here", app.url)))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.body["message"], "Rota não encontrada.");

        let br = spawn_app_with(backend, Options { env: vec![("DEFAULT_LANGUAGE", "pt-BR".to_owned())] }).await;
        let r = br.post("/api/auth/login", json!({"login": "nobody@example.com", "password": "Wrong-passw0rd-x"})).await;
        assert_eq!(r.body["message"], "Email ou senha incorretos");
        let r = br.request(br.client.post(format!("{}/api/auth/login", br.url)).header("accept-language", "en").json(&bad)).await;
        assert_eq!(r.body["message"], "Email or password incorrect.");
    }

}
