//! The hosted UI over plain HTTP, as a browser without JavaScript (and the enhanced form's JSON
//! answers): CSRF on every form, the cookie session, the lock message, the language switch, the
//! rate limiter's page, and the headers. The browser suite (tests/ui) covers what needs a browser.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::browser::Jar;
use crate::helpers::{Options, PASSWORD, Reply, TestApp, spawn_app, spawn_app_with};

pub(crate) async fn get(app: &TestApp, jar: &mut Jar, path: &str, lang: &str) -> Reply {
    let req = app
        .client
        .get(format!("{}{path}", app.url))
        .header("cookie", jar.header())
        .header("accept-language", lang);
    let r = app.request(req).await;
    jar.absorb(&r);
    r
}

/// Posts a form, the enhanced way (`json`) or the plain way.
pub(crate) async fn post(
    app: &TestApp,
    jar: &mut Jar,
    path: &str,
    fields: &[(&str, &str)],
    json: bool,
) -> Reply {
    let mut req = app
        .client
        .post(format!("{}{path}", app.url))
        .header("cookie", jar.header())
        .form(fields);
    if json {
        req = req.header("accept", "application/json");
    }
    let r = app.request(req).await;
    jar.absorb(&r);
    r
}

/// The CSRF token a page's forms carry.
pub(crate) fn form_token(page: &Reply) -> String {
    let text = &page.text;
    let at = text
        .find("name=\"csrf_token\" value=\"")
        .expect("a CSRF field")
        + 25;
    text[at..at + text[at..].find('"').unwrap()].to_owned()
}

async fn login_form(app: &TestApp, jar: &mut Jar) -> String {
    let page = get(app, jar, "/ui/login", "en").await;
    assert_eq!(page.status, StatusCode::OK);
    form_token(&page)
}

pub(crate) fn location(r: &Reply) -> &str {
    r.headers.get("location").unwrap().to_str().unwrap()
}

