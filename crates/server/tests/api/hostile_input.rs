//! Hostile input found by the outside penetration test: confusable email addresses and
//! usernames, text an account holder chose inside security mail, forged request ids.

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, ReceivedMail, TestApp, spawn_app};

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
