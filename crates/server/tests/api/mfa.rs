//! Multi-factor sign-in end to end (issue 14): authenticator apps with backup codes, emailed
//! codes after the password, the compact API's `otp`, administrators' resets, and what none of
//! it may do (open a session early, accept a code twice, take an `mfa_token` as a bearer, answer
//! 5xx to bad input, hand out a secret after setup).
//!
//! Codes are made here with `totp-rs` from the `otpauth://` URI the server hands out; the
//! independent implementation check (pyotp) is `tests/interop/mfa_interop.py`. Every code comes
//! from the server's own clock ([`crate::helpers::ShiftedClock`]): instead of waiting for the next
//! 30-second step, a test moves that clock forward.

use std::time::Duration as StdDuration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use porteiro_core::clock::Clock as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    ADMIN_PASSWORD, Backend, Options, PASSWORD, ReceivedMail, Reply, TestApp, TestUser, Tokens,
    spawn_app, spawn_app_with,
};

/// Seconds of a TOTP step.
const STEP: i64 = 30;

/// An account with an authenticator app: the app (a `totp-rs` generator built from the URI the
/// server handed out) and the last step this test spent, since each is accepted once.
pub(crate) struct Enrolled {
    pub(crate) user: TestUser,
    app: totp_rs::Totp,
    pub(crate) secret: String,
    pub(crate) backup_codes: Vec<String>,
    last_step: i64,
}

impl Enrolled {
    /// The code of `step`.
    fn code_at(&self, step: i64) -> String {
        self.app
            .generate(u64::try_from(step * STEP).unwrap())
            .to_string()
    }

    /// A code of a step not used before and within the server's ±1-step window; the server's
    /// clock moves on a step when this account already spent the next one.
    pub(crate) fn code(&mut self, app: &TestApp) -> String {
        let mut now = current_step(app);
        let step = (self.last_step + 1).max(now);
        if step > now + 1 {
            app.clock
                .advance(Duration::seconds(STEP * (step - now - 1)));
            now = current_step(app);
        }
        assert!(step >= now && step <= now + 1);
        self.last_step = step;
        self.code_at(step)
    }