both_backends! {
    async fn pages_have_strict_csp_and_no_inline_code(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        for path in ["/ui/login", "/ui/register", "/ui/forgot-password", "/ui/reset-password?token=x"] {
            let r = get(&app, &mut jar, path, "en").await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
            let csp = r.headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
            assert_eq!(r.headers["x-frame-options"], "DENY");
            for (i, _) in r.text.match_indices("<script") {
                assert!(r.text[i..i + 60].contains(" src=\"/ui/assets/"), "inline script on {path}");
            }
            assert!(!r.text.contains(" style=") && !r.text.contains("<style"), "inline style on {path}");
            assert!(!r.text.contains(" on") || !r.text.contains("onclick="), "inline handler on {path}");
            if path != "/ui/reset-password?token=x" {
                assert!(r.text.contains("name=\"csrf_token\""), "{path} forms carry a CSRF token");
            }
        }
        let css = app.get("/ui/assets/porteiro.css").await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
        let js = app.get("/ui/assets/porteiro.js").await;
        assert!(js.headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
        let missing = get(&app, &mut jar, "/ui/nothing-here", "pt-BR").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.text.contains("Esta página não existe."));
    }

    async fn sign_in_without_javascript_sets_the_cookie_session(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uiplain").await;
        let mut jar = Jar::default();
        let token = login_form(&app, &mut jar).await;
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &format!("  {}  ", user.email)), ("password", PASSWORD)], false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(location(&r), "/ui/account");
        let set: Vec<_> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let session = set.iter().find(|c| c.starts_with("porteiro-session=")).expect("session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
        // The same session model as the API: the cookie works there and the session is a device.
        let me = app.request(app.client.get(format!("{}/api/auth/me", app.url)).header("cookie", jar.header())).await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.data()["username"], "uiplain");
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        assert_eq!(account.status, StatusCode::OK);
        assert!(account.text.contains("This device"));
        assert!(account.text.contains("Recent activity") && account.text.contains("Signed in"),
            "the account page lists the sign-in among recent events");
        // Sign out revokes it.
        let token = form_token(&account);
        let out = post(&app, &mut jar, "/ui/logout", &[("csrf_token", &token)], false).await;
        assert_eq!(location(&out), "/ui/login?notice=signed_out");
        let me = app.request(app.client.get(format!("{}/api/auth/me", app.url))
            .header("cookie", format!("porteiro-session={}", session.split(['=', ';']).nth(1).unwrap()))).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    }

    async fn every_form_refuses_a_missing_or_foreign_csrf_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uicsrf").await;
        let mut jar = Jar::default();
        let _ = login_form(&app, &mut jar).await;
        let other = {
            let mut elsewhere = Jar::default();
            login_form(&app, &mut elsewhere).await
        };
        for token in ["", "forged", other.as_str()] {
            let r = post(&app, &mut jar, "/ui/login",
                &[("csrf_token", token), ("identifier", &user.email), ("password", PASSWORD)], false).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "token {token:?}");
            assert!(r.headers.get("location").is_none());
            assert!(jar.get("porteiro-session").is_none(), "no session without a valid token");
            let r = post(&app, &mut jar, "/ui/register",
                &[("csrf_token", token), ("username", "uicsrf2"), ("email", "uicsrf2@example.com"),
                  ("password", PASSWORD), ("confirm_password", PASSWORD)], true).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert_eq!(r.body["code"], "csrf_failed");
        }
        // The enhanced form's refusal carries a working token: the retry goes through.
        let fresh = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", "stale"), ("username", "uicsrf3"), ("email", "uicsrf3@example.com"),
              ("password", PASSWORD), ("confirm_password", PASSWORD)], true).await;
        let fresh = fresh.body["csrf_token"].as_str().expect("a fresh token").to_owned();
        let retry = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", &fresh), ("username", "uicsrf3"), ("email", "uicsrf3@example.com"),
              ("password", PASSWORD), ("confirm_password", PASSWORD)], true).await;
        assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
        // Nothing changed: no account was created, and the sign-ins were never attempted.
        assert_eq!(app.post("/api/auth/login", serde_json::json!({"username_or_email": "uicsrf2", "password": PASSWORD})).await.status, StatusCode::UNAUTHORIZED);
        let u = app.auth.find_user("uicsrf").await.unwrap().unwrap();
        assert_eq!(u.failed_login_attempts, 0);

        // Signed in, the account forms need the token bound to this session.
        let token = login_form(&app, &mut jar).await;
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let r = post(&app, &mut jar, "/ui/account/password",
            &[("csrf_token", &token), ("current_password", PASSWORD), ("password", "Brand-New-Pass-7"), ("confirm_password", "Brand-New-Pass-7")], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "the pre-sign-in token is not this session's");
        assert_eq!(r.body["code"], "csrf_failed");
        let r = post(&app, &mut jar, "/ui/logout", &[("csrf_token", "forged")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        // A cross-site form sends neither cookie: refused, and no cookie is touched.
        let r = post(&app, &mut Jar::default(), "/ui/logout", &[("csrf_token", "")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(
            !r.headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("porteiro-session=")),
            "a refused sign-out leaves the session cookie alone"
        );
        let me = app.request(app.client.get(format!("{}/api/auth/me", app.url)).header("cookie", jar.header())).await;
        assert_eq!(me.status, StatusCode::OK, "still signed in");
    }

    async fn the_lock_message_is_the_same_for_known_and_unknown_accounts(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uilock").await;
        let mut answers: Vec<(u16, Value)> = Vec::new();
        for identifier in [user.email.as_str(), "nobody-here@example.com"] {
            let mut jar = Jar::default();
            let token = login_form(&app, &mut jar).await;
            let mut last = None;
            for i in 0..6 {
                let r = post(&app, &mut jar, "/ui/login",
                    &[("csrf_token", &token), ("identifier", identifier), ("password", &format!("Wrong-pass-{i}"))], true).await;
                last = Some((r.status.as_u16(), r.body.clone()));
                if i < 5 {
                    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
                    assert_eq!(r.body["code"], "invalid_credentials");
                }
            }
            answers.push(last.unwrap());
        }
        assert_eq!(answers[0], answers[1], "no difference between an account and no account");
        assert_eq!(answers[0].0, 429);
        assert_eq!(answers[0].1["code"], "account_locked");
        assert_eq!(answers[0].1["message"], "🔒 Too many failed attempts. Account locked for 5 minutes.");
        // The server's lock is real: the right password is refused through the API too.
        let r = app.post("/api/auth/login", serde_json::json!({"username_or_email": user.email, "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    async fn an_unlock_lifts_the_lock_message(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uiunlock").await;
        let mut jar = Jar::default();
        let token = login_form(&app, &mut jar).await;
        for i in 0..6 {
            let r = post(&app, &mut jar, "/ui/login",
                &[("csrf_token", &token), ("identifier", &user.email), ("password", &format!("Wrong-pass-{i}"))], true).await;
            assert_eq!(r.status, if i < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::TOO_MANY_REQUESTS });
        }
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], true).await;
        assert_eq!(r.body["code"], "account_locked", "still locked on the server");
        assert!(r.headers.contains_key("retry-after"));
        // Failures during the lock do not extend it: three minutes on, two are left.
        app.clock.advance(chrono::Duration::minutes(3));
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", "Wrong-pass-9")], true).await;
        assert_eq!(r.body["message"], "🔒 Too many failed attempts. Account locked for 2 minutes.");
        app.auth.unlock(&user.email).await.unwrap();
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], true).await;
        assert_eq!(r.status, StatusCode::OK, "the browser's record does not outlive the lock: {}", r.text);
        assert_eq!(r.body["redirect"], "/ui/account");
        assert!(jar.get("porteiro-attempts").is_none(), "cleared on success");
    }

    async fn a_tampered_attempts_cookie_is_ignored(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uitamper").await;
        let mut jar = Jar::default();
        let token = login_form(&app, &mut jar).await;
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", "Wrong-pass-1")], true).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let cookie = jar.get("porteiro-attempts").expect("attempts cookie");
        let mut forged = cookie.clone().into_bytes();
        let i = forged.len() / 3;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        jar.0.insert("porteiro-attempts".to_owned(), String::from_utf8(forged).unwrap());
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], true).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["redirect"], "/ui/account");
    }

    async fn registration_and_recovery_through_the_forms(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        // The language switch's cookie: every answer below is in Portuguese.
        jar.0.insert("porteiro-lang".to_owned(), "pt-BR".to_owned());
        let page = get(&app, &mut jar, "/ui/register", "en").await;
        assert!(page.text.contains("<html lang=\"pt-BR\">"));
        let token = form_token(&page);
        let weak = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", &token), ("username", "uinew"), ("email", "uinew@example.com"), ("password", "123"), ("confirm_password", "123")], false).await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST);
        assert!(weak.text.contains("A senha deve ter no mínimo 8 caracteres"), "{}", weak.text);
        assert!(weak.text.contains("value=\"uinew@example.com\""), "the form keeps its values");
        let bad_email = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", &token), ("username", "uinew"), ("email", "teste@"), ("password", "MinhaS3nha!Forte"), ("confirm_password", "MinhaS3nha!Forte")], true).await;
        assert_eq!(bad_email.body["message"], "⚠️ Email inválido");
        let ok = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", &token), ("username", " uinew "), ("email", " uinew@example.com "), ("password", "MinhaS3nha!Forte"), ("confirm_password", "MinhaS3nha!Forte")], false).await;
        assert_eq!(location(&ok), "/ui/login?notice=registered");

        let forgot = get(&app, &mut jar, "/ui/forgot-password", "pt-BR").await;
        let token = form_token(&forgot);
        let sent = post(&app, &mut jar, "/ui/forgot-password", &[("csrf_token", &token), ("email", "uinew@example.com")], false).await;
        assert_eq!(sent.status, StatusCode::OK);
        assert!(sent.text.contains("<meta http-equiv=\"refresh\" content=\"3;url=/ui/login\">"));
        let unknown = post(&app, &mut jar, "/ui/forgot-password", &[("csrf_token", &token), ("email", "nobody@example.com")], false).await;
        assert_eq!(sent.text.replace(&token, ""), unknown.text.replace(&token, ""), "same page for an unknown address");
        let mail = app.smtp.wait_for("uinew@example.com", 1).await;
        let link = mail[0].link();
        let path = &link[link.find("/ui/reset-password").unwrap()..];
        let page = get(&app, &mut jar, path, "pt-BR").await;
        let token = form_token(&page);
        let reset_token = &path[path.find("token=").unwrap() + 6..];
        let mismatch = post(&app, &mut jar, "/ui/reset-password",
            &[("csrf_token", &token), ("token", reset_token), ("password", "Nova-Senha-42!"), ("confirm_password", "Outra-Senha-42!")], true).await;
        assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
        assert_eq!(mismatch.body["message"], "As senhas não coincidem.");
        let done = post(&app, &mut jar, "/ui/reset-password",
            &[("csrf_token", &token), ("token", reset_token), ("password", "Nova-Senha-42!"), ("confirm_password", "Nova-Senha-42!")], false).await;
        assert_eq!(location(&done), "/ui/login?notice=password_reset");
        let r = app.post("/api/auth/login", serde_json::json!({"username_or_email": "uinew", "password": "Nova-Senha-42!"})).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    async fn the_language_switch_only_returns_to_ui_pages(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        for (next, expect) in [
            ("%2Fui%2Fregister", "/ui/register"),
            ("%2F%2Fevil.example", "/ui/login"),
            ("https%3A%2F%2Fevil.example%2Fui%2F", "/ui/login"),
            ("%2Fui%2F%2F%2Fevil.example", "/ui/login"),
            ("%2Fui%2F%5Cevil.example", "/ui/login"),
        ] {
            let r = get(&app, &mut jar, &format!("/ui/lang/pt-BR?next={next}"), "en").await;
            assert_eq!(r.status, StatusCode::SEE_OTHER);
            assert_eq!(location(&r), expect, "next={next}");
        }
        assert_eq!(jar.get("porteiro-lang").as_deref(), Some("pt-BR"));
        let page = get(&app, &mut jar, "/ui/login", "en").await;
        assert!(page.text.contains("Bem-vindo de volta"), "the choice beats Accept-Language");
        let r = get(&app, &mut jar, "/ui/lang/fr", "en").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    async fn account_pages_need_a_session_and_admin_needs_an_admin(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        let r = get(&app, &mut jar, "/ui/account", "en").await;
        assert_eq!(location(&r), "/ui/login");
        let r = get(&app, &mut jar, "/ui/admin", "en").await;
        assert_eq!(location(&r), "/ui/login");
        let user = app.register("uinotadmin").await;
        let token = login_form(&app, &mut jar).await;
        post(&app, &mut jar, "/ui/login", &[("csrf_token", &token), ("identifier", &user.username), ("password", PASSWORD)], false).await;
        let r = get(&app, &mut jar, "/ui/admin", "en").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        let token = form_token(&account);
        let id = user.id.clone();
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{id}/disable"), &[("csrf_token", &token)], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body["code"], "forbidden");
        assert!(app.auth.find_user(&id).await.unwrap().unwrap().is_active);
    }
}

both_backends! {
    async fn the_rate_limit_page_is_html_in_the_visitors_language(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("RATE_LIMIT_STRICT_CAPACITY", "2".to_owned()),
            ("RATE_LIMIT_STRICT_REFILL_RATE", "0.01".to_owned()),
        ] }).await;
        let mut jar = Jar::default();
        let token = login_form(&app, &mut jar).await;
        let mut last = None;
        for _ in 0..3 {
            let req = app.client.post(format!("{}/ui/login", app.url))
                .header("cookie", jar.header())
                .header("accept-language", "pt-BR")
                .form(&[("csrf_token", token.as_str()), ("identifier", "x@example.com"), ("password", "Wrong-pass-1")]);
            last = Some(app.request(req).await);
        }
        let r = last.unwrap();
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(r.headers.contains_key("retry-after"));
        assert!(r.text.contains("Muitas tentativas"), "{}", r.text);
    }
}

