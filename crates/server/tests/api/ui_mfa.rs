//! The hosted two-factor pages over plain HTTP, as a browser without JavaScript (and the
//! enhanced form's JSON answers): setup on the account page, the second step on `/ui/mfa`,
//! CSRF on every new form, where the secret and the `mfa_token` may (not) travel, and the
//! setup answer's own CSP. The browser suite (tests/ui/mfa.test.mjs) covers it in Chromium.
//!
//! Authenticator codes are computed here (RFC 6238 over aws-lc-rs's HMAC-SHA-1), not with
//! Porteiro's own TOTP code.

use aws_lc_rs::hmac;
use reqwest::StatusCode;

use crate::both_backends;
use crate::browser::Jar;
use crate::helpers::{PASSWORD, Reply, TestApp, spawn_app};
use crate::ui::{form_token, get, location, login_form, post};

/// RFC 4648 base32, spaces ignored.
fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let index = ALPHABET.iter().position(|a| *a == c).expect("base32") as u32;
        value = ((value << 5) | index) & 0xffff;
        bits += 5;
        if bits >= 8 {
            out.push(((value >> (bits - 8)) & 0xff) as u8);
            bits -= 8;
        }
    }
    out
}

/// The RFC 6238 code of `key` for the 30-second `step`.
fn totp(key: &str, step: i64) -> String {
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &base32(key)),
        &step.to_be_bytes(),
    );
    let mac = mac.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let word = u32::from_be_bytes(mac[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", word % 1_000_000)
}

fn step_now(app: &TestApp) -> i64 {
    use porteiro_core::clock::Clock as _;
    app.clock.now().timestamp() / 30
}

/// The text between `start` and the next `end` in a page.
fn between<'a>(page: &'a Reply, start: &str, end: &str) -> &'a str {
    let at = page
        .text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {}", page.text))
        + start.len();
    &page.text[at..at + page.text[at..].find(end).unwrap()]
}

fn set_cookies(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Signs in through the sign-in form and returns the account page.
async fn signed_in(app: &TestApp, jar: &mut Jar, login: &str) -> Reply {
    let token = login_form(app, jar).await;
    let r = post(
        app,
        jar,
        "/ui/login",
        &[
            ("csrf_token", &token),
            ("identifier", login),
            ("password", PASSWORD),
        ],
        false,
    )
    .await;
    assert_eq!(location(&r), "/ui/account", "{}", r.text);
    get(app, jar, "/ui/account", "en").await
}

/// Turns the app on through the account page; returns the key and the step used.
async fn turn_on(app: &TestApp, jar: &mut Jar, account: &Reply) -> (String, i64) {
    let token = form_token(account);
    let setup = post(
        app,
        jar,
        "/ui/account/2fa/setup",
        &[("csrf_token", &token)],
        false,
    )
    .await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.text);
    let key = between(&setup, "id=\"totp-secret\">", "</code>").replace(' ', "");
    let step = step_now(app);
    let r = post(
        app,
        jar,
        "/ui/account/2fa/enable",
        &[("csrf_token", &token), ("code", &totp(&key, step))],
        false,
    )
    .await;
    assert_eq!(
        location(&r),
        "/ui/account?notice=two_factor_enabled",
        "{}",
        r.text
    );
    (key, step)
}

