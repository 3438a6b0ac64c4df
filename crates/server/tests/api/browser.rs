//! Browser sessions: cookie sign-in, CSRF double-submit tokens, and the known-device exception
//! to the account lock.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, Reply, TestApp, spawn_app, spawn_app_with};

/// A minimal cookie jar that sends every cookie (tests run over plain HTTP).
#[derive(Debug, Default, Clone)]
pub(crate) struct Jar(pub(crate) BTreeMap<String, String>);

impl Jar {
    pub(crate) fn absorb(&mut self, r: &Reply) {
        for v in r.headers.get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub(crate) fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

pub(crate) async fn send(
    app: &TestApp,
    jar: &mut Jar,
    method: reqwest::Method,
    path: &str,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> Reply {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.url))
        .header("cookie", jar.header());
    if let Some(token) = csrf {
        req = req.header("x-csrf-token", token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = app.request(req).await;
    jar.absorb(&r);
    r
}

async fn browser_sign_in(app: &TestApp, login: &str, password: &str) -> (Jar, String) {
    let mut jar = Jar::default();
    let r = send(
        app,
        &mut jar,
        reqwest::Method::GET,
        "/api/auth/csrf",
        None,
        None,
    )
    .await;
    let token = r.data()["csrf_token"].as_str().unwrap().to_owned();
    let r = send(
        app,
        &mut jar,
        reqwest::Method::POST,
        "/api/auth/session",
        Some(&token),
        Some(json!({"username_or_email": login, "password": password})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let csrf = r.data()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(jar.get("porteiro-csrf").as_deref(), Some(csrf.as_str()));
    (jar, csrf)
}

both_backends! {
    async fn cookie_sessions_need_csrf_tokens_for_every_change(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("cora").await;

        // Sign-in itself needs the token: without it nothing happens.
        let mut bare = Jar::default();
        let r = send(&app, &mut bare, reqwest::Method::POST, "/api/auth/session", None,
            Some(json!({"username_or_email": user.username, "password": PASSWORD}))).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")));
        assert!(bare.get("porteiro-session").is_none());

        let (mut jar, csrf) = browser_sign_in(&app, &user.username, PASSWORD).await;
        let set_cookie: Vec<_> = {
            let mut j = Jar::default();
            let r = send(&app, &mut j, reqwest::Method::GET, "/api/auth/csrf", None, None).await;
            r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
        };
        assert!(set_cookie[0].contains("SameSite=Strict"), "{set_cookie:?}");
        // Reads need no token.
        let me = send(&app, &mut jar, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert_eq!(me.data()["username"], user.username.as_str());

        // A change without the token, or with a wrong one, is refused and changes nothing.
        let path = format!("/api/users/{}", user.id);
        let stranger = app.auth.csrf_token(None);
        for token in [None, Some("forged"), Some(stranger.as_str())] {
            let r = send(&app, &mut jar, reqwest::Method::PUT, &path, token, Some(json!({"first_name": "Mallory"}))).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")), "{token:?}");
        }
        // A header equal to a cookie the attacker planted is not enough: the token is bound to
        // the session.
        let mut planted = jar.clone();
        planted.0.insert("porteiro-csrf".to_owned(), stranger.clone());
        let r = send(&app, &mut planted, reqwest::Method::PUT, &path, Some(&stranger), Some(json!({"first_name": "Mallory"}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let me = send(&app, &mut jar, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert!(me.data()["first_name"].is_null(), "{}", me.text);

        // With the session's token it works.
        let r = send(&app, &mut jar, reqwest::Method::PUT, &path, Some(&csrf), Some(json!({"first_name": "Cora"}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // The profile cache never hides one's own change.
        let me = send(&app, &mut jar, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!(me.data()["first_name"], "Cora", "{}", me.text);

        // Bearer calls need no CSRF token.
        let tokens = app.sign_in(&user).await;
        let r = app.put_auth(&path, &tokens.access, json!({"last_name": "Lima"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // The browser session is an ordinary session: listed among devices, and signing out
        // revokes it.
        let devices = app.get_auth("/api/auth/devices", &tokens.access).await;
        assert_eq!(devices.data().as_array().unwrap().len(), 2);
        let r = send(&app, &mut jar, reqwest::Method::DELETE, "/api/auth/session", None, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "sign-out needs the token too");
        let r = send(&app, &mut jar, reqwest::Method::DELETE, "/api/auth/session", Some(&csrf), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mut old = Jar::default();
        old.0.insert("porteiro-session".to_owned(), "x".repeat(43));
        let r = send(&app, &mut old, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(jar.get("porteiro-session").is_none());
        // Signing out with a session that already ended still clears the cookie.
        let r = send(&app, &mut old, reqwest::Method::DELETE, "/api/auth/session", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(old.get("porteiro-session").is_none());

        // Signing in again over a live browser session ends the previous one.
        let (mut first, _) = browser_sign_in(&app, &user.username, PASSWORD).await;
        let csrf = send(&app, &mut first, reqwest::Method::GET, "/api/auth/csrf", None, None).await.data()["csrf_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = first.get("porteiro-session").unwrap();
        let r = send(&app, &mut first, reqwest::Method::POST, "/api/auth/session", Some(&csrf),
            Some(json!({"username_or_email": user.username, "password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mut stale = Jar::default();
        stale.0.insert("porteiro-session".to_owned(), before);
        let r = send(&app, &mut stale, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    async fn a_known_device_is_not_locked_out_by_failures_from_elsewhere(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("TRUSTED_PROXIES", "127.0.0.1".to_owned())] }).await;
        let user = app.register("dina").await;
        let from = |ip: &'static str, device: Option<String>, password: &'static str| {
            let mut req = app
                .client
                .post(format!("{}/api/auth/login", app.url))
                .header("x-forwarded-for", ip)
                .json(&json!({"login": user.username, "password": password}));
            if let Some(d) = device {
                req = req.header("cookie", format!("porteiro-device={d}"));
            }
            app.request(req)
        };
        // The owner signs in at home and receives a device cookie.
        let r = from("198.51.100.10", None, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        let device = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();

        // An attacker elsewhere locks the account.
        for _ in 0..5 {
            assert_eq!(from("203.0.113.66", None, "Wrong-passw0rd").await.status, StatusCode::UNAUTHORIZED);
        }
        let r = from("203.0.113.66", None, PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "locked for everyone else");
        // A stolen device cookie used from another address does not help either.
        let r = from("203.0.113.66", Some(device.clone()), PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // The owner's known device, from its address, still signs in.
        let r = from("198.51.100.10", Some(device.clone()), PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.headers.get("set-cookie").is_none(), "the known device keeps its cookie");

        // The device has a lock of its own: five failures from it lock it too.
        for _ in 0..5 {
            assert_eq!(from("198.51.100.10", Some(device.clone()), "Wrong-passw0rd").await.status, StatusCode::UNAUTHORIZED);
        }
        let r = from("198.51.100.10", Some(device.clone()), PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // After the lock duration both locks are over.
        app.clock.advance(chrono::Duration::minutes(6));
        assert_eq!(from("198.51.100.10", Some(device.clone()), PASSWORD).await.status, StatusCode::OK);
        let r = from("203.0.113.66", None, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK);

        // "Sign out everywhere" forgets known devices: the cookie no longer exempts anyone.
        let access = r.data()["access_token"].as_str().unwrap().to_owned();
        let r = app.post_auth(&format!("/api/auth/revoke-all/{}", user.id), &access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        for _ in 0..5 {
            from("203.0.113.66", None, "Wrong-passw0rd").await;
        }
        assert_eq!(from("198.51.100.10", Some(device), PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    }
}