/// `next` cannot climb out of `/ui/` with dot segments, however they are spelled (pentest
/// finding 11: `/ui/lang/en?next=/ui/./%2e%2e/%2e%2e/x` went to `/x`). The query is decoded
/// once by the server, so `%25` below reaches `next` as `%`. Storage plays no part: SQLite alone.
#[tokio::test]
async fn the_language_switch_refuses_dot_segments_in_next() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let mut jar = Jar::default();
    for next in [
        "/ui/./%2e%2e/%2e%2e/x",
        "/ui/../x",
        "/ui/..",
        "/ui/./account",
        "/ui/%252e%252e/x",
        "/ui/%252E%252E/%252e%252E/x",
        "/ui/.%252e/x",
        "/ui/%252e./x",
        "/ui/%25252e%25252e/x",
        "/ui/%5C..%5Cx",
        "/ui/%255c..%255cx",
        "/ui/%252f%252fevil.example",
        "/ui/a/..?next=/ui/account",
    ] {
        let r = get(&app, &mut jar, &format!("/ui/lang/en?next={next}"), "en").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "next={next}");
        assert_eq!(location(&r), "/ui/login", "next={next}");
    }
    // Dots inside a segment, and dot segments in the query, are ordinary.
    for (next, expect) in [
        ("/ui/register", "/ui/register"),
        ("/ui/login%3Fnotice%3D..", "/ui/login?notice=.."),
        ("/ui/a.b/..c", "/ui/a.b/..c"),
    ] {
        let r = get(&app, &mut jar, &format!("/ui/lang/en?next={next}"), "en").await;
        assert_eq!(location(&r), expect, "next={next}");
    }
}

