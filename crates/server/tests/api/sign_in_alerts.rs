//! New-device alerts and "this wasn't me" (issue 16): the mail a sign-in from a new device
//! sends (and the ones that send none), the link's page (`GET` changes nothing, `POST` ends only
//! its session, once, and requires a password reset), the old password refused exactly like a
//! wrong one until a reset, the alerts toggle, and `GET /api/auth/login-history`.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::Jar;
use crate::helpers::{PASSWORD, Reply, TestApp, TestUser, spawn_app};
use crate::ui::{form_token, get, post};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const LINK_PREFIX: &str = "https://id.example.com/ui/not-me?token=";

/// `POST /api/auth/login` as a client with user agent `ua` and no cookies.
async fn login_from(app: &TestApp, user: &TestUser, password: &str, ua: &str) -> Reply {
    let req = app
        .client
        .post(format!("{}/api/auth/login", app.url))
        .header("user-agent", ua)
        .json(&json!({"username_or_email": user.username, "password": password}));
    app.request(req).await
}

/// `POST /auth` (compact) as a client with user agent `ua`.
async fn compact_from(app: &TestApp, user: &TestUser, password: &str, ua: &str) -> Reply {
    let req = app
        .client
        .post(format!("{}/auth", app.url))
        .header("user-agent", ua)
        .json(&json!({"login": user.username, "password": password}));
    app.request(req).await
}

fn access(r: &Reply) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["access_token"].as_str().unwrap().to_owned()
}

/// Alert mails received so far for `email`.
fn alerts(app: &TestApp, email: &str) -> Vec<crate::helpers::ReceivedMail> {
    app.smtp
        .messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == email) && m.text().contains(LINK_PREFIX))
        .collect()
}

/// Waits for the `n`th alert for `email` and returns its token.
async fn alert_token(app: &TestApp, email: &str, n: usize) -> String {
    let mails = app.smtp.wait_for(email, n).await;
    let mail = mails
        .iter()
        .filter(|m| m.text().contains(LINK_PREFIX))
        .nth(n - 1)
        .unwrap_or_else(|| panic!("alert #{n}"));
    let link = mail
        .text()
        .split_whitespace()
        .find(|w| w.starts_with(LINK_PREFIX))
        .unwrap()
        .to_owned();
    link.strip_prefix(LINK_PREFIX).unwrap().to_owned()
}

/// `login.new_device` events so far: each is written in the transaction that queues its mail,
/// so none means no alert mail is on its way.
async fn new_device_events(app: &TestApp) -> usize {
    let r = app
        .get_auth(
            "/api/admin/audit?type=login.new_device",
            &app.admin().await.access,
        )
        .await;
    r.data()["events"].as_array().unwrap().len()
}

