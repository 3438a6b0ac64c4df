//! Hostile input found by the outside penetration test: confusable email addresses and
//! usernames, text an account holder chose inside security mail, forged request ids.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, TestApp, spawn_app};

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