both_backends! {
    async fn setup_shows_the_secret_only_in_its_answer_and_needs_the_csrf_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uitotp").await;
        let mut jar = Jar::default();
        let account = signed_in(&app, &mut jar, &user.email).await;
        assert!(account.text.contains("Two-factor authentication") && account.text.contains("Set up an authenticator app"));
        let csp = account.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("img-src 'self';"), "no data: images elsewhere: {csp}");
        let token = form_token(&account);

        // A forged or missing token changes nothing.
        for forged in ["", "forged"] {
            let r = post(&app, &mut jar, "/ui/account/2fa/setup", &[("csrf_token", forged)], false).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert!(!r.text.contains("totp-secret"));
        }
        let r = post(&app, &mut jar, "/ui/account/2fa/enable", &[("csrf_token", "forged"), ("code", "123456")], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body["code"], "csrf_failed");

        let setup = post(&app, &mut jar, "/ui/account/2fa/setup", &[("csrf_token", &token)], false).await;
        assert_eq!(setup.status, StatusCode::OK);
        let csp = setup.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("img-src 'self' data:") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(setup.headers["cache-control"].to_str().unwrap().contains("no-store"));
        assert!(setup.text.contains("src=\"data:image/png;base64,"));
        let key = between(&setup, "id=\"totp-secret\">", "</code>").replace(' ', "");
        assert_eq!(base32(&key).len(), 20);
        assert_eq!(setup.text.matches("<li><code>").count(), 10, "ten backup codes");
        assert!(set_cookies(&setup).iter().all(|c| !c.contains(&key)), "the key is in no cookie");

        // A wrong first code: the form again (without the key), with a way to start over.
        let wrong = totp(&key, step_now(&app) + 5);
        let r = post(&app, &mut jar, "/ui/account/2fa/enable", &[("csrf_token", &token), ("code", &wrong)], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("Incorrect code") && !r.text.contains(&key) && r.text.contains("Start again"), "{}", r.text);
        let r = post(&app, &mut jar, "/ui/account/2fa/enable", &[("csrf_token", &token), ("code", "12a456")], true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["code"], "invalid_code_format");
        assert_eq!(r.body["message"], "Enter the 6-digit code.");
        let r = post(&app, &mut jar, "/ui/account/2fa/enable", &[("csrf_token", &token), ("code", &totp(&key, step_now(&app)))], false).await;
        assert_eq!(location(&r), "/ui/account?notice=two_factor_enabled");
        let account = get(&app, &mut jar, "/ui/account", "pt-BR").await;
        assert!(account.text.contains("Ativada") && account.text.contains("10 códigos de backup restantes"), "{}", account.text);
        // Enabled: setting up again is refused on the account page.
        let r = post(&app, &mut jar, "/ui/account/2fa/setup", &[("csrf_token", &token)], false).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.text.contains("Two-factor authentication is already on.") && !r.text.contains("totp-secret"));
    }

    async fn the_second_step_page_signs_in_and_its_token_stays_in_an_httponly_cookie(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uimfa").await;
        let mut jar = Jar::default();
        let account = signed_in(&app, &mut jar, &user.email).await;
        let (key, step) = turn_on(&app, &mut jar, &account).await;
        let token = form_token(&get(&app, &mut jar, "/ui/account", "en").await);
        post(&app, &mut jar, "/ui/logout", &[("csrf_token", &token)], false).await;

        let token = login_form(&app, &mut jar).await;
        let r = post(&app, &mut jar, "/ui/login", &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], false).await;
        assert_eq!(location(&r), "/ui/mfa");
        assert!(jar.get("porteiro-session").is_none(), "no session before the second step");
        let mfa = set_cookies(&r).into_iter().find(|c| c.starts_with("porteiro-mfa=")).expect("the mfa cookie");
        assert!(mfa.contains("HttpOnly") && mfa.contains("SameSite=Lax") && mfa.contains("Max-Age=300"), "{mfa}");
        let mfa_token = jar.get("porteiro-mfa").unwrap();
        // The token is the second step's alone: never a bearer token.
        assert_eq!(app.me_status(&mfa_token).await, StatusCode::UNAUTHORIZED);

        let page = get(&app, &mut jar, "/ui/mfa", "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("autocomplete=\"one-time-code\"") && page.text.contains("inputmode=\"numeric\""));
        assert!(page.text.contains("href=\"/ui/mfa?method=backup_code\""));
        assert!(!page.text.contains("/ui/mfa/resend"), "no email offered to an account with an app");
        assert!(!page.text.contains(&mfa_token));
        let token = form_token(&page);
        let backup = get(&app, &mut jar, "/ui/mfa?method=backup_code", "en").await;
        assert!(backup.text.contains("name=\"backup_code\"") && !backup.text.contains("name=\"code\""));
        let email = get(&app, &mut jar, "/ui/mfa?method=email", "en").await;
        assert!(email.text.contains("name=\"method\" value=\"totp\""), "a method not offered falls back to the app");

        // CSRF first: a forged token spends nothing.
        let code = totp(&key, step + 1);
        let r = post(&app, &mut jar, "/ui/mfa", &[("csrf_token", "forged"), ("method", "totp"), ("code", &code)], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("This form has expired"));
        // A wrong code: the page again, generic; the enhanced form gets the same as JSON.
        let r = post(&app, &mut jar, "/ui/mfa", &[("csrf_token", &token), ("method", "totp"), ("code", &totp(&key, step + 9))], false).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("Incorrect code") && r.text.contains("aria-invalid=\"true\""), "{}", r.text);
        let r = post(&app, &mut jar, "/ui/mfa", &[("csrf_token", &token), ("method", "backup_code"), ("backup_code", "zzzz-zzzz-zzzz")], true).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "invalid_code");
        assert_eq!(r.body["field"], "backup_code");

        let r = post(&app, &mut jar, "/ui/mfa", &[("csrf_token", &token), ("method", "totp"), ("code", &code)], false).await;
        assert_eq!(location(&r), "/ui/account", "{}", r.text);
        let cookies = set_cookies(&r);
        assert!(cookies.iter().any(|c| c.starts_with("porteiro-session=") && c.contains("HttpOnly")), "{cookies:?}");
        assert!(cookies.iter().any(|c| c.starts_with("porteiro-csrf=")));
        assert!(cookies.iter().any(|c| c.starts_with("porteiro-mfa=;") && c.contains("Max-Age=0")), "{cookies:?}");
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        assert_eq!(account.status, StatusCode::OK);
        assert!(account.text.contains("This device"));

        // The spent token cannot be replayed: back to sign in, with a message.
        jar.0.insert("porteiro-mfa".to_owned(), mfa_token);
        let r = post(&app, &mut jar, "/ui/mfa", &[("csrf_token", &form_token(&account)), ("method", "totp"), ("code", &totp(&key, step + 2))], false).await;
        assert_eq!(location(&r), "/ui/login?notice=mfa_expired");
        assert!(jar.get("porteiro-mfa").is_none());
        let r = get(&app, &mut Jar::default(), "/ui/login?notice=mfa_expired", "pt-BR").await;
        assert!(r.text.contains("Seu login expirou"));
        // No cookie at all: sign-in.
        let r = get(&app, &mut jar, "/ui/mfa", "en").await;
        assert_eq!(location(&r), "/ui/login");
    }

    async fn five_wrong_codes_end_the_second_step(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uimfadead").await;
        let mut jar = Jar::default();
        let account = signed_in(&app, &mut jar, &user.email).await;
        let (key, step) = turn_on(&app, &mut jar, &account).await;
        let mut fresh = Jar::default();
        let token = login_form(&app, &mut fresh).await;
        let r = post(&app, &mut fresh, "/ui/login", &[("csrf_token", &token), ("identifier", &user.email), ("password", PASSWORD)], false).await;
        assert_eq!(location(&r), "/ui/mfa");
        for i in 0..4 {
            let r = post(&app, &mut fresh, "/ui/mfa", &[("csrf_token", &token), ("method", "totp"), ("code", &totp(&key, step + 10 + i))], true).await;
            assert_eq!(r.body["code"], "invalid_code", "attempt {i}");
            assert!(r.body.get("redirect").is_none_or(serde_json::Value::is_null));
        }
        let r = post(&app, &mut fresh, "/ui/mfa", &[("csrf_token", &token), ("method", "totp"), ("code", &totp(&key, step + 20))], true).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "invalid_mfa_token");
        assert_eq!(r.body["redirect"], "/ui/login?notice=mfa_expired");
        assert!(fresh.get("porteiro-mfa").is_none());
    }

    async fn turning_off_and_new_codes_need_the_password_and_a_code(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uimfaoff").await;
        let mut jar = Jar::default();
        let account = signed_in(&app, &mut jar, &user.email).await;
        let token = form_token(&account);
        let setup = post(&app, &mut jar, "/ui/account/2fa/setup", &[("csrf_token", &token)], false).await;
        let key = between(&setup, "id=\"totp-secret\">", "</code>").replace(' ', "");
        let codes: Vec<String> = setup.text.match_indices("<li><code>")
            .map(|(i, _)| setup.text[i + 10..i + 24].to_owned())
            .collect();
        let r = post(&app, &mut jar, "/ui/account/2fa/enable", &[("csrf_token", &token), ("code", &totp(&key, step_now(&app)))], false).await;
        assert_eq!(location(&r), "/ui/account?notice=two_factor_enabled");

        let r = post(&app, &mut jar, "/ui/account/2fa/backup-codes", &[("csrf_token", &token), ("password", "Wrong-pass-1"), ("code", &codes[0])], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("The current password is incorrect."));
        let r = post(&app, &mut jar, "/ui/account/2fa/backup-codes", &[("csrf_token", &token), ("password", PASSWORD), ("code", &codes[0])], false).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.text.matches("<li><code>").count(), 10);
        assert!(!r.text.contains(&codes[1]));
        // The old set is void: turning off with one of its codes fails; with a new one it works.
        let r = post(&app, &mut jar, "/ui/account/2fa/disable", &[("csrf_token", &token), ("password", PASSWORD), ("code", &codes[1])], true).await;
        assert_eq!(r.body["code"], "invalid_code");
        let r = post(&app, &mut jar, "/ui/account/2fa/disable", &[("csrf_token", "forged"), ("password", PASSWORD), ("code", &codes[1])], true).await;
        assert_eq!(r.body["code"], "csrf_failed");
        let step = step_now(&app) + 1;
        let r = post(&app, &mut jar, "/ui/account/2fa/disable", &[("csrf_token", &token), ("password", PASSWORD), ("code", &totp(&key, step))], false).await;
        assert_eq!(location(&r), "/ui/account?notice=two_factor_disabled", "{}", r.text);
        let account = get(&app, &mut jar, "/ui/account?notice=two_factor_disabled", "en").await;
        assert!(account.text.contains("Two-factor authentication is off.") && account.text.contains("Set up an authenticator app"));
        let r = post(&app, &mut jar, "/ui/account/2fa/disable", &[("csrf_token", &token), ("password", PASSWORD), ("code", "123456")], true).await;
        assert_eq!(r.body["code"], "mfa_not_enabled");
    }
}