    /// Six digits that are the code of no step near now.
    fn wrong_code(&self, app: &TestApp) -> String {
        let now = current_step(app);
        let near: Vec<String> = (now - 3..=now + 3).map(|s| self.code_at(s)).collect();
        (0..10)
            .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}

fn current_step(app: &TestApp) -> i64 {
    app.clock.now().timestamp().div_euclid(STEP)
}

/// The claims of a JWT (not verified: the JWT tests do that).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Registers `name`, sets up an authenticator app and enables it with a code.
pub(crate) async fn enrol(app: &TestApp, name: &str) -> Enrolled {
    let user = app.register(name).await;
    let tokens = first_session(app, &user).await;
    enrol_user(app, user, &tokens).await
}

/// A session for an account without an authenticator app: the password alone, or with the
/// emailed code when the server asks for one.
async fn first_session(app: &TestApp, user: &TestUser) -> Tokens {
    let mailed = mails_about(app, &user.email, "Your sign-in code");
    let r = password_step(app, user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    if r.data()["access_token"].is_string() {
        return tokens_of(&r);
    }
    assert_eq!(r.data()["methods"], json!(["email"]), "{}", r.text);
    let code =
        six_digit_code(&wait_for_mail(app, &user.email, "Your sign-in code", mailed + 1).await);
    let r = app
        .post(
            "/api/auth/email-verification/verify",
            json!({"mfa_token": r.data()["mfa_token"], "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokens_of(&r)
}

pub(crate) async fn enrol_user(app: &TestApp, user: TestUser, tokens: &Tokens) -> Enrolled {
    let r = app
        .get_auth(&format!("/api/users/{}/2fa/setup", user.id), &tokens.access)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let uri = r.data()["otpauth_uri"].as_str().unwrap();
    let secret = r.data()["secret"].as_str().unwrap().to_owned();
    let totp = totp_rs::Totp::from_url(uri).expect("an otpauth URI totp-rs reads");
    assert_eq!(totp.secret().to_base32(), secret);
    let backup_codes: Vec<String> = r.data()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let mut enrolled = Enrolled {
        user,
        app: totp,
        secret,
        backup_codes,
        last_step: i64::MIN,
    };
    let code = enrolled.code(app);
    let r = app
        .post_auth(
            &format!("/api/users/{}/2fa/enable", enrolled.user.id),
            &tokens.access,
            json!({"totp_code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["enabled"], true);
    enrolled
}

/// `POST /api/auth/login` with the account's password.
async fn password_step(app: &TestApp, user: &TestUser) -> Reply {
    app.post(
        "/api/auth/login",
        json!({"username_or_email": user.username, "password": user.password}),
    )
    .await
}

/// The `mfa_token` of a new sign-in of an account with an authenticator app.
pub(crate) async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let r = password_step(app, user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.data()["requires_2fa"], true, "{}", r.text);
    r.data()["mfa_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn verify(app: &TestApp, token: &str, code: &str) -> Reply {
    app.post(
        "/api/auth/2fa/verify",
        json!({"mfa_token": token, "code": code}),
    )
    .await
}

pub(crate) async fn verify_backup(app: &TestApp, token: &str, code: &str) -> Reply {
    app.post(
        "/api/auth/2fa/verify",
        json!({"mfa_token": token, "backup_code": code}),
    )
    .await
}

/// Password and app code: the access token.
async fn sign_in_2fa(app: &TestApp, enrolled: &mut Enrolled) -> Tokens {
    let token = mfa_token(app, &enrolled.user).await;
    let code = enrolled.code(app);
    let r = verify(app, &token, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    tokens_of(&r)
}

fn tokens_of(r: &Reply) -> Tokens {
    Tokens {
        access: r.data()["access_token"].as_str().unwrap().to_owned(),
        refresh: r.data()["refresh_token"].as_str().unwrap().to_owned(),
    }
}

fn code_of(r: &Reply) -> Option<&str> {
    r.body["code"].as_str()
}

/// Waits (up to 10 s) for the `n`th mail to `to` whose subject contains `subject`.
async fn wait_for_mail(app: &TestApp, to: &str, subject: &str, n: usize) -> ReceivedMail {
    for _ in 0..200 {
        let found: Vec<ReceivedMail> = app
            .smtp
            .messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to) && m.subject().contains(subject))
            .collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("no mail #{n} to {to} about {subject:?}");
}

fn mails_about(app: &TestApp, to: &str, subject: &str) -> usize {
    app.smtp
        .messages()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == to) && m.subject().contains(subject))
        .count()
}

/// The six digits of a sign-in code mail.
fn six_digit_code(mail: &ReceivedMail) -> String {
    let text = mail.text();
    let codes: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 6)
        .collect();
    assert_eq!(codes.len(), 1, "one 6-digit code in: {text}");
    codes[0].to_owned()
}

/// A sign-in whose second step is an emailed code: its `mfa_token` and the code (the `mails`th
/// sign-in code mail to the account, counted by the caller).
async fn email_sign_in(app: &TestApp, user: &TestUser, mails: &mut usize) -> (String, String) {
    let r = password_step(app, user).await;
    assert_eq!(r.data()["methods"], json!(["email"]), "{}", r.text);
    let token = r.data()["mfa_token"].as_str().unwrap().to_owned();
    *mails += 1;
    let code = six_digit_code(&wait_for_mail(app, &user.email, "Your sign-in code", *mails).await);
    (token, code)
}

/// Sends a mail through the same outbox and waits for it: whatever was queued before it has
/// been delivered by then (a bounded way to show that a mail was *not* sent).
async fn mail_barrier(app: &TestApp, user: &TestUser) {
    let before = mails_about(app, &user.email, "Reset your password");
    app.post("/api/auth/forgot-password", json!({"email": user.email}))
        .await;
    wait_for_mail(app, &user.email, "Reset your password", before + 1).await;
}

async fn devices(app: &TestApp, access: &str) -> usize {
    let r = app.get_auth("/api/auth/devices", access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().as_array().unwrap().len()
}

async fn failed_attempts(app: &TestApp, user: &TestUser) -> i32 {
    app.auth
        .store()
        .user_by_id(user.id.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .failed_login_attempts
}

async fn status(app: &TestApp, user: &TestUser, access: &str) -> Value {
    let r = app
        .get_auth(&format!("/api/users/{}/2fa/status", user.id), access)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data().clone()
}

/// The administrator's view of the audit log, one type of event.
async fn audit_events(app: &TestApp, kind: &str) -> Vec<Value> {
    let admin = app.admin().await;
    let r = app
        .get_auth(
            &format!("/api/admin/audit?limit=200&type={kind}"),
            &admin.access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["events"].as_array().unwrap().clone()
}

both_backends! {
    async fn turning_two_factor_on_needs_a_recent_sign_in_or_the_password(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("rosa").await;
        let tokens = app.sign_in(&user).await;
        let path = |p: &str| format!("/api/users/{}/2fa/{p}", user.id);
        let r = app.get_auth(&path("setup"), &tokens.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let totp = totp_rs::Totp::from_url(r.data()["otpauth_uri"].as_str().unwrap()).unwrap();
        // Six minutes after sign-in (the session refreshed, as a client keeps it): a stolen
        // access token alone must not turn on a factor that would lock the owner out.
        app.clock.advance(Duration::minutes(6));
        let refreshed = app.post("/api/auth/refresh", json!({"refresh_token": tokens.refresh})).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
        let access = refreshed.data()["access_token"].as_str().unwrap().to_owned();
        let code = || totp.generate(u64::try_from(app.clock.now().timestamp()).unwrap()).to_string();
        let r = app.post_auth(&path("enable"), &access, json!({"totp_code": code()})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("reauthentication_required")), "{}", r.text);
        let r = app.post_auth(&path("enable"), &access, json!({"totp_code": code(), "password": "Wrong-pass-1"})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("incorrect_password")), "{}", r.text);
        assert_eq!(status(&app, &user, &access).await["enabled"], false);
        let r = app.post_auth(&path("enable"), &access, json!({"totp_code": code(), "password": user.password})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(status(&app, &user, &access).await["enabled"], true);
    }

    async fn an_authenticator_app_makes_sign_in_two_steps(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("TOTP_ISSUER", "Acme ID".to_owned())] }).await;
        let user = app.register("tania").await;
        let tokens = app.sign_in(&user).await;
        let path = |p: &str| format!("/api/users/{}/2fa/{p}", user.id);
        let off = status(&app, &user, &tokens.access).await;
        assert_eq!(off, json!({"enabled": false, "enabled_at": null, "backup_codes_remaining": 0}));
        // Enabling before any setup: nothing to enable.
        let r = app.post_auth(&path("enable"), &tokens.access, json!({"totp_code": "123456"})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::CONFLICT, Some("mfa_setup_required")), "{}", r.text);

        // Setup: a 160-bit base32 secret, the URI apps read, a PNG QR code, ten backup codes.
        let r = app.get_auth(&path("setup"), &tokens.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let secret = r.data()["secret"].as_str().unwrap();
        assert_eq!(secret.len(), 32, "20 bytes in base32: {secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)), "{secret}");
        let uri = r.data()["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/Acme%20ID:tania%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")) && uri.contains("issuer=Acme%20ID"), "{uri}");
        let app_totp = totp_rs::Totp::from_url(uri).unwrap();
        assert_eq!(app_totp.issuer(), Some("Acme ID"));
        let qr = r.data()["qr_code"].as_str().unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(qr.strip_prefix("data:image/png;base64,").expect("a PNG data URL"))
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let codes = r.data()["backup_codes"].as_array().unwrap();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::HashSet<_> = codes.iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(distinct.len(), 10);
        assert!(distinct.iter().all(|c| c.len() == 14), "{distinct:?}");
        // Nothing is active until a code proves the app works: sign-in is still one step.
        assert_eq!(status(&app, &user, &tokens.access).await["enabled"], false);
        app.sign_in(&user).await;

        let mut enrolled = Enrolled {
            user: user.clone(),
            app: app_totp,
            secret: secret.to_owned(),
            backup_codes: distinct.iter().map(|c| (*c).to_owned()).collect(),
            last_step: i64::MIN,
        };
        let wrong = enrolled.wrong_code(&app);
        let r = app.post_auth(&path("enable"), &tokens.access, json!({"totp_code": wrong})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_code")), "{}", r.text);
        let r = app.post_auth(&path("enable"), &tokens.access, json!({"totp_code": "12345"})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("invalid_code_format")), "{}", r.text);
        let code = enrolled.code(&app);
        // Apps show the code as "123 456": that spelling works.
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        let r = app.post_auth(&path("enable"), &tokens.access, json!({"totp_code": spaced})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["enabled"], true);
        assert_eq!(r.data()["backup_codes_remaining"], 10);
        wait_for_mail(&app, &user.email, "Two-factor authentication is on", 1).await;
        let on = status(&app, &user, &tokens.access).await;
        assert_eq!((on["enabled"].clone(), on["backup_codes_remaining"].clone()), (json!(true), json!(10)));
        let enabled_at = chrono::DateTime::parse_from_rfc3339(on["enabled_at"].as_str().unwrap()).unwrap();
        assert!((app.clock.now() - enabled_at.with_timezone(&chrono::Utc)).num_seconds().abs() < 60);
        // A second setup or enable is refused while it is on.
        let r = app.get_auth(&path("setup"), &tokens.access).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::CONFLICT, Some("mfa_already_enabled")), "{}", r.text);
        let r = app.post_auth(&path("enable"), &tokens.access, json!({"totp_code": enrolled.code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::CONFLICT, Some("mfa_already_enabled")), "{}", r.text);

        // The password alone: no tokens, no session, an mfa_token for five minutes.
        let sessions_before = devices(&app, &tokens.access).await;
        let r = password_step(&app, &user).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let d = r.data();
        assert_eq!(d["access_token"], Value::Null);
        assert_eq!(d["refresh_token"], Value::Null);
        assert_eq!(d["requires_2fa"], true);
        assert_eq!(d["requires_email_verification"], false);
        assert_eq!(d["methods"], json!(["totp", "backup_code"]));
        assert_eq!(d["expires_in"], 300);
        assert_eq!(d["user"], Value::Null, "nothing about the account before the second step");
        let token = d["mfa_token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 43, "{token}");
        assert!(r.headers.get("set-cookie").is_none(), "no device cookie before the second step");
        assert_eq!(devices(&app, &tokens.access).await, sessions_before, "no session yet");

        // The code: tokens whose amr says password and one-time password.
        let code = enrolled.code(&app);
        let r = verify(&app, &token, &code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["requires_2fa"], false);
        assert!(r.data().get("mfa_token").is_none());
        assert_eq!(r.data()["user"]["id"], user.id.as_str());
        let signed_in = tokens_of(&r);
        assert_eq!(claims(&signed_in.access)["amr"], json!(["pwd", "otp"]));
        assert_eq!(app.me_status(&signed_in.access).await, StatusCode::OK);
        assert_eq!(devices(&app, &tokens.access).await, sessions_before + 1);
        // amr survives refreshes (both APIs).
        let r = app.post("/api/auth/refresh", json!({"refresh_token": signed_in.refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));
        let r = app.post("/refresh", json!({"refresh": r.data()["refresh_token"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.body["auth"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));
        // An account without an app signs in with its password alone: amr says so.
        let plain = app.register("ulisses").await;
        let r = password_step(&app, &plain).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!((r.data()["requires_2fa"].clone(), r.data().get("mfa_token")), (json!(false), None));
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd"]));
        // The audit log tells the second step apart.
        let started = audit_events(&app, "sign_in.second_step").await;
        assert!(started.iter().any(|e| e["user_id"] == user.id.as_str() && e["details"]["methods"] == json!(["totp", "backup_code"])));
        let done = audit_events(&app, "sign_in.succeeded").await;
        assert!(done.iter().any(|e| e["user_id"] == user.id.as_str() && e["details"]["second_factor"] == "totp" && e["details"]["amr"] == json!(["pwd", "otp"])), "{done:?}");
        assert_eq!(audit_events(&app, "mfa.enabled").await.len(), 1);
    }

    async fn a_code_is_accepted_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "vania").await;
        // The code that enabled the app cannot sign in.
        let enable_step = enrolled.last_step;
        let token = mfa_token(&app, &enrolled.user).await;
        let r = verify(&app, &token, &enrolled.code_at(enable_step)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        // A fresh one does, once: replayed on a second sign-in within its window, it is refused.
        let code = enrolled.code(&app);
        let r = verify(&app, &token, &code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let second = mfa_token(&app, &enrolled.user).await;
        let r = verify(&app, &second, &code).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        // So is an older step's code still inside the window.
        let used = enrolled.last_step;
        let next = enrolled.code(&app);
        let r = verify(&app, &second, &next).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let third = mfa_token(&app, &enrolled.user).await;
        let r = verify(&app, &third, &enrolled.code_at(used)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        // A code two or more steps away is outside the window (three here, so that a step
        // starting while the request travels cannot bring it within one).
        app.clock.advance(Duration::seconds(STEP * 3));
        let far = enrolled.code_at(current_step(&app) + 3);
        let r = verify(&app, &third, &far).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        let r = verify(&app, &third, &enrolled.code(&app)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    async fn concurrent_uses_of_one_code_have_one_winner(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "50".to_owned())] }).await;
        let mut enrolled = enrol(&app, "wanda").await;
        for round in 0..2 {
            let mut tokens = Vec::new();
            for _ in 0..8 {
                tokens.push(mfa_token(&app, &enrolled.user).await);
            }
            let code = enrolled.code(&app);
            let answers = futures::future::join_all(tokens.iter().map(|t| verify(&app, t, &code))).await;
            let won = answers.iter().filter(|r| r.status == StatusCode::OK).count();
            assert_eq!(won, 1, "round {round}: {:?}", answers.iter().map(|r| &r.text).collect::<Vec<_>>());
            for r in answers.iter().filter(|r| r.status != StatusCode::OK) {
                assert_eq!((r.status, code_of(r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
            }
        }
        // One mfa_token raced with two different valid codes: one session.
        let token = mfa_token(&app, &enrolled.user).await;
        let a = enrolled.code(&app);
        let b = enrolled.code(&app);
        let (ra, rb) = tokio::join!(verify(&app, &token, &a), verify(&app, &token, &b));
        let oks = [&ra, &rb].iter().filter(|r| r.status == StatusCode::OK).count();
        assert_eq!(oks, 1, "{} / {}", ra.text, rb.text);
    }

    async fn an_mfa_token_is_single_use_bound_to_its_client_and_never_a_bearer(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "xenia").await;
        let token = mfa_token(&app, &enrolled.user).await;
        // Not a bearer token anywhere.
        assert_eq!(app.me_status(&token).await, StatusCode::UNAUTHORIZED);
        let r = app.get_auth(&format!("/api/users/{}/2fa/status", enrolled.user.id), &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.post("/refresh", json!({"refresh": token})).await.status, StatusCode::FORBIDDEN);
        let r = app.post("/api/auth/refresh", json!({"refresh_token": token})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // Another client (another user agent) cannot use it, and does not spend it.
        let code = enrolled.code(&app);
        let req = app
            .client
            .post(format!("{}/api/auth/2fa/verify", app.url))
            .header("User-Agent", "Mozilla/5.0 (elsewhere)")
            .json(&json!({"mfa_token": token, "code": code}));
        let r = app.request(req).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        let r = verify(&app, &token, &code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // Spent: the same token again, even with a new code, is refused.
        let r = verify(&app, &token, &enrolled.code(&app)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        // Unknown or malformed tokens look the same.
        for bad in ["", "garbage", &"A".repeat(43), &format!("{token}x")] {
            let r = verify(&app, bad, &enrolled.code_at(current_step(&app))).await;
            assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{bad:?}: {}", r.text);
        }
        // Five minutes later it is gone.
        let late = mfa_token(&app, &enrolled.user).await;
        app.clock.advance(Duration::minutes(5) + Duration::seconds(1));
        let r = verify(&app, &late, &enrolled.code(&app)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        assert_eq!(failed_attempts(&app, &enrolled.user).await, 0, "none of this counted as a wrong code");
    }

    async fn concurrent_guesses_on_one_token_get_five_looks_at_most(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "50".to_owned())] }).await;
        let enrolled = enrol(&app, "ximena").await;
        let token = mfa_token(&app, &enrolled.user).await;
        let wrong = enrolled.wrong_code(&app);
        let answers = futures::future::join_all((0..20).map(|_| verify(&app, &token, &wrong))).await;
        let looked_at = answers.iter().filter(|r| code_of(r) == Some("invalid_code")).count();
        let refused = answers.iter().filter(|r| code_of(r) == Some("invalid_mfa_token")).count();
        assert_eq!((looked_at, refused), (5, 15), "each guess takes one of the token's five attempts first");
        assert_eq!(failed_attempts(&app, &enrolled.user).await, 5);
    }

    async fn five_wrong_codes_end_the_second_step(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "10".to_owned())] }).await;
        let mut enrolled = enrol(&app, "yara").await;
        let token = mfa_token(&app, &enrolled.user).await;
        for n in 1..=5 {
            let r = verify(&app, &token, &enrolled.wrong_code(&app)).await;
            assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "wrong code {n}: {}", r.text);
            assert_eq!(failed_attempts(&app, &enrolled.user).await, n, "counted on the account like a wrong password");
        }
        let r = verify(&app, &token, &enrolled.code(&app)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        // A backup code does not revive it either.
        let r = verify_backup(&app, &token, &enrolled.backup_codes[0]).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        // A new sign-in works, and its success clears the count.
        let fresh = mfa_token(&app, &enrolled.user).await;
        let r = verify(&app, &fresh, &enrolled.code(&app)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(failed_attempts(&app, &enrolled.user).await, 0);
        let failures = audit_events(&app, "sign_in.failed").await;
        assert!(failures.iter().filter(|e| e["details"]["step"] == "second").count() >= 5);
    }

    async fn wrong_codes_lock_the_account_like_wrong_passwords(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "zelia").await;
        // Two sign-ins past the password; wrong codes on the first lock the account (5 here).
        let waiting = mfa_token(&app, &enrolled.user).await;
        let probing = mfa_token(&app, &enrolled.user).await;
        let guessing = mfa_token(&app, &enrolled.user).await;
        for _ in 0..5 {
            let r = verify(&app, &guessing, &enrolled.wrong_code(&app)).await;
            assert_eq!(code_of(&r), Some("invalid_code"), "{}", r.text);
        }
        // Locked: the other sign-in's right code fails, and so does the right password. A wrong
        // code gets the very same answer: the lock is no oracle for telling codes apart.
        let right = enrolled.code(&app);
        let r = verify(&app, &probing, &enrolled.wrong_code(&app)).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")), "{}", r.text);
        let r = verify(&app, &waiting, &right).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")), "{}", r.text);
        let r = password_step(&app, &enrolled.user).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")), "{}", r.text);
        let r = app.post("/auth", json!({"login": enrolled.user.username, "password": PASSWORD, "otp": enrolled.code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_credentials")), "{}", r.text);
        assert_eq!(audit_events(&app, "account.locked").await.len(), 1);
        // The lock ends like any other.
        app.clock.advance(Duration::minutes(5) + Duration::seconds(1));
        sign_in_2fa(&app, &mut enrolled).await;
    }

    async fn failed_second_steps_open_no_session(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "20".to_owned())] }).await;
        let mut enrolled = enrol(&app, "abel").await;
        let mine = sign_in_2fa(&app, &mut enrolled).await;
        let before = devices(&app, &mine.access).await;
        for _ in 0..3 {
            let token = mfa_token(&app, &enrolled.user).await;
            verify(&app, &token, &enrolled.wrong_code(&app)).await;
            verify(&app, &token, "12345x").await;
            verify_backup(&app, &token, "0000-0000-0000").await;
        }
        assert_eq!(devices(&app, &mine.access).await, before);
    }

    async fn backup_codes_are_single_use_and_a_new_set_voids_the_old(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "20".to_owned())] }).await;
        let mut enrolled = enrol(&app, "bruna").await;
        let user = enrolled.user.clone();
        let first = enrolled.backup_codes[0].clone();
        let token = mfa_token(&app, &user).await;
        let r = verify_backup(&app, &token, &first).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let tokens = tokens_of(&r);
        assert_eq!(claims(&tokens.access)["amr"], json!(["pwd", "otp"]));
        wait_for_mail(&app, &user.email, "A backup code was used", 1).await;
        assert_eq!(status(&app, &user, &tokens.access).await["backup_codes_remaining"], 9);
        let used = audit_events(&app, "mfa.backup_code_used").await;
        assert_eq!(used.len(), 1);
        assert!(!serde_json::to_string(&used).unwrap().contains(&first));
        // Used once: refused the second time, in any spelling.
        let token = mfa_token(&app, &user).await;
        for spelling in [first.clone(), first.to_uppercase(), first.replace('-', "")] {
            let r = verify_backup(&app, &token, &spelling).await;
            assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        }
        // Another code in another spelling works.
        let second = enrolled.backup_codes[1].to_uppercase().replace('-', " ");
        let r = verify_backup(&app, &token, &second).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(status(&app, &user, &tokens.access).await["backup_codes_remaining"], 8);
        // Only the account's own codes: another account's code is wrong here.
        let other = enrol(&app, "caue").await;
        let token = mfa_token(&app, &user).await;
        let r = verify_backup(&app, &token, &other.backup_codes[0]).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);

