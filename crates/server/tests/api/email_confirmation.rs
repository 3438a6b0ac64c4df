//! Address confirmation at registration (issue 14): the mailed link, the page it opens (which
//! confirms only when its form is posted), the resend route's single answer and its limits,
//! `REQUIRE_VERIFIED_EMAIL` on every sign-in path, and accounts created confirmed.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::Jar;
use crate::cli::Cli;
use crate::helpers::{Options, PASSWORD, Reply, TestApp, TestUser, spawn_app, spawn_app_with};
use crate::ui::{form_token, get, location, post};

const LINK_PREFIX: &str = "https://id.example.com/ui/verify-email?token=";

/// The token of the `n`th confirmation mail to `email` (waiting for it).
async fn mailed_token(app: &TestApp, email: &str, n: usize) -> String {
    let link = app.smtp.wait_for_confirmation(email, n).await[n - 1].link();
    link.strip_prefix(LINK_PREFIX)
        .unwrap_or_else(|| panic!("a confirmation link: {link}"))
        .to_owned()
}

async fn confirm(app: &TestApp, token: &str) -> Reply {
    app.post("/api/auth/verify-email", json!({"token": token}))
        .await
}

async fn resend(app: &TestApp, email: &str) -> Reply {
    app.post("/api/auth/verify-email/resend", json!({"email": email}))
        .await
}

/// The account as the store has it: (confirmed, confirmation time).
async fn stored(app: &TestApp, user: &TestUser) -> (bool, Option<chrono::DateTime<chrono::Utc>>) {
    let id = user.id.parse().unwrap();
    let u = app.auth.store().user_by_id(id).await.unwrap().unwrap();
    (u.email_verified, u.email_verified_at)
}