/// Malformed, huge or foreign input on the new forms: a 4xx or a way back to sign-in, never a
/// 5xx, and nothing counted. Storage plays no part: SQLite alone.
#[tokio::test]
async fn hostile_input_on_the_two_factor_forms_is_refused_cleanly() {
    let app = spawn_app(crate::helpers::Backend::Sqlite).await;
    let user = app.register("uimfahostile").await;
    let mut jar = Jar::default();
    let account = signed_in(&app, &mut jar, &user.email).await;
    let (_key, _step) = turn_on(&app, &mut jar, &account).await;
    let token = form_token(&get(&app, &mut jar, "/ui/account", "en").await);
    let huge = "9".repeat(20_000);
    for fields in [
        vec![("password", PASSWORD), ("code", huge.as_str())],
        vec![("password", huge.as_str()), ("code", "123456")],
        vec![("code", "123456")],
    ] {
        for path in [
            "/ui/account/2fa/disable",
            "/ui/account/2fa/backup-codes",
            "/ui/account/2fa/enable",
        ] {
            let mut all = vec![("csrf_token", token.as_str())];
            all.extend(fields.iter().copied());
            let r = post(&app, &mut jar, path, &all, true).await;
            assert!(
                r.status.is_client_error(),
                "{path}: {} {}",
                r.status,
                r.text
            );
        }
    }

    let mut fresh = Jar::default();
    let token = login_form(&app, &mut fresh).await;
    let r = post(
        &app,
        &mut fresh,
        "/ui/login",
        &[
            ("csrf_token", &token),
            ("identifier", &user.email),
            ("password", PASSWORD),
        ],
        false,
    )
    .await;
    assert_eq!(location(&r), "/ui/mfa");
    // (The wrong 20,000-character passwords above counted, as any wrong password does.)
    let failures = app
        .auth
        .find_user(&user.email)
        .await
        .unwrap()
        .unwrap()
        .failed_login_attempts;
    for (method, field, value) in [
        ("totp", "code", huge.as_str()),
        ("backup_code", "backup_code", huge.as_str()),
        ("email", "code", "123456"),
        ("../../etc", "code", "12 34 56 78"),
        ("totp", "code", "١٢٣٤٥٦"),
        ("backup_code", "backup_code", "<script>alert(1)</script>"),
    ] {
        let r = post(
            &app,
            &mut fresh,
            "/ui/mfa",
            &[("csrf_token", &token), ("method", method), (field, value)],
            false,
        )
        .await;
        assert!(
            r.status.is_client_error(),
            "{method}: {} {}",
            r.status,
            r.text
        );
        assert!(
            !r.text.contains("<script>alert"),
            "input is never echoed unescaped"
        );
    }
    // None of that was a wrong code: the second step is alive and the account not locked.
    let page = get(&app, &mut fresh, "/ui/mfa", "en").await;
    assert_eq!(page.status, StatusCode::OK);
    let after = app
        .auth
        .find_user(&user.email)
        .await
        .unwrap()
        .unwrap()
        .failed_login_attempts;
    assert_eq!(after, failures);

    // Foreign or absurd cookies: back to sign-in.
    for cookie in ["x".repeat(300), "not a token".to_owned(), "A".repeat(43)] {
        let mut odd = fresh.clone();
        odd.0
            .insert("porteiro-mfa".to_owned(), cookie.replace(' ', "%20"));
        let r = post(
            &app,
            &mut odd,
            "/ui/mfa",
            &[
                ("csrf_token", &token),
                ("method", "totp"),
                ("code", "123456"),
            ],
            false,
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert!(location(&r).starts_with("/ui/login"));
        let r = post(
            &app,
            &mut odd,
            "/ui/mfa/resend",
            &[("csrf_token", &token)],
            true,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "invalid_mfa_token");
    }
}