/// A webhook receiver on loopback that answers every request `204` and counts them.
async fn receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the headers, then as many body bytes as they announce.
                let body_start = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (url, count)
}

/// Signs the first administrator in through the sign-in form.
async fn admin_ui(app: &TestApp, jar: &mut Jar) {
    let token = login_form(app, jar).await;
    let r = post(
        app,
        jar,
        "/ui/login",
        &[
            ("csrf_token", &token),
            ("identifier", "admin"),
            ("password", crate::helpers::ADMIN_PASSWORD),
        ],
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
}

/// The `whsec_…` secret a page shows, if any.
fn shown_secret(page: &Reply) -> Option<String> {
    let at = page.text.find("whsec_")?;
    let rest = &page.text[at..];
    Some(rest[..rest.find('"').unwrap()].to_owned())
}

/// The first `/ui/admin/webhooks/{id}` link of a page.
fn endpoint_path(page: &Reply) -> String {
    let at = page
        .text
        .find("href=\"/ui/admin/webhooks/")
        .expect("a link to an endpoint")
        + 6;
    page.text[at..at + page.text[at..].find('"').unwrap()].to_owned()
}

both_backends! {
    async fn the_webhooks_page_shows_a_secret_once_and_logs_a_test_delivery(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("WEBHOOK_ALLOW_PRIVATE", "true".to_owned())] }).await;
        let (hook, received) = receiver().await;
        let mut jar = Jar::default();
        admin_ui(&app, &mut jar).await;
        let page = get(&app, &mut jar, "/ui/admin/webhooks", "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("href=\"/ui/admin/webhooks\" aria-current=\"page\""), "the navigation marks the page");
        assert!(page.text.contains("No endpoint yet.") && page.text.contains("No dead letters."));
        let token = form_token(&page);

        // A malformed URL: the form again, in the user's language, with what was typed.
        let bad = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", &token), ("url", "ftp://hooks.example.com/x"), ("description", "kept"), ("scope", "all"), ("enabled", "true")], false).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text.contains("Enter a valid http or https URL"), "{}", bad.text);
        assert!(bad.text.contains("value=\"ftp://hooks.example.com/x\"") && bad.text.contains(">kept</textarea>"));
        // "Only these events" with none ticked.
        let none = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", &token), ("url", &hook), ("scope", "some"), ("enabled", "true")], false).await;
        assert_eq!(none.status, StatusCode::BAD_REQUEST);
        assert!(none.text.contains("tick at least one event type"), "{}", none.text);
        assert!(shown_secret(&bad).is_none() && shown_secret(&none).is_none());

        let created = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", &token), ("url", &hook), ("description", "CRM"), ("scope", "some"),
              ("event_types", "user.registered"), ("event_types", "webhook.tested"), ("event_types", "sign_in.failed"), ("enabled", "true")], false).await;
        // webhook.* types are not subscribable: refused, nothing created.
        assert_eq!(created.status, StatusCode::BAD_REQUEST, "{}", created.text);
        let created = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", &token), ("url", &hook), ("description", "CRM"), ("scope", "some"),
              ("event_types", "user.registered"), ("event_types", "sign_in.failed"), ("enabled", "true")], false).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
        assert_eq!(created.headers["cache-control"], "no-store");
        assert!(created.headers.get("location").is_none());
        let secret = shown_secret(&created).expect("the secret, shown once");
        assert!(secret.len() > 40, "{secret}");
        assert!(created.text.contains("it will not be shown again"));
        for cookie in created.headers.get_all("set-cookie") {
            assert!(!cookie.to_str().unwrap().contains(&secret));
        }
        let admin = app.admin().await;
        let listed = app.get_auth("/api/admin/webhooks", &admin.access).await;
        let items = listed.data()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "the refused attempts created nothing");
        assert_eq!(items[0]["event_types"], serde_json::json!(["user.registered", "sign_in.failed"]));
        assert_eq!(items[0]["description"], "CRM");

        // Loaded again, no page shows it.
        let list = get(&app, &mut jar, "/ui/admin/webhooks", "en").await;
        assert!(shown_secret(&list).is_none());
        assert!(list.text.contains(&hook) && list.text.contains("Account created, Failed sign-in attempt"), "{}", list.text);
        let path = endpoint_path(&list);
        let detail = get(&app, &mut jar, &path, "en").await;
        assert_eq!(detail.status, StatusCode::OK);
        assert!(shown_secret(&detail).is_none());
        assert!(detail.text.contains("No delivery yet."));

        // A test event, delivered by the worker and shown in the log.
        let token = form_token(&detail);
        let sent = post(&app, &mut jar, &format!("{path}/test"), &[("csrf_token", &token)], false).await;
        assert_eq!(location(&sent), format!("{path}?notice=webhook_test_sent"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let log = loop {
            let page = get(&app, &mut jar, &path, "en").await;
            if page.text.contains("status ok\">Delivered") { break page; }
            assert!(std::time::Instant::now() < deadline, "no delivery within 20 s: {}", page.text);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(log.text.contains("Test event") && log.text.contains("webhook.tested"));
        assert!(log.text.contains("<td data-label=\"Response\">204</td>"), "{}", log.text);
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Edit: only what changed is saved.
        let saved = post(&app, &mut jar, &path,
            &[("csrf_token", &token), ("url", &hook), ("description", "CRM (paused)"), ("scope", "all")], false).await;
        assert_eq!(location(&saved), format!("{path}?notice=webhook_saved"));
        let same = post(&app, &mut jar, &path,
            &[("csrf_token", &token), ("url", &hook), ("description", "CRM (paused)"), ("scope", "all")], true).await;
        assert_eq!(same.body["redirect"], format!("{path}?notice=webhook_unchanged"));
        let one = app.get_auth(&format!("/api/admin/webhooks/{}", &path[19..]), &admin.access).await;
        assert_eq!(one.data()["enabled"], false);
        assert_eq!(one.data()["event_types"], serde_json::json!(["*"]));
        assert_eq!(one.data()["description"], "CRM (paused)");

        // Rotation: a new secret, once, and until when the old one signs.
        let rotated = post(&app, &mut jar, &format!("{path}/rotate-secret"),
            &[("csrf_token", &token), ("overlap_seconds", "3600")], false).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
        assert_eq!(rotated.headers["cache-control"], "no-store");
        let second = shown_secret(&rotated).expect("the new secret");
        assert_ne!(second, secret);
        assert!(rotated.text.contains("The previous secret keeps signing until"));
        let detail = get(&app, &mut jar, &path, "en").await;
        assert!(shown_secret(&detail).is_none());
        assert!(detail.text.contains("signs until"));
        let bad = post(&app, &mut jar, &format!("{path}/rotate-secret"),
            &[("csrf_token", &token), ("overlap_seconds", "99999999")], false).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(shown_secret(&bad).is_none());

        // A bad replay range, in Portuguese; a good one queues what the range holds.
        let bad = post(&app, &mut jar, &format!("{path}/replay"),
            &[("csrf_token", &token), ("from", "2025-03-04T10:00"), ("to", "2025-01-01T10:00")], true).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let pt = app.request(app.client.post(format!("{}{path}/replay", app.url))
            .header("cookie", format!("{}; porteiro-lang=pt-BR", jar.header()))
            .form(&[("csrf_token", token.as_str()), ("from", "nope"), ("to", "2025-01-01T10:00")])).await;
        assert_eq!(pt.status, StatusCode::BAD_REQUEST);
        assert!(pt.text.contains("Informe um início e um fim (UTC)"), "{}", pt.text);
        let now = chrono::Utc::now() + chrono::Duration::hours(1);
        let from = (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M").to_string();
        let to = now.format("%Y-%m-%dT%H:%M").to_string();
        let replayed = post(&app, &mut jar, &format!("{path}/replay"), &[("csrf_token", &token), ("from", &from), ("to", &to)], false).await;
        assert!(location(&replayed).starts_with(&format!("{path}?notice=webhook_replayed&queued=")), "{}", replayed.text);

        // Delete needs the box ticked.
        let refused = post(&app, &mut jar, &format!("{path}/delete"), &[("csrf_token", &token)], false).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.text.contains("Tick the box to confirm the deletion."));
        let deleted = post(&app, &mut jar, &format!("{path}/delete"), &[("csrf_token", &token), ("confirm", "yes")], false).await;
        assert_eq!(location(&deleted), "/ui/admin/webhooks?notice=webhook_deleted");
        let gone = get(&app, &mut jar, &path, "en").await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        let listed = app.get_auth("/api/admin/webhooks", &admin.access).await;
        assert!(listed.data()["items"].as_array().unwrap().is_empty());
    }

    async fn the_webhooks_page_refuses_private_addresses_and_strangers(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        jar.0.insert("porteiro-lang".to_owned(), "pt-BR".to_owned());
        admin_ui(&app, &mut jar).await;
        let page = get(&app, &mut jar, "/ui/admin/webhooks", "en").await;
        let token = form_token(&page);
        // SSRF: loopback, private and metadata addresses are refused on the form.
        for url in ["http://127.0.0.1:9/hook", "http://10.0.0.1/x", "http://169.254.169.254/latest", "http://[::1]/x"] {
            let r = post(&app, &mut jar, "/ui/admin/webhooks",
                &[("csrf_token", &token), ("url", url), ("scope", "all"), ("enabled", "true")], false).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}");
            assert!(r.text.contains("webhooks só podem chamar endereços públicos"), "{url}: {}", r.text);
            assert!(shown_secret(&r).is_none());
        }
        // A forged token changes nothing.
        let r = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", "forged"), ("url", "https://hooks.example.com/x"), ("scope", "all")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let admin = app.admin().await;
        let listed = app.get_auth("/api/admin/webhooks", &admin.access).await;
        assert!(listed.data()["items"].as_array().unwrap().is_empty());
        // An unknown or malformed endpoint id is a 404 page.
        for path in ["/ui/admin/webhooks/0191e0a4-0000-7000-8000-000000000000", "/ui/admin/webhooks/not-an-id"] {
            assert_eq!(get(&app, &mut jar, path, "en").await.status, StatusCode::NOT_FOUND, "{path}");
        }

        // Someone who is not an administrator: what the users page answers them.
        let user = app.register("uiwhplain").await;
        let mut jar = Jar::default();
        let token = login_form(&app, &mut jar).await;
        post(&app, &mut jar, "/ui/login", &[("csrf_token", &token), ("identifier", &user.username), ("password", PASSWORD)], false).await;
        let users = get(&app, &mut jar, "/ui/admin", "en").await;
        let hooks = get(&app, &mut jar, "/ui/admin/webhooks", "en").await;
        assert_eq!(hooks.status, StatusCode::FORBIDDEN);
        assert_eq!(hooks.status, users.status);
        assert!(hooks.text.contains("You are not allowed to do this."));
        assert!(!hooks.text.contains("href=\"/ui/admin/webhooks\""), "no link for non-administrators");
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        let token = form_token(&account);
        let r = post(&app, &mut jar, "/ui/admin/webhooks",
            &[("csrf_token", &token), ("url", "https://hooks.example.com/x"), ("scope", "all")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = post(&app, &mut jar, "/ui/admin/webhooks/0191e0a4-0000-7000-8000-000000000000/delete",
            &[("csrf_token", &token), ("confirm", "yes")], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body["code"], "forbidden");
        let r = get(&app, &mut jar, "/ui/admin/webhooks/not-an-id", "en").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "no existence check before the role check");
        let listed = app.get_auth("/api/admin/webhooks", &admin.access).await;
        assert!(listed.data()["items"].as_array().unwrap().is_empty());
    }
}