/// Waits (up to 10 s) until the audit log holds `n` events of `event_type`; returns them, newest
/// first. Background work (resends) is done when its event is written.
async fn wait_for_events(app: &TestApp, admin: &str, event_type: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let r = app
            .get_auth(&format!("/api/admin/audit?type={event_type}"), admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let events = r.data()["events"].as_array().unwrap().clone();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("expected {n} {event_type} events");
}

/// Posts the hosted sign-in form (the enhanced way with `json`).
async fn sign_in_page(
    app: &TestApp,
    jar: &mut Jar,
    csrf: &str,
    login: &str,
    password: &str,
    json: bool,
) -> Reply {
    let fields = [
        ("csrf_token", csrf),
        ("identifier", login),
        ("password", password),
    ];
    post(app, jar, "/ui/login", &fields, json).await
}

/// Whether `token` is live (unspent, unexpired) now.
async fn live(app: &TestApp, token: &str) -> bool {
    app.auth
        .store()
        .confirmation_token_owner(&porteiro_core::crypto::token_hash(token), app.auth.now())
        .await
        .unwrap()
        .is_some()
}

both_backends! {
    async fn registration_mails_a_link_that_confirms_the_address_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("clara").await;
        let mail = app.smtp.wait_for_confirmation(&user.email, 1).await.remove(0);
        assert!(mail.subject().contains("Confirm your email address"), "{}", mail.subject());
        let token = mailed_token(&app, &user.email, 1).await;
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert!(!mail.text().contains(&user.username), "no account-chosen text in the mail");

        // Unconfirmed until the link is used; without REQUIRE_VERIFIED_EMAIL sign-in works.
        let session = app.sign_in(&user).await;
        let me = app.get_auth("/api/auth/me", &session.access).await;
        assert_eq!(me.data()["email_verified"], false);
        assert!(me.data()["email_verified_at"].is_null());
        assert_eq!(stored(&app, &user).await, (false, None));

        let done = confirm(&app, &token).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        assert_eq!(done.data()["email"], user.email.as_str());
        assert_eq!(done.data()["email_verified"], true);
        let at = done.data()["email_verified_at"].clone();
        assert!(at.is_string(), "{}", done.text);
        // `/me` shows it at once (the profile cache is dropped), and so does the user object.
        let me = app.get_auth("/api/auth/me", &session.access).await;
        assert_eq!(me.data()["email_verified"], true);
        assert_eq!(me.data()["email_verified_at"], at);
        let admin = app.admin().await;
        let one = app.get_auth(&format!("/api/users/{}", user.id), &admin.access).await;
        assert_eq!((one.data()["email_verified"].clone(), one.data()["email_verified_at"].clone()), (json!(true), at));

        // Single use.
        let again = confirm(&app, &token).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.body["code"], "invalid_confirmation_token");

        // Both steps are in the audit log, with the account.
        for kind in ["email.confirmation_sent", "email.confirmed"] {
            let events = wait_for_events(&app, &admin.access, kind, 1).await;
            assert_eq!(events.len(), 1, "{kind}: {events:?}");
            assert_eq!(events[0]["user_id"], user.id.as_str());
            assert_eq!(events[0]["outcome"], "success");
        }
        // A confirmed account gets no further link.
        let r = resend(&app, &user.email).await;
        assert_eq!(r.status, StatusCode::OK);
        let suppressed = wait_for_events(&app, &admin.access, "email.confirmation_sent", 2).await;
        assert_eq!(suppressed[0]["details"]["reason"], "already_confirmed");
        assert_eq!(app.smtp.all_messages().iter().filter(|m| m.is_confirmation()).count(), 1);
    }

    async fn the_link_opens_a_page_that_confirms_only_when_its_form_is_posted(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut jar = Jar::default();
        // Registration through the hosted page, in Portuguese (the switch): the mail follows.
        get(&app, &mut jar, "/ui/lang/pt-BR", "en").await;
        let page = get(&app, &mut jar, "/ui/register", "en").await;
        let csrf = form_token(&page);
        let r = post(&app, &mut jar, "/ui/register",
            &[("csrf_token", &csrf), ("username", "davi"), ("email", "davi@example.com"), ("password", PASSWORD), ("confirm_password", PASSWORD)], false).await;
        assert_eq!(location(&r), "/ui/login?notice=registered");
        let user = TestUser {
            id: app.auth.store().user_by_email("davi@example.com").await.unwrap().unwrap().id.to_string(),
            username: "davi".to_owned(),
            email: "davi@example.com".to_owned(),
            password: PASSWORD.to_owned(),
        };
        let mail = app.smtp.wait_for_confirmation(&user.email, 1).await.remove(0);
        assert!(mail.subject().contains("Confirme seu endereço de email"), "{}", mail.subject());
        let token = mailed_token(&app, &user.email, 1).await;
        let path = format!("/ui/verify-email?token={token}");

        // Opening the link, as a mail scanner would, twice: a page with a button, nothing more.
        for _ in 0..2 {
            let page = get(&app, &mut jar, &path, "pt-BR").await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(page.text.contains("Confirmar meu endereço"), "{}", page.text);
            assert!(page.text.contains(&format!("name=\"token\" value=\"{token}\"")));
            assert!(page.text.contains("action=\"/ui/verify-email/resend\""));
        }
        assert_eq!(stored(&app, &user).await, (false, None));
        let page = get(&app, &mut jar, &path, "pt-BR").await;
        let csrf = form_token(&page);

        // A cross-site post carries no valid CSRF token: refused, nothing changed.
        let mut stranger = Jar::default();
        let forged = post(&app, &mut stranger, "/ui/verify-email", &[("csrf_token", "forged"), ("token", &token)], false).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(stored(&app, &user).await, (false, None));
        assert!(live(&app, &token).await);

        let done = post(&app, &mut jar, "/ui/verify-email", &[("csrf_token", &csrf), ("token", &token)], false).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
        assert_eq!(location(&done), "/ui/login?notice=email_confirmed");
        assert!(stored(&app, &user).await.0);
        let notice = get(&app, &mut jar, "/ui/login?notice=email_confirmed", "pt-BR").await;
        assert!(notice.text.contains("Endereço de email confirmado"), "{}", notice.text);

        // The used link again: the enhanced form gets the code, the plain one a page with only
        // the resend form.
        let again = post(&app, &mut jar, "/ui/verify-email", &[("csrf_token", &csrf), ("token", &token)], true).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.body["code"], "invalid_confirmation_token");
        let again = post(&app, &mut jar, "/ui/verify-email", &[("csrf_token", &csrf), ("token", &token)], false).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert!(again.text.contains("link de confirmação é inválido"), "{}", again.text);
        assert!(!again.text.contains("name=\"token\""));
        // A mangled link says so at once.
        get(&app, &mut jar, "/ui/lang/en", "en").await;
        let bad = get(&app, &mut jar, "/ui/verify-email?token=abc%3Cscript%3E", "en").await;
        assert_eq!(bad.status, StatusCode::OK);
        assert!(bad.text.contains("This confirmation link is invalid"), "{}", bad.text);
        assert!(!bad.text.contains("name=\"token\"") && !bad.text.contains("<script>"));

        // Signed in, confirming leads back to the account page, which shows the address state.
        let other = app.register("elisa").await;
        let other_token = mailed_token(&app, &other.email, 1).await;
        let login = get(&app, &mut jar, "/ui/login", "en").await;
        let r = post(&app, &mut jar, "/ui/login",
            &[("csrf_token", &form_token(&login)), ("identifier", &other.username), ("password", PASSWORD)], false).await;
        assert_eq!(location(&r), "/ui/account");
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        assert!(account.text.contains("Not confirmed yet.") && account.text.contains("href=\"/ui/verify-email\""), "{}", account.text);
        let page = get(&app, &mut jar, &format!("/ui/verify-email?token={other_token}"), "en").await;
        let done = post(&app, &mut jar, "/ui/verify-email", &[("csrf_token", &form_token(&page)), ("token", &other_token)], false).await;
        assert_eq!(location(&done), "/ui/account?notice=email_confirmed");
        let account = get(&app, &mut jar, "/ui/account?notice=email_confirmed", "en").await;
        assert!(account.text.contains("Email address confirmed.") && account.text.contains("Confirmed on"), "{}", account.text);
    }

    async fn resend_answers_the_same_for_every_address(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let waiting = app.register("eva").await;
        let confirmed = app.register("fabio").await;
        let token = mailed_token(&app, &confirmed.email, 1).await;
        assert_eq!(confirm(&app, &token).await.status, StatusCode::OK);
        mailed_token(&app, &waiting.email, 1).await;

        let addresses = [waiting.email.as_str(), confirmed.email.as_str(), "ghost@example.com"];
        let mut answers = Vec::new();
        for email in addresses {
            let r = resend(&app, email).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            answers.push(r.text);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
        // Only the account waiting for confirmation got a second link.
        mailed_token(&app, &waiting.email, 2).await;
        let events = wait_for_events(&app, &admin.access, "email.confirmation_sent", 5).await;
        let mut reasons: Vec<_> = events.iter().map(|e| e["details"]["reason"].as_str().unwrap().to_owned()).collect();
        reasons.sort();
        assert_eq!(reasons, ["already_confirmed", "registration", "registration", "resend", "unknown_address"]);
        let to = |email: &str| app.smtp.all_messages().iter().filter(|m| m.to.iter().any(|t| t == email)).count();
        assert_eq!((to(&waiting.email), to(&confirmed.email), to("ghost@example.com")), (2, 1, 0));

        // The hosted form: one redirect for all three.
        let mut jar = Jar::default();
        let page = get(&app, &mut jar, "/ui/verify-email", "en").await;
        assert!(!page.text.contains("name=\"token\""), "no confirm button without a link");
        let csrf = form_token(&page);
        for email in addresses {
            let r = post(&app, &mut jar, "/ui/verify-email/resend", &[("csrf_token", &csrf), ("email", email)], false).await;
            assert_eq!(location(&r), "/ui/verify-email?notice=confirmation_sent", "{email}");
        }
        let sent = get(&app, &mut jar, "/ui/verify-email?notice=confirmation_sent", "en").await;
        assert!(sent.text.contains("a new link is on its way"), "{}", sent.text);
        let r = post(&app, &mut jar, "/ui/verify-email/resend", &[("csrf_token", &csrf), ("email", "teste@")], true).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_email")));
        let r = post(&app, &mut Jar::default(), "/ui/verify-email/resend", &[("csrf_token", "forged"), ("email", waiting.email.as_str())], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }

    async fn links_are_limited_per_address_and_only_the_newest_works(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let user = app.register("gil").await;
        mailed_token(&app, &user.email, 1).await;
        for _ in 0..4 {
            assert_eq!(resend(&app, &user.email).await.status, StatusCode::OK);
        }
        // Registration's link and two more; the other two requests send nothing.
        let suppressed = |events: &[Value]| events.iter().filter(|e| e["details"]["reason"] == "mail_limit").count();
        let mut events = wait_for_events(&app, &admin.access, "email.confirmation_sent", 5).await;
        assert_eq!(suppressed(&events), 2, "{events:?}");
        let mut tokens = Vec::new();
        for n in 1..=3 {
            tokens.push(mailed_token(&app, &user.email, n).await);
        }
        assert_eq!(app.smtp.all_messages().len(), 3);
        let mut alive = Vec::new();
        for token in &tokens {
            if live(&app, token).await {
                alive.push(token.clone());
            }
        }
        assert_eq!(alive.len(), 1, "only the newest link works");

        // An hour later the address may have another link; it replaces the others.
        app.clock.advance(Duration::minutes(61));
        let admin = app.admin().await;
        assert_eq!(resend(&app, &user.email).await.status, StatusCode::OK);
        let newest = mailed_token(&app, &user.email, 4).await;
        events = wait_for_events(&app, &admin.access, "email.confirmation_sent", 6).await;
        assert_eq!(suppressed(&events), 2);
        assert_eq!(confirm(&app, &alive[0]).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(confirm(&app, &newest).await.status, StatusCode::OK);
    }

    async fn resend_and_confirmation_share_the_recovery_rate_limit(backend: Backend) {
        let app = spawn_app_with(backend, Options {
            env: vec![
                ("RATE_LIMIT_STRICT_CAPACITY", "2".to_owned()),
                ("RATE_LIMIT_STRICT_REFILL_RATE", "0.01".to_owned()),
            ],
        })
        .await;
        for _ in 0..2 {
            assert_eq!(resend(&app, "someone@example.com").await.status, StatusCode::OK);
        }
        for r in [resend(&app, "someone@example.com").await, confirm(&app, &"A".repeat(32)).await] {
            assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
            assert_eq!(r.body["code"], "too_many_requests");
            assert!(r.headers.contains_key("retry-after"));
        }
        // Other classes are not affected.
        assert_eq!(app.post("/api/auth/login", json!({"login": "x", "password": "Wrong-passw0rd"})).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn expired_or_foreign_links_change_nothing(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("hana").await;
        let token = mailed_token(&app, &user.email, 1).await;
        app.clock.advance(Duration::hours(24) + Duration::seconds(1));
        let r = confirm(&app, &token).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_confirmation_token")));
        assert_eq!(stored(&app, &user).await, (false, None));

        // A link confirms the address it was mailed to, only while the account still has it.
        let other = app.register("ines").await;
        let token = mailed_token(&app, &other.email, 1).await;
        let id = other.id.parse().unwrap();
        assert!(app.auth.store().rewrite_email(id, &other.email, "ines@example.org", app.auth.now(), &[]).await.unwrap());
        let r = confirm(&app, &token).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_confirmation_token")));
        assert_eq!(stored(&app, &other).await, (false, None));
    }

    async fn bad_confirmation_input_is_a_4xx_and_changes_nothing(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("joao").await;
        let token = mailed_token(&app, &user.email, 1).await;
        let huge = "A".repeat(60_000);
        let bodies = [
            json!({"token": 12345}),
            json!({"token": null}),
            json!({"token": ["x"]}),
            json!({}),
            json!({"token": "short"}),
            json!({"token": "A".repeat(32)}),
            json!({"token": format!("{}\u{0}", &token[..31])}),
            json!({"token": "🙂".repeat(8)}),
            json!({"token": format!("{token}{token}")}),
            json!({"token": huge}),
            json!(["x"]),
        ];
        for body in bodies {
            let r = app.post("/api/auth/verify-email", body.clone()).await;
            assert!(r.status.is_client_error(), "{body:.80}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error", "{}", r.text);
            assert!(r.body["code"].is_string(), "{}", r.text);
        }
        let raw = app.request(app.client.post(format!("{}/api/auth/verify-email", app.url))
            .header("content-type", "application/json").body("{\"token\": ")).await;
        assert_eq!(raw.status, StatusCode::BAD_REQUEST, "{}", raw.text);
        let form = app.request(app.client.post(format!("{}/api/auth/verify-email", app.url))
            .form(&[("token", token.as_str())])).await;
        assert!(form.status.is_client_error(), "{}", form.text);
        for email in [json!(5), json!("a@b"), json!(format!("{}@example.com", "x".repeat(10_000))), json!("nul\u{0}@example.com"), json!(null)] {
            let r = app.post("/api/auth/verify-email/resend", json!({"email": email})).await;
            assert!(r.status.is_client_error(), "{email:.80}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error");
        }
        assert_eq!(stored(&app, &user).await, (false, None));
        assert!(live(&app, &token).await);
        assert_eq!(app.smtp.all_messages().len(), 1);
        // With surrounding blanks (a copied link) the token still works.
        assert_eq!(confirm(&app, &format!(" {token}\n")).await.status, StatusCode::OK);
    }

    async fn required_confirmation_is_told_only_after_the_right_password(backend: Backend) {
        let app = spawn_app_with(backend, Options {
            env: vec![("REQUIRE_VERIFIED_EMAIL", "true".to_owned())],
        })
        .await;
        let user = app.register("iris").await;
        let token = mailed_token(&app, &user.email, 1).await;
        let api = |login: &str, password: &str| {
            app.post("/api/auth/login", json!({"username_or_email": login, "password": password}))
        };
        let compact = |login: &str, password: &str| app.post("/auth", json!({"login": login, "password": password}));

        // A wrong password looks like any unknown account, on both APIs.
        let (wrong, unknown) = (api(&user.username, "Wrong-passw0rd").await, api("nobody-here", "Wrong-passw0rd").await);
        assert_eq!((wrong.status, &wrong.text), (StatusCode::UNAUTHORIZED, &unknown.text));
        let (wrong, unknown) = (compact(&user.email, "Wrong-passw0rd").await, compact("nobody@example.com", "Wrong-passw0rd").await);
        assert_eq!((wrong.status, &wrong.text), (StatusCode::FORBIDDEN, &unknown.text));

        // The right password learns that the address waits for confirmation; no tokens.
        let r = api(&user.email, PASSWORD).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("email_not_verified")), "{}", r.text);
        assert!(r.body.get("data").is_none() && !r.text.contains("access_token"));
        let r = compact(&user.username, PASSWORD).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("email_not_verified")), "{}", r.text);
        assert!(r.body.get("auth").is_none());

        // The hosted page: the same refusal, and a way to a new link; no session.
        let mut jar = Jar::default();
        let page = get(&app, &mut jar, "/ui/login", "en").await;
        let csrf = form_token(&page);
        assert!(page.text.contains("data-show-on=\"email_not_verified\" hidden"), "the link waits hidden");
        let r = sign_in_page(&app, &mut jar, &csrf, &user.username, PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("Confirm your email address before signing in"), "{}", r.text);
        assert!(r.text.contains("data-show-on=\"email_not_verified\"><a href=\"/ui/verify-email\">"), "{}", r.text);
        assert!(!jar.0.keys().any(|k| k.contains("session")), "{:?}", jar.0.keys());
        let r = sign_in_page(&app, &mut jar, &csrf, &user.username, PASSWORD, true).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("email_not_verified")));
        let r = sign_in_page(&app, &mut jar, &csrf, &user.username, "Wrong-passw0rd", false).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("data-show-on=\"email_not_verified\" hidden"));

        // Each refusal is audited with its reason.
        let admin = app.admin().await;
        let events = wait_for_events(&app, &admin.access, "sign_in.failed", 1).await;
        assert_eq!(events.iter().filter(|e| e["details"]["reason"] == "email_not_verified").count(), 4, "{events:?}");

        // Confirmed, every path signs in; the first administrator was confirmed from the start.
        assert_eq!(confirm(&app, &token).await.status, StatusCode::OK);
        assert_eq!(api(&user.username, PASSWORD).await.status, StatusCode::OK);
        app.sign_in(&user).await;
        let r = sign_in_page(&app, &mut jar, &csrf, &user.username, PASSWORD, false).await;
        assert_eq!(location(&r), "/ui/account");
        let me = app.get_auth("/api/auth/me", &admin.access).await;
        assert_eq!(me.data()["email_verified"], true);
    }
}

#[test]
fn the_command_line_creates_accounts_confirmed_or_queues_their_link() {
    let cli = Cli::new();
    let create = |name: &str, extra: &[&str]| {
        let email = format!("{name}@example.com");
        let mut args = vec![
            "user",
            "create",
            "--username",
            name,
            "--email",
            &email,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        cli.ok(&args, Some(PASSWORD))
    };
    let out = create("ana", &["--verified"]);
    assert!(out.contains("email address confirmed"), "{out}");
    let out = create("bia", &[]);
    assert!(
        out.contains("a link to confirm the email address was queued"),
        "{out}"
    );
    let list = cli.ok(&["user", "list"], None);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.contains(&format!("{name}@example.com")))
            .unwrap()
            .to_owned()
    };
    assert!(!line("ana").contains("unconfirmed"), "{list}");
    assert!(line("bia").contains("unconfirmed"), "{list}");
}