        // A new set needs the password and a code.
        let path = format!("/api/users/{}/2fa/backup-codes", user.id);
        let r = app.post_auth(&path, &tokens.access, json!({"password": "Wrong-passw0rd", "totp_code": enrolled.code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("incorrect_password")), "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.wrong_code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_code")), "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "backup_code": first})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_code")), "a used backup code: {}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app), "backup_code": enrolled.backup_codes[2]})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{}", r.text);
        assert_eq!(status(&app, &user, &tokens.access).await["backup_codes_remaining"], 8, "nothing spent by refused requests");
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let fresh: Vec<String> = r.data()["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(fresh.len(), 10);
        assert!(fresh.iter().all(|c| !enrolled.backup_codes.contains(c)));
        wait_for_mail(&app, &user.email, "New backup codes were made", 1).await;
        assert_eq!(status(&app, &user, &tokens.access).await["backup_codes_remaining"], 10);
        assert_eq!(audit_events(&app, "mfa.backup_codes_regenerated").await.len(), 1);
        // The old set is void, the new one works; a backup code can also confirm the change.
        let token = mfa_token(&app, &user).await;
        let r = verify_backup(&app, &token, &enrolled.backup_codes[3]).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        let r = verify_backup(&app, &token, &fresh[0]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "backup_code": fresh[1]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let token = mfa_token(&app, &user).await;
        let r = verify_backup(&app, &token, &fresh[2]).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        // With the last code spent, the sign-in answer stops offering backup codes.
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let last: Vec<String> = r.data()["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        for code in &last {
            let token = mfa_token(&app, &user).await;
            let r = verify_backup(&app, &token, code).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        let r = password_step(&app, &user).await;
        assert_eq!(r.data()["methods"], json!(["totp"]));
        let r = verify_backup(&app, r.data()["mfa_token"].as_str().unwrap(), &last[0]).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("mfa_method_not_allowed")), "{}", r.text);
    }

    async fn turning_two_factor_off_needs_the_password_and_a_code(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("SECURITY_LOCKOUT_ATTEMPTS", "20".to_owned())] }).await;
        let mut enrolled = enrol(&app, "dora").await;
        let user = enrolled.user.clone();
        let tokens = sign_in_2fa(&app, &mut enrolled).await;
        let signed_in_step = enrolled.last_step;
        let path = format!("/api/users/{}/2fa/disable", user.id);
        let r = app.post_auth(&path, &tokens.access, json!({"password": "Wrong-passw0rd", "totp_code": enrolled.code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("incorrect_password")), "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.wrong_code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_code")), "{}", r.text);
        // A code spent by a sign-in cannot be spent again here.
        let spent = enrolled.code_at(signed_in_step);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": spent})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_code")), "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": "abcdef"})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("invalid_code_format")), "{}", r.text);
        let r = app.post_auth(&path, &tokens.access, json!({"totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "no password: {}", r.text);
        assert_eq!(failed_attempts(&app, &user).await, 3, "wrong password and wrong codes count");
        // Nobody else can turn it off, set it up or read it (administrators read only).
        let stranger = app.register("edu").await;
        let st = app.sign_in(&stranger).await;
        let r = app.post_auth(&path, &st.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = app.get_auth(&format!("/api/users/{}/2fa/setup", user.id), &st.access).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = app.get_auth(&format!("/api/users/{}/2fa/status", user.id), &st.access).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let admin = app.admin().await;
        let r = app.post_auth(&path, &admin.access, json!({"password": ADMIN_PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(status(&app, &user, &admin.access).await["enabled"], true);
        // The holder, with both: off, told by mail, one-step sign-in again.
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        wait_for_mail(&app, &user.email, "Two-factor authentication is off", 1).await;
        assert_eq!(status(&app, &user, &tokens.access).await, json!({"enabled": false, "enabled_at": null, "backup_codes_remaining": 0}));
        let r = password_step(&app, &user).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.data()["access_token"].is_string());
        let r = app.post_auth(&path, &tokens.access, json!({"password": PASSWORD, "totp_code": enrolled.code(&app)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::CONFLICT, Some("mfa_not_enabled")), "{}", r.text);
        let r = app.post_auth(&format!("/api/users/{}/2fa/backup-codes", user.id), &tokens.access, json!({"password": PASSWORD, "backup_code": enrolled.backup_codes[0]})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::CONFLICT, Some("mfa_not_enabled")), "{}", r.text);
        let events = audit_events(&app, "mfa.disabled").await;
        assert_eq!(events.len(), 1);
        // The holder acting on their own account is no separate actor.
        assert_eq!((events[0]["user_id"].clone(), events[0]["actor_id"].clone()), (json!(user.id), Value::Null));
        let refused = audit_events(&app, "mfa.reauthentication_failed").await;
        assert_eq!(refused.len(), 3);
        // Set up again from scratch: a new secret.
        let again = enrol_user(&app, user.clone(), &tokens).await;
        assert_ne!(again.secret, enrolled.secret);
    }

    async fn administrators_reset_two_factor_and_the_user_is_told(backend: Backend) {
        let app = spawn_app(backend).await;
        let enrolled = enrol(&app, "flora").await;
        let user = enrolled.user.clone();
        let path = format!("/api/users/{}/2fa/reset", user.id);
        // Not for users, not even for themselves.
        let other = app.register("gil").await;
        let ot = app.sign_in(&other).await;
        let r = app.post_auth(&path, &ot.access, json!({})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
        let r = app.post(&path, json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let admin = app.admin().await;
        let admin_id = app.get_auth("/api/auth/me", &admin.access).await.data()["id"].clone();
        let r = app.post_auth(&path, &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["was_enabled"], true);
        let mail = wait_for_mail(&app, &user.email, "An administrator reset your two-factor authentication", 1).await;
        assert!(mail.text().contains("administrator"));
        let events = audit_events(&app, "mfa.reset").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["user_id"], user.id.as_str());
        assert_eq!(events[0]["actor_id"], admin_id);
        assert_eq!(events[0]["details"]["by"], "admin");
        // One step again, and the old backup codes are gone with the app.
        let r = password_step(&app, &user).await;
        assert!(r.data()["access_token"].is_string(), "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd"]));
        assert_eq!(status(&app, &user, &admin.access).await["backup_codes_remaining"], 0);
        // Again: nothing to reset, no event, no mail.
        let r = app.post_auth(&path, &admin.access, json!({})).await;
        assert_eq!((r.status, r.data()["was_enabled"].clone()), (StatusCode::OK, json!(false)));
        assert_eq!(audit_events(&app, "mfa.reset").await.len(), 1);
        let r = app.post_auth(&format!("/api/users/{}/2fa/reset", uuid::Uuid::new_v4()), &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let r = app.post_auth("/api/users/not-a-uuid/2fa/reset", &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        // An administrator's own factor is removed with the password and a code (`disable`),
        // never by its access token alone.
        let own = format!("/api/users/{}/2fa/reset", admin_id.as_str().unwrap());
        let r = app.post_auth(&own, &admin.access, json!({})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
        mail_barrier(&app, &user).await;
        assert_eq!(mails_about(&app, &user.email, "An administrator reset"), 1);
    }

    async fn the_command_line_resets_two_factor(backend: Backend) {
        let app = spawn_app(backend).await;
        let enrolled = enrol(&app, "hilda").await;
        let user = enrolled.user.clone();
        let run = |who: &str| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"));
            cmd.args(["user", "reset-2fa", who]).env_clear().current_dir(&app.dir);
            for (k, v) in &app.env {
                cmd.env(k, v);
            }
            cmd.output().unwrap()
        };
        let out = run(&user.email.to_uppercase());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains("two-factor authentication of hilda was reset"), "{stdout}");
        // The running server delivers the notice the command queued.
        wait_for_mail(&app, &user.email, "An administrator reset your two-factor authentication", 1).await;
        let r = password_step(&app, &user).await;
        assert!(r.data()["access_token"].is_string(), "{}", r.text);
        let events = audit_events(&app, "mfa.reset").await;
        assert_eq!(events.len(), 1);
        assert_eq!((events[0]["actor_id"].clone(), events[0]["details"]["by"].clone()), (Value::Null, json!("cli")));
        let out = run("hilda");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("had no two-factor authentication"));
        let out = run("nobody");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
    }

    async fn an_emailed_code_is_the_second_step_when_configured(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_VERIFICATION_ENABLED", "always".to_owned())] }).await;
        let user = app.register("ines").await;
        let r = password_step(&app, &user).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let d = r.data();
        assert_eq!((d["access_token"].clone(), d["refresh_token"].clone()), (Value::Null, Value::Null));
        assert_eq!((d["requires_2fa"].clone(), d["requires_email_verification"].clone()), (json!(false), json!(true)));
        assert_eq!(d["methods"], json!(["email"]));
        assert_eq!(d["expires_in"], 300);
        let token = d["mfa_token"].as_str().unwrap().to_owned();
        let mail = wait_for_mail(&app, &user.email, "Your sign-in code", 1).await;
        let code = six_digit_code(&mail);
        // Not an authenticator code, and not as a bearer token.
        let r = verify(&app, &token, &code).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("mfa_method_not_allowed")), "{}", r.text);
        assert_eq!(app.me_status(&token).await, StatusCode::UNAUTHORIZED);
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": wrong})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": code})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "email"]));
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": code})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        // Every sign-in gets its own code, bound to its own mfa_token.
        let first = password_step(&app, &user).await.data()["mfa_token"].as_str().unwrap().to_owned();
        let first_code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 2).await);
        let second = password_step(&app, &user).await.data()["mfa_token"].as_str().unwrap().to_owned();
        let second_code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 3).await);
        if first_code != second_code {
            let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": second, "code": first_code})).await;
            assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{}", r.text);
        }
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": first, "code": first_code})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // The compact API cannot do an emailed second step: it says a second factor is needed.
        let r = app.post("/auth", json!({"login": user.username, "password": PASSWORD})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("mfa_required")), "{}", r.text);
        let r = app.post("/auth", json!({"login": user.username, "password": PASSWORD, "otp": second_code})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("mfa_required")), "{}", r.text);
        // …and mails no code it could never use: the next code mailed (mail is delivered in the
        // order it was queued) is the next real sign-in's.
        let next = password_step(&app, &user).await.data()["mfa_token"].as_str().unwrap().to_owned();
        let next_code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 4).await);
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": next, "code": next_code})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    async fn emailed_codes_have_attempt_resend_and_time_limits(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("EMAIL_VERIFICATION_ENABLED", "true".to_owned()),
            ("SECURITY_LOCKOUT_ATTEMPTS", "30".to_owned()),
        ] }).await;
        let user = app.register("joana").await;
        let mut mails = 0;
        let email_verify = |token: &str, code: &str| {
            app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": code}))
        };
        let resend = |token: &str| app.post("/api/auth/email-verification/resend", json!({"mfa_token": token}));
        let wrong = |code: &str| if code == "999999" { "999998".to_owned() } else { "999999".to_owned() };

        // Five wrong codes end the sign-in.
        let (token, code) = email_sign_in(&app, &user, &mut mails).await;
        for _ in 0..5 {
            let r = email_verify(&token, &wrong(&code)).await;
            assert_eq!(code_of(&r), Some("invalid_code"), "{}", r.text);
        }
        let r = email_verify(&token, &code).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        let r = resend(&token).await;
        assert_eq!(code_of(&r), Some("invalid_mfa_token"), "{}", r.text);

        // Resends: not within a minute of the last code; a resend replaces the code; wrong
        // attempts still count across resends.
        let (token, old_code) = email_sign_in(&app, &user, &mut mails).await;
        let r = resend(&token).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests")), "{}", r.text);
        let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        for _ in 0..3 {
            let r = email_verify(&token, &wrong(&old_code)).await;
            assert_eq!(code_of(&r), Some("invalid_code"), "{}", r.text);
        }
        app.clock.advance(Duration::seconds(61));
        let r = resend(&token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        mails += 1;
        let new_code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", mails).await);
        let r = resend(&token).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "a second resend within the minute: {}", r.text);
        assert!(r.headers.contains_key("retry-after"));
        if new_code != old_code {
            let r = email_verify(&token, &old_code).await;
            assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "the old code is void: {}", r.text);
        } else {
            email_verify(&token, &wrong(&new_code)).await;
        }
        // That was the fourth wrong attempt; one more ends it even though a new code came.
        let r = email_verify(&token, &wrong(&new_code)).await;
        assert_eq!(code_of(&r), Some("invalid_code"), "{}", r.text);
        let r = email_verify(&token, &new_code).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);

        // A resent code works.
        let (token, _) = email_sign_in(&app, &user, &mut mails).await;
        app.clock.advance(Duration::seconds(60));
        let r = resend(&token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        mails += 1;
        let resent = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", mails).await);
        let r = email_verify(&token, &resent).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "email"]));

        // The sign-in (and with it its code) lasts five minutes.
        let (token, code) = email_sign_in(&app, &user, &mut mails).await;
        app.clock.advance(Duration::minutes(5) + Duration::seconds(1));
        let r = email_verify(&token, &code).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
        let r = resend(&token).await;
        assert_eq!(code_of(&r), Some("invalid_mfa_token"), "{}", r.text);
        // Resends stop when the sign-in ends: one a minute fits four times into its five.
        let (token, _) = email_sign_in(&app, &user, &mut mails).await;
        for _ in 0..4 {
            app.clock.advance(Duration::seconds(60));
            let r = resend(&token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            mails += 1;
        }
        app.clock.advance(Duration::seconds(60));
        let r = resend(&token).await;
        assert_eq!(code_of(&r), Some("invalid_mfa_token"), "{}", r.text);
        let last = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", mails).await);
        let r = email_verify(&token, &last).await;
        assert_eq!(code_of(&r), Some("invalid_mfa_token"), "{}", r.text);
        mail_barrier(&app, &user).await;
        assert_eq!(mails_about(&app, &user.email, "Your sign-in code"), mails);
    }

    async fn new_device_mode_asks_only_clients_it_does_not_know(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("EMAIL_VERIFICATION_ENABLED", "new_device".to_owned()),
            ("TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ] }).await;
        let user = app.register("karla").await;
        let login = |ip: &'static str, device: Option<&str>| {
            let mut req = app
                .client
                .post(format!("{}/api/auth/login", app.url))
                .header("x-forwarded-for", ip)
                .json(&json!({"username_or_email": user.username, "password": PASSWORD}));
            if let Some(d) = device {
                req = req.header("cookie", format!("porteiro-device={d}"));
            }
            app.request(req)
        };
        // A client never seen: asked for the emailed code; finishing sets the device cookie.
        let r = login("198.51.100.7", None).await;
        assert_eq!(r.data()["methods"], json!(["email"]), "{}", r.text);
        let token = r.data()["mfa_token"].as_str().unwrap().to_owned();
        let code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 1).await);
        let req = app
            .client
            .post(format!("{}/api/auth/email-verification/verify", app.url))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"mfa_token": token, "code": code}));
        let r = app.request(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("porteiro-device="), "{cookie}");
        let device = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        // The same browser from the same address: no second step.
        let r = login("198.51.100.7", Some(&device)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.data()["access_token"].is_string(), "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd"]));
        // Another client, or the same cookie from another address: asked again.
        let r = login("198.51.100.7", None).await;
        assert_eq!(r.data()["requires_email_verification"], true, "{}", r.text);
        let r = login("203.0.113.9", Some(&device)).await;
        assert_eq!(r.data()["requires_email_verification"], true, "{}", r.text);
        // The mfa_token is bound to the client it was given to: another address cannot use it.
        let token = r.data()["mfa_token"].as_str().unwrap().to_owned();
        let code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 3).await);
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": code})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::UNAUTHORIZED, Some("invalid_mfa_token")), "{}", r.text);
    }

    async fn totp_accounts_get_email_codes_only_with_the_fallback(backend: Backend) {
        // Without the fallback (default): the app is the only way, whatever the email rule says.
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_VERIFICATION_ENABLED", "always".to_owned())] }).await;
        let mut enrolled = enrol(&app, "lara").await;
        let mailed = mails_about(&app, &enrolled.user.email, "Your sign-in code");
        let r = password_step(&app, &enrolled.user).await;
        let d = r.data();
        assert_eq!(d["methods"], json!(["totp", "backup_code"]), "{}", r.text);
        assert_eq!((d["requires_2fa"].clone(), d["requires_email_verification"].clone()), (json!(true), json!(false)));
        let token = d["mfa_token"].as_str().unwrap().to_owned();
        let r = app.post("/api/auth/email-verification/resend", json!({"mfa_token": token})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("mfa_method_not_allowed")), "{}", r.text);
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": "123456"})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("mfa_method_not_allowed")), "{}", r.text);
        let r = verify(&app, &token, &enrolled.code(&app)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        mail_barrier(&app, &enrolled.user).await;
        assert_eq!(mails_about(&app, &enrolled.user.email, "Your sign-in code"), mailed, "no code was mailed");

        // With it: email is offered (not mailed until asked for) and works.
        let app = spawn_app_with(backend, Options { env: vec![
            ("EMAIL_VERIFICATION_ENABLED", "off".to_owned()),
            ("MFA_EMAIL_FALLBACK", "true".to_owned()),
        ] }).await;
        let enrolled = enrol(&app, "lara").await;
        let r = password_step(&app, &enrolled.user).await;
        let d = r.data();
        assert_eq!(d["methods"], json!(["totp", "backup_code", "email"]), "{}", r.text);
        assert_eq!((d["requires_2fa"].clone(), d["requires_email_verification"].clone()), (json!(true), json!(false)));
        let token = d["mfa_token"].as_str().unwrap().to_owned();
        let r = app.post("/api/auth/email-verification/resend", json!({"mfa_token": token})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let code = six_digit_code(&wait_for_mail(&app, &enrolled.user.email, "Your sign-in code", 1).await);
        let r = app.post("/api/auth/email-verification/verify", json!({"mfa_token": token, "code": code})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.data()["access_token"].as_str().unwrap())["amr"], json!(["pwd", "email"]));
    }

    async fn the_compact_api_takes_the_second_factor_as_otp(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "marta").await;
        let login = enrolled.user.username.clone();
        let unknown = app.post("/auth", json!({"login": "nobody", "password": PASSWORD})).await;
        assert_eq!(unknown.status, StatusCode::FORBIDDEN);
        // The right password without otp: 403 mfa_required (only after the right password).
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("mfa_required")), "{}", r.text);
        let r = app.post("/auth", json!({"login": login, "password": "Wrong-passw0rd"})).await;
        assert_eq!((r.status, r.text.clone()), (StatusCode::FORBIDDEN, unknown.text.clone()), "a wrong password looks like an unknown account");
        let r = app.post("/auth", json!({"login": login, "password": "Wrong-passw0rd", "otp": enrolled.code(&app)})).await;
        assert_eq!((r.status, r.text.clone()), (StatusCode::FORBIDDEN, unknown.text.clone()), "a right otp does not help a wrong password");
        // A wrong otp is a bad credential like any other.
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": enrolled.wrong_code(&app)})).await;
        assert_eq!((r.status, r.text.clone()), (StatusCode::FORBIDDEN, unknown.text.clone()), "{}", r.text);
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": "not a code"})).await;
        assert!(r.status.is_client_error(), "{}", r.text);
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": 123456})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        // The right one: the usual pair, nothing more, amr with otp.
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": enrolled.code(&app)})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body.as_object().unwrap().len(), 2, "{}", r.text);
        assert_eq!(claims(r.body["auth"].as_str().unwrap())["amr"], json!(["pwd", "otp"]));
        // Its code is spent.
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": enrolled.code_at(enrolled.last_step)})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_credentials")), "{}", r.text);
        // A backup code in otp works, once.
        let backup = enrolled.backup_codes[0].clone();
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": backup})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": backup})).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("invalid_credentials")), "{}", r.text);
        // Wrong otps lock the account like wrong passwords: one so far since the last success.
        for _ in 0..4 {
            let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": enrolled.wrong_code(&app)})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }
        let r = app.post("/auth", json!({"login": login, "password": PASSWORD, "otp": enrolled.code(&app)})).await;
        assert_eq!((r.status, r.text.clone()), (StatusCode::FORBIDDEN, unknown.text.clone()), "locked: {}", r.text);
        // Accounts without an app ignore otp.
        let plain = app.register("nelson").await;
        let r = app.post("/auth", json!({"login": plain.username, "password": PASSWORD, "otp": "123456"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(claims(r.body["auth"].as_str().unwrap())["amr"], json!(["pwd"]));
    }

    async fn a_second_step_never_tells_who_has_an_account(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_VERIFICATION_ENABLED", "always".to_owned())] }).await;
        let enrolled = enrol(&app, "olivia").await;
        let emailed = app.register("paulo").await;
        let unknown = app.post("/api/auth/login", json!({"username_or_email": "nobody", "password": "Wrong-passw0rd"})).await;
        assert_eq!((unknown.status, code_of(&unknown)), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        for user in [&enrolled.user, &emailed] {
            let r = app.post("/api/auth/login", json!({"username_or_email": user.username, "password": "Wrong-passw0rd"})).await;
            assert_eq!((r.status, r.text.clone()), (unknown.status, unknown.text.clone()), "{}", user.username);
            assert!(r.headers.get("set-cookie").is_none());
        }
        // No code is mailed for a wrong password.
        mail_barrier(&app, &emailed).await;
        assert_eq!(mails_about(&app, &emailed.email, "Your sign-in code"), 0);
    }

    async fn bad_input_to_every_new_route_is_a_4xx_and_changes_nothing(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("MFA_EMAIL_FALLBACK", "true".to_owned())] }).await;
        let mut enrolled = enrol(&app, "quiteria").await;
        let user = enrolled.user.clone();
        let access = sign_in_2fa(&app, &mut enrolled).await.access;
        let token = mfa_token(&app, &user).await;
        let huge = "9".repeat(60_000);
        let code = enrolled.code_at(current_step(&app));
        let user_path = |p: &str| format!("/api/users/{}/2fa/{p}", user.id);
        let bodies: Vec<(String, Value)> = vec![
            ("/api/auth/2fa/verify".into(), json!({})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": 42, "code": code})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": 123456})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": null, "backup_code": null})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": ["123456"]})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": "12345"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": "1234567"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": "12345a"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": "１２３４５６"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": "12\u{0}456"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": huge})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "backup_code": huge})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "backup_code": "uuuu-uuuu-uuuu"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "backup_code": "short"})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "code": code, "backup_code": enrolled.backup_codes[0]})),
            ("/api/auth/2fa/verify".into(), json!({"mfa_token": token, "totp_code": code, "backup_code": enrolled.backup_codes[0]})),
            ("/api/auth/2fa/verify".into(), json!([token, code])),
            ("/api/auth/email-verification/verify".into(), json!({"mfa_token": token})),
            ("/api/auth/email-verification/verify".into(), json!({"mfa_token": token, "code": 123456})),
            ("/api/auth/email-verification/verify".into(), json!({"mfa_token": token, "code": "12a456"})),
            ("/api/auth/email-verification/verify".into(), json!({"mfa_token": token, "code": huge})),
            ("/api/auth/email-verification/verify".into(), json!({"mfa_token": huge, "code": "123456"})),
            ("/api/auth/email-verification/resend".into(), json!({})),
            ("/api/auth/email-verification/resend".into(), json!({"mfa_token": 1})),
            ("/api/auth/email-verification/resend".into(), json!({"mfa_token": huge})),
            ("/auth".into(), json!({"login": user.username, "password": PASSWORD, "otp": huge})),
            ("/auth".into(), json!({"login": user.username, "password": PASSWORD, "otp": ""})),
            ("/auth".into(), json!({"login": user.username, "password": PASSWORD, "otp": "12345a"})),
            ("/auth".into(), json!({"login": user.username, "password": PASSWORD, "otp": {"code": code}})),
        ];
        for (path, body) in &bodies {
            let r = app.post(path, body.clone()).await;
            assert!(r.status.is_client_error(), "{path} {body}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error", "{path}: {}", r.text);
            assert!(r.body["code"].is_string(), "{path}: {}", r.text);
        }
        // Management routes: wrong types, malformed and huge values, bad ids, bodies that are
        // not JSON.
        let managed: Vec<(String, Value)> = vec![
            (user_path("enable"), json!({"totp_code": 123456})),
            (user_path("enable"), json!({"totp_code": huge})),
            (user_path("enable"), json!({})),
            (user_path("disable"), json!({"password": PASSWORD})),
            (user_path("disable"), json!({"password": PASSWORD, "totp_code": 123456})),
            (user_path("disable"), json!({"password": 5, "totp_code": code})),
            (user_path("disable"), json!({"password": PASSWORD, "totp_code": huge})),
            (user_path("disable"), json!({"password": PASSWORD, "backup_code": huge})),
            (user_path("disable"), json!({"password": PASSWORD, "totp_code": code, "backup_code": enrolled.backup_codes[0]})),
            (user_path("backup-codes"), json!({"password": PASSWORD, "totp_code": "12 34"})),
            (user_path("backup-codes"), json!({"password": null, "totp_code": code})),
            (user_path("backup-codes"), json!({"password": PASSWORD, "backup_code": "!!!!-!!!!-!!!!"})),
            ("/api/users/not-a-uuid/2fa/enable".into(), json!({"totp_code": code})),
            ("/api/users/not-a-uuid/2fa/disable".into(), json!({"password": PASSWORD, "totp_code": code})),
            ("/api/users/not-a-uuid/2fa/reset".into(), json!({})),
        ];
        for (path, body) in &managed {
            let r = app.post_auth(path, &access, body.clone()).await;
            assert!(r.status.is_client_error(), "{path} {body}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error", "{path}: {}", r.text);
        }
        for path in ["/api/users/not-a-uuid/2fa/setup", "/api/users/not-a-uuid/2fa/status", &format!("/api/users/{}/2fa/status", uuid::Uuid::new_v4())] {
            let r = app.get_auth(path, &access).await;
            assert!(r.status.is_client_error(), "{path}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error", "{path}: {}", r.text);
        }
        for path in ["/api/auth/2fa/verify", "/api/auth/email-verification/verify", "/api/auth/email-verification/resend"] {
            for (content_type, body) in [("application/json", "{\"mfa_token\":"), ("text/plain", "mfa_token=x&code=1"), ("application/json", "")] {
                let req = app.client.post(format!("{}{path}", app.url)).header("content-type", content_type).body(body);
                let r = app.request(req).await;
                assert!(r.status.is_client_error(), "{path} {body:?}: {} {}", r.status, r.text);
                assert_eq!(r.body["status"], "error", "{path}: {}", r.text);
            }
        }
        // A 100 KB mfa_token: over the body limit, still a JSON 4xx.
        let r = app.post("/api/auth/2fa/verify", json!({"mfa_token": "A".repeat(100_000), "code": code})).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.text);
        assert_eq!(r.body["status"], "error", "{}", r.text);

        // Nothing changed: no failure counted, no code or backup code spent, the app still on,
        // and the mfa_token the malformed requests carried still finishes the sign-in.
        assert_eq!(failed_attempts(&app, &user).await, 0);
        let st = status(&app, &user, &access).await;
        assert_eq!((st["enabled"].clone(), st["backup_codes_remaining"].clone()), (json!(true), json!(10)));
        mail_barrier(&app, &user).await;
        assert_eq!(mails_about(&app, &user.email, "Your sign-in code"), 0, "no code mailed");
        let r = verify(&app, &token, &enrolled.code(&app)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    async fn no_secret_leaves_the_server_after_setup(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "rosa").await;
        let user = enrolled.user.clone();
        let mine = sign_in_2fa(&app, &mut enrolled).await;
        let admin = app.admin().await;
        let raw_secret = enrolled.app.secret().as_bytes().to_vec();
        let mut answers = Vec::new();
        for (path, token) in [
            (format!("/api/users/{}/2fa/status", user.id), &mine.access),
            ("/api/auth/me".to_owned(), &mine.access),
            (format!("/api/users/{}", user.id), &mine.access),
            (format!("/api/users/{}", user.id), &admin.access),
            ("/api/users?per_page=100".to_owned(), &admin.access),
            ("/api/admin/audit?limit=200".to_owned(), &admin.access),
            ("/api/auth/me/events".to_owned(), &mine.access),
            ("/api/auth/devices".to_owned(), &mine.access),
        ] {
            let r = app.get_auth(&path, token).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
            answers.push(r.text);
        }
        let r = password_step(&app, &user).await;
        answers.push(r.text);
        let lower_secret = enrolled.secret.to_lowercase();
        for text in &answers {
            let lower = text.to_lowercase();
            assert!(!lower.contains(&lower_secret), "the secret leaked: {text}");
            assert!(!text.contains("otpauth"), "{text}");
            for code in &enrolled.backup_codes {
                assert!(!lower.contains(code), "a backup code leaked: {text}");
            }
        }
        // At rest: neither the secret (raw or base32) nor a backup code in the database files.
        if backend == Backend::Sqlite {
            for name in ["porteiro.db", "porteiro.db-wal"] {
                let bytes = std::fs::read(app.dir.join(name)).unwrap_or_default();
                let mut needles: Vec<Vec<u8>> = vec![raw_secret.clone(), enrolled.secret.clone().into_bytes()];
                for code in &enrolled.backup_codes {
                    needles.push(code.clone().into_bytes());
                    needles.push(code.replace('-', "").into_bytes());
                }
                for needle in &needles {
                    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "{name} holds a secret in the clear");
                }
            }
        }
    }

    async fn a_browser_session_finishes_its_second_step_with_the_csrf_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut enrolled = enrol(&app, "sara").await;
        let mut jar = crate::browser::Jar::default();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, "/api/auth/csrf", None, None).await;
        let csrf = r.data()["csrf_token"].as_str().unwrap().to_owned();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session", Some(&csrf),
            Some(json!({"username_or_email": enrolled.user.username, "password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["requires_2fa"], true, "{}", r.text);
        assert!(jar.get("porteiro-session").is_none(), "no session before the second step");
        let token = r.data()["mfa_token"].as_str().unwrap().to_owned();
        let code = enrolled.code(&app);
        let body = json!({"mfa_token": token, "code": code});
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session/verify", None, Some(body.clone())).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("csrf_failed")), "{}", r.text);
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session/verify", Some(&csrf), Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(jar.get("porteiro-session").is_some());
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["id"], enrolled.user.id.as_str());
    }

    async fn a_cookie_session_starts_a_setup_only_with_the_csrf_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("telma").await;
        let mut jar = crate::browser::Jar::default();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, "/api/auth/csrf", None, None).await;
        let csrf = r.data()["csrf_token"].as_str().unwrap().to_owned();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session", Some(&csrf),
            Some(json!({"username_or_email": user.username, "password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let csrf = r.data()["csrf_token"].as_str().unwrap().to_owned();
        // A GET, but it replaces a pending secret: a cross-site navigation must not trigger it.
        let path = format!("/api/users/{}/2fa/setup", user.id);
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, &path, None, None).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::FORBIDDEN, Some("csrf_failed")), "{}", r.text);
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, &path, Some(&csrf), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.data()["secret"].is_string());
    }

    async fn a_browser_session_finishes_an_emailed_second_step(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_VERIFICATION_ENABLED", "always".to_owned())] }).await;
        let user = app.register("tereza").await;
        let mut jar = crate::browser::Jar::default();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, "/api/auth/csrf", None, None).await;
        let csrf = r.data()["csrf_token"].as_str().unwrap().to_owned();
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session", Some(&csrf),
            Some(json!({"username_or_email": user.username, "password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["methods"], json!(["email"]), "{}", r.text);
        assert!(jar.get("porteiro-session").is_none());
        let token = r.data()["mfa_token"].as_str().unwrap().to_owned();
        let code = six_digit_code(&wait_for_mail(&app, &user.email, "Your sign-in code", 1).await);
        // The emailed code is not an authenticator code, and one field at a time.
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session/verify", Some(&csrf),
            Some(json!({"mfa_token": token, "code": code}))).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("mfa_method_not_allowed")), "{}", r.text);
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session/verify", Some(&csrf),
            Some(json!({"mfa_token": token, "code": code, "email_code": code}))).await;
        assert_eq!((r.status, code_of(&r)), (StatusCode::BAD_REQUEST, Some("invalid_code_format")), "{}", r.text);
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::POST, "/api/auth/session/verify", Some(&csrf),
            Some(json!({"mfa_token": token, "email_code": code}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(jar.get("porteiro-session").is_some());
        let r = crate::browser::send(&app, &mut jar, reqwest::Method::GET, "/api/auth/me", None, None).await;
        assert_eq!((r.status, r.data()["id"].clone()), (StatusCode::OK, json!(user.id)), "{}", r.text);
    }
}
