//! Hostile input found by the outside penetration test: confusable email addresses and
//! usernames, text an account holder chose inside security mail, forged request ids.

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::both_backends;
use crate::helpers::{
    Backend, Options, PASSWORD, ReceivedMail, TestApp, spawn_app, spawn_app_with,
};

async fn register(app: &TestApp, username: &str, email: &str) -> crate::helpers::Reply {
    app.post(
        "/api/auth/register",
        json!({"username": username, "email": email, "password": PASSWORD}),
    )
    .await
}

/// The decoded text and HTML parts and the raw message, for "contains nowhere" checks.
fn every_rendering(mail: &ReceivedMail) -> [String; 3] {
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.raw.as_bytes())
        .expect("parsable mail");
    [
        mail.text(),
        parsed.body_html(0).expect("html part").into_owned(),
        mail.raw.clone(),
    ]
}

both_backends! {
    async fn one_mailbox_is_one_account_whatever_the_spelling(backend: Backend) {
        let app = spawn_app(backend).await;
        // Arrange: the punycode spelling first.
        let first = register(&app, "alice", "alice@xn--exmple-cua.test").await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert_eq!(first.data()["email"], "alice@xn--exmple-cua.test");
        // Act + Assert: the Unicode spellings of that mailbox are the same account.
        for spelling in [
            "alice@ex\u{00E4}mple.test",
            "ALICE@EX\u{00C4}MPLE.TEST",
            "alice@exa\u{0308}mple.test",
        ] {
            let r = register(&app, "alice2", spelling).await;
            assert_eq!(
                (r.status, r.body["code"].as_str()),
                (StatusCode::CONFLICT, Some("email_taken")),
                "{spelling:?}: {}",
                r.text
            );
        }
        // Sign-in and recovery find it under the user's own spelling.
        app.sign_in_as("Alice@Ex\u{00C4}mple.test", PASSWORD).await;
        let r = app
            .post("/api/auth/login", json!({"username_or_email": "alice@exa\u{0308}mple.test", "password": PASSWORD}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.post("/api/auth/forgot-password", json!({"email": "alice@ex\u{00E4}mple.test"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        app.smtp.wait_for("alice@xn--exmple-cua.test", 1).await;
    }

    async fn look_alike_addresses_and_usernames_are_refused(backend: Backend) {
        let app = spawn_app(backend).await;
        let alice = register(&app, "alice", "alice@example.test").await;
        assert_eq!(alice.status, StatusCode::CREATED, "{}", alice.text);
        let users_before = app.auth.store().count_users().await.unwrap();
        for (n, email) in [
            "al\u{200B}ice@example.test",        // zero-width space
            "\u{202E}alice@example.test",        // right-to-left override
            "alice\u{2066}@example.test",        // bidi isolate
            "\u{0430}lice@example.test",         // Cyrillic а
            "\u{FF41}lice@example.test",         // fullwidth ａ
            "alic\u{0335}e@example.test",        // combining short stroke overlay
            "ali\u{0307}ce@example.test",        // i + combining dot above
            "alice@ex\u{0430}mple.test",         // Cyrillic а in the domain
            "alice@xn--exmple-4nf.test",         // … spelled as punycode
            "alice@\u{FF45}xample.test",         // fullwidth ｅ in the domain
            "j\u{00F6}rg@example.test",          // non-ASCII local part (EMAIL_ALLOW_UNICODE off)
        ]
        .into_iter()
        .enumerate()
        {
            let r = register(&app, &format!("lookalike{n}"), email).await;
            assert_eq!(
                (r.status, r.body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_email")),
                "{email:?}: {}",
                r.text
            );
        }
        for username in ["\u{0430}lice", "\u{FF41}lice", "al\u{200B}ice", "al\u{00EF}ce", "alice\u{202E}"] {
            let r = register(&app, username, "fresh@example.test").await;
            assert_eq!(
                (r.status, r.body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_username")),
                "{username:?}: {}",
                r.text
            );
        }
        assert_eq!(app.auth.store().count_users().await.unwrap(), users_before, "nothing was created");
        // Odd sign-in identifiers are unknown accounts, never a server error.
        for login in ["\u{202E}alice@example.test", "alice@\u{0}", "a@xn--", "@", "\u{0130}@\u{0130}"] {
            let r = app.post("/api/auth/login", json!({"username_or_email": login, "password": PASSWORD})).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{login:?}: {}", r.text);
        }
        let r = app.post("/api/auth/forgot-password", json!({"email": "\u{202E}alice@example.test"})).await;
        assert_eq!(r.body["code"], "invalid_email", "{}", r.text);
    }

    async fn unicode_local_parts_are_accepted_and_delivered_when_allowed(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![("EMAIL_ALLOW_UNICODE", "true".to_owned())] }).await;
        let r = register(&app, "jorg", "J\u{00D6}RG@ex\u{00E4}mple.test").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.data()["email"], "j\u{00F6}rg@xn--exmple-cua.test");
        let mixed = register(&app, "jorg2", "j\u{00F6}rg\u{0430}@example.test").await;
        assert_eq!(mixed.body["code"], "invalid_email", "mixed scripts stay refused: {}", mixed.text);
        // The mailer accepts what registration accepted (the sink speaks SMTPUTF8).
        app.sign_in_as("jo\u{0308}rg@xn--exmple-cua.test", PASSWORD).await;
        app.post("/api/auth/forgot-password", json!({"email": "j\u{00F6}rg@ex\u{00E4}mple.test"})).await;
        app.smtp.wait_for("j\u{00F6}rg@xn--exmple-cua.test", 1).await;
    }

    async fn security_mail_carries_no_text_the_account_holder_chose(backend: Backend) {
        let app = spawn_app(backend).await;
        // Arrange: anyone can register under someone else's address and ask for a reset.
        let r = app.post("/api/auth/register", json!({
            "username": "verify-at-evil.test", "email": "victim@example.com", "password": PASSWORD,
            "first_name": "URGENT - verify at https://evil.test/x", "last_name": "Call the Helpdesk",
        })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Act: the reset mail, then the password-changed notice.
        app.post("/api/auth/forgot-password", json!({"email": "victim@example.com"})).await;
        let reset = app.smtp.wait_for("victim@example.com", 1).await.remove(0);
        let link = reset.link();
        let token = link.split("token=").nth(1).unwrap();
        let done = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.text);
        let notice = app.smtp.wait_for("victim@example.com", 2).await.remove(1);
        // Assert
        for (kind, mail) in [("reset", &reset), ("password changed", &notice)] {
            for rendering in every_rendering(mail) {
                for planted in ["URGENT", "evil.test", "verify", "Helpdesk"] {
                    assert!(!rendering.contains(planted), "{kind} mail contains {planted:?}:\n{rendering}");
                }
            }
            assert!(mail.text().starts_with("Hello,"), "{kind}: {}", mail.text());
        }
        assert!(reset.text().contains("https://id.example.com/ui/reset-password?token="));
    }
}

/// Sends `head` (request line and headers, without the blank line) on a fresh connection and
/// returns the response head.
async fn raw_request(app: &TestApp, head: &[u8]) -> String {
    let addr = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

fn request_id_of(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id in\n{head}"))
}

/// The `x-request-id` of a response is always one the server made, whatever the client sent
/// (pentest finding 6). Storage plays no part, so SQLite alone.
#[tokio::test]
async fn request_ids_are_always_generated_by_the_server() {
    let app = spawn_app(Backend::Sqlite).await;
    let long = "x".repeat(10 * 1024);
    let cases: [Vec<u8>; 5] = [
        b"X-Request-Id: abc\r\nforged: 1".to_vec(),
        b"X-Request-Id: abc request_id=forged level=ERROR".to_vec(),
        b"X-Request-Id: \xe2\x80\xae\xff\xfe".to_vec(),
        format!("X-Request-Id: {long}").into_bytes(),
        b"X-Request-Id: one\r\nX-Request-Id: two".to_vec(),
    ];
    let mut seen = std::collections::HashSet::new();
    for header in cases {
        let mut head =
            b"GET /api/health HTTP/1.1\r\nHost: porteiro.test\r\nConnection: close\r\n".to_vec();
        head.extend_from_slice(&header);
        let response = raw_request(&app, &head).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let id = request_id_of(&response);
        assert_eq!(id.len(), 32, "{response}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert_eq!(response.matches("x-request-id").count(), 1, "{response}");
        assert!(seen.insert(id.to_owned()), "ids are distinct");
    }
}