async fn me(app: &TestApp, token: &str) -> Value {
    let r = app.get_auth("/api/auth/me", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

both_backends! {
    async fn a_new_device_is_mailed_with_a_link_and_known_ones_are_not(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let user = app.register("ana").await;
        // Act: the account's first device, the same device again, then a new one (compact API).
        let first = access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        let again = login_from(&app, &user, PASSWORD, FIREFOX).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(new_device_events(&app).await, 0, "no alert for the first device or a known one");
        let new = compact_from(&app, &user, PASSWORD, IPHONE).await;
        assert_eq!(new.status, StatusCode::OK, "{}", new.text);
        // Assert: one alert, in the account's language, with what the server knows.
        let token = alert_token(&app, &user.email, 1).await;
        assert_eq!(token.len(), 43);
        let mail = alerts(&app, &user.email).remove(0);
        assert!(mail.subject().contains("New sign-in to your account"), "{}", mail.subject());
        let text = mail.text();
        assert!(text.contains("When:") && text.contains("UTC"), "{text}");
        assert!(text.contains("Browser: Safari") && text.contains("Operating system: iPhone"), "{text}");
        assert!(text.contains("IP address: 127.0.0.1"), "{text}");
        assert!(!text.contains("Where"), "no place without a GeoIP database: {text}");
        assert!(!text.contains(&user.username), "no account-chosen text in the mail");
        // The same new device again: known now.
        assert_eq!(compact_from(&app, &user, PASSWORD, IPHONE).await.status, StatusCode::OK);
        assert_eq!(new_device_events(&app).await, 1);
        assert_eq!(alerts(&app, &user.email).len(), 1);
        assert_eq!(me(&app, &first).await["login_alerts"], true);
    }

    async fn accounts_with_alerts_off_get_no_mail(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("bia").await;
        let token = access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        let r = app
            .put_auth(&format!("/api/users/{}", user.id), &token, json!({"login_alerts": false}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["login_alerts"], false);
        assert_eq!(me(&app, &token).await["login_alerts"], false);
        // A wrong type is refused and changes nothing.
        let bad = app
            .put_auth(&format!("/api/users/{}", user.id), &token, json!({"login_alerts": "yes"}))
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
        assert_eq!(bad.body["status"], "error");
        assert_eq!(me(&app, &token).await["login_alerts"], false);
        assert_eq!(login_from(&app, &user, PASSWORD, IPHONE).await.status, StatusCode::OK);
        assert_eq!(new_device_events(&app).await, 0);
        assert!(alerts(&app, &user.email).is_empty());
    }

    async fn the_link_ends_only_its_session_once_and_the_password_waits_for_a_reset(backend: Backend) {
        // Arrange: signed in on a laptop; an intruder signs in from a phone.
        let app = spawn_app(backend).await;
        let user = app.register("caio").await;
        let laptop = access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        let intruder = access(&login_from(&app, &user, PASSWORD, IPHONE).await);
        let token = alert_token(&app, &user.email, 1).await;
        let path = format!("/ui/not-me?token={token}");
        let mut jar = Jar::default();

        // Act 1: opening the link (as a mail scanner would) twice changes nothing.
        for _ in 0..2 {
            let page = get(&app, &mut jar, &path, "en").await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(page.text.contains(&format!("name=\"token\" value=\"{token}\"")), "{}", page.text);
        }
        assert_eq!(app.me_status(&intruder).await, StatusCode::OK);
        assert_eq!(me(&app, &laptop).await["password_reset_required"], false);

        // A cross-site post (no valid CSRF pair) is refused and changes nothing.
        let mut stranger = Jar::default();
        let forged = post(&app, &mut stranger, "/ui/not-me", &[("csrf_token", "forged"), ("token", &token)], false).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(app.me_status(&intruder).await, StatusCode::OK);

        // Act 2: confirming, without being signed in.
        let page = get(&app, &mut jar, &path, "pt-BR").await;
        let done = post(&app, &mut jar, "/ui/not-me", &[("csrf_token", &form_token(&page)), ("token", &token)], false).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        assert!(done.text.contains("href=\"/ui/forgot-password\""), "{}", done.text);

        // Assert: only the intruder's session ended; the account waits for a reset.
        assert_eq!(app.me_status(&intruder).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.me_status(&laptop).await, StatusCode::OK);
        assert_eq!(me(&app, &laptop).await["password_reset_required"], true);
        let r = app.get_auth("/api/admin/audit?type=session.disowned", &app.admin().await.access).await;
        assert_eq!(r.data()["events"].as_array().unwrap().len(), 1, "{}", r.text);

        // Replay: the page says the link is used; nothing changes.
        let replay = post(&app, &mut jar, "/ui/not-me", &[("csrf_token", &form_token(&page)), ("token", &token)], false).await;
        assert_eq!(replay.status, StatusCode::GONE);
        assert!(!replay.text.contains("name=\"token\""));
        let reopened = get(&app, &mut jar, &path, "en").await;
        assert!(reopened.text.contains("already used or has expired"), "{}", reopened.text);
        let r = app.get_auth("/api/admin/audit?type=session.disowned", &app.admin().await.access).await;
        assert_eq!(r.data()["events"].as_array().unwrap().len(), 1);

        // The right old password answers exactly like a wrong one, on every sign-in path.
        let right = login_from(&app, &user, PASSWORD, FIREFOX).await;
        let wrong = login_from(&app, &user, "Wrong-passw0rd", FIREFOX).await;
        assert_eq!((right.status, &right.body), (wrong.status, &wrong.body));
        assert_eq!(right.status, StatusCode::UNAUTHORIZED);
        let right = compact_from(&app, &user, PASSWORD, FIREFOX).await;
        let wrong = compact_from(&app, &user, "Wrong-passw0rd", FIREFOX).await;
        assert_eq!((right.status, &right.text), (wrong.status, &wrong.text));
        // Nor does it confirm a change on the still-signed-in laptop.
        let change = app
            .post_auth(
                &format!("/api/users/{}/change-password", user.id),
                &laptop,
                json!({"current_password": PASSWORD, "new_password": "Outra-S3nha-Nova"}),
            )
            .await;
        assert_eq!(change.status, StatusCode::FORBIDDEN, "{}", change.text);

        // A reset by the mailed link clears it: the new password works.
        assert_eq!(app.post("/api/auth/forgot-password", json!({"email": user.email})).await.status, StatusCode::OK);
        let reset = app
            .smtp
            .wait_for(&user.email, 2)
            .await
            .into_iter()
            .find(|m| m.text().contains("/ui/reset-password?token="))
            .expect("a reset mail")
            .link();
        let reset_token = reset.split("token=").nth(1).unwrap().to_owned();
        let r = app
            .post("/api/auth/reset-password", json!({"token": reset_token, "password": "Nova-S3nha-Boa"}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let fresh = access(&login_from(&app, &user, "Nova-S3nha-Boa", FIREFOX).await);
        assert_eq!(me(&app, &fresh).await["password_reset_required"], false);
    }

    async fn an_expired_link_does_nothing(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("duda").await;
        access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        let intruder = access(&login_from(&app, &user, PASSWORD, CHROME_WIN).await);
        let token = alert_token(&app, &user.email, 1).await;
        app.clock.advance(Duration::days(7) + Duration::minutes(1));
        let mut jar = Jar::default();
        let page = get(&app, &mut jar, &format!("/ui/not-me?token={token}"), "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("already used or has expired"), "{}", page.text);
        assert!(!page.text.contains("name=\"token\""));
        let login = get(&app, &mut jar, "/ui/login", "en").await;
        let r = post(&app, &mut jar, "/ui/not-me", &[("csrf_token", &form_token(&login)), ("token", &token)], false).await;
        assert_eq!(r.status, StatusCode::GONE);
        // Nothing changed: the password still works (the intruder's session has expired by now
        // on its own; sign in again to look).
        let again = access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        assert_eq!(me(&app, &again).await["password_reset_required"], false);
        let _ = intruder;
        // Mangled tokens are no link at all.
        let bad = get(&app, &mut jar, "/ui/not-me?token=abc%3Cscript%3E", "en").await;
        assert_eq!(bad.status, StatusCode::OK);
        assert!(!bad.text.contains("name=\"token\"") && !bad.text.contains("<script>"));
    }

    async fn login_history_pages_through_ones_own_sign_ins(backend: Backend) {
        // Arrange: two successes, a failure, another success; someone else's sign-in.
        let app = spawn_app(backend).await;
        let user = app.register("eva").await;
        let other = app.register("fabio").await;
        access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        assert_eq!(login_from(&app, &user, "Wrong-passw0rd", IPHONE).await.status, StatusCode::UNAUTHORIZED);
        access(&login_from(&app, &other, PASSWORD, FIREFOX).await);
        let token = access(&login_from(&app, &user, PASSWORD, CHROME_WIN).await);
        // Act
        let first = app.get_auth("/api/auth/login-history?limit=2", &token).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let items = first.data()["items"].as_array().unwrap().clone();
        let next = first.data()["next_before"].as_i64().expect("a next page");
        let rest = app.get_auth(&format!("/api/auth/login-history?limit=2&before={next}"), &token).await;
        // Assert: newest first, with device, address, result and method.
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["result"], "success");
        assert_eq!(items[0]["method"], "password");
        assert_eq!(items[0]["ip_address"], "127.0.0.1");
        assert_eq!(items[0]["device"]["browser"], "Chrome");
        assert_eq!(items[0]["device"]["os"], "Windows 10");
        assert!(items[0]["time"].as_str().is_some());
        assert_eq!(items[1]["result"], "failure");
        assert_eq!(items[1]["device"]["os"], "iPhone");
        let rest_items = rest.data()["items"].as_array().unwrap();
        assert_eq!(rest_items.len(), 1, "{}", rest.text);
        assert_eq!(rest_items[0]["device"]["browser"], "Firefox");
        assert!(rest.data()["next_before"].is_null());
        // Only one's own: the other account sees its single sign-in.
        let theirs = access(&login_from(&app, &other, PASSWORD, FIREFOX).await);
        let r = app.get_auth("/api/auth/login-history", &theirs).await;
        assert_eq!(r.data()["items"].as_array().unwrap().len(), 2);
        // Bad input: 4xx JSON; no token: 401.
        for bad in ["?limit=0", "?limit=101", "?limit=abc", "?before=-1", "?before=x"] {
            let r = app.get_auth(&format!("/api/auth/login-history{bad}"), &token).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
            assert_eq!(r.body["status"], "error", "{bad}");
        }
        assert_eq!(app.get("/api/auth/login-history").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn the_account_page_shows_the_history_and_the_toggle(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("gil").await;
        let mut jar = Jar::default();
        let login = get(&app, &mut jar, "/ui/login", "en").await;
        post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &form_token(&login)), ("identifier", &user.username), ("password", PASSWORD)], false).await;
        let page = get(&app, &mut jar, "/ui/account", "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("Sign-in history") && page.text.contains("name=\"login_alerts\" value=\"on\" checked"), "{}", page.text);
        let r = post(&app, &mut jar, "/ui/account/login-alerts", &[("csrf_token", &form_token(&page))], false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = get(&app, &mut jar, "/ui/account?notice=login_alerts_saved", "pt-BR").await;
        assert!(page.text.contains("Histórico de acessos"), "{}", page.text);
        assert!(!page.text.contains("value=\"on\" checked"));
        let token = access(&login_from(&app, &user, PASSWORD, FIREFOX).await);
        assert_eq!(me(&app, &token).await["login_alerts"], false);
        // A foreign CSRF token changes nothing.
        let mut stranger = Jar::default();
        let forged = post(&app, &mut stranger, "/ui/account/login-alerts", &[("csrf_token", "x"), ("login_alerts", "on")], false).await;
        assert_eq!(crate::ui::location(&forged), "/ui/login");
        assert_eq!(me(&app, &token).await["login_alerts"], false);
    }
}
