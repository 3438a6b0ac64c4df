//! Connections, over real sockets: the head and idle deadlines close slow and silent clients,
//! the caps keep one address (and everyone together) from holding every descriptor, the real
//! binary keeps serving under a tiny descriptor limit, and a refusal that leaves a request body
//! unread does not break the keep-alive connection it came on.
//!
//! Deadlines are waited for with an upper bound (read until the server closes, or give up);
//! nothing sleeps to synchronise. The client addresses 127.0.0.x are all loopback on Linux.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{Backend, Options, TestApp, spawn_app_with};

/// Head deadline 1 s, idle deadline 3 s.
fn short_deadlines(extra: &[(&'static str, &str)]) -> Options {
    let mut env = vec![
        ("HEADER_READ_TIMEOUT", "1".to_owned()),
        ("IDLE_TIMEOUT", "3".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options { env }
}

fn socket_addr(app: &TestApp) -> SocketAddr {
    let authority = app.url.split("://").nth(1).unwrap();
    authority.parse().unwrap()
}

/// A connection from the loopback address `source` (any 127.0.0.x).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// How a connection ended.
#[derive(Debug)]
struct Closed {
    /// From the call to the close.
    after: Duration,
    /// From the last byte received (or the call) to the close.
    quiet: Duration,
    /// What the server sent before closing.
    received: Vec<u8>,
}

/// Reads until the server closes the connection (end of stream or reset), for at most `limit`.
/// `None` when it was still open then.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Closed> {
    let start = Instant::now();
    let mut last = start;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await;
        match read {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => {
                return Some(Closed {
                    after: start.elapsed(),
                    quiet: last.elapsed(),
                    received,
                });
            }
            Ok(Ok(n)) => {
                received.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
        }
    }
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body) and returns its status and
/// head; `None` if the connection closes first. Gives up (panics) after 10 s.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, head));
            }
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response within 10 s");
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /api/health` on an open connection, kept alive; the status, or `None` if the server
/// closed the connection instead of answering.
async fn health_on(stream: &mut TcpStream) -> Option<u16> {
    let request = b"GET /api/health HTTP/1.1\r\nHost: porteiro.test\r\n\r\n";
    stream.write_all(request).await.ok()?;
    read_response(stream).await.map(|(status, _)| status)
}

/// A new connection from `source` that the server serves (`/api/health` answers 200 on it); the
/// connection stays open and keeps its slot.
async fn served_from(source: &str, to: SocketAddr) -> TcpStream {
    let mut stream = connect_from(source, to).await;
    assert_eq!(health_on(&mut stream).await, Some(200), "from {source}");
    stream
}

/// Asserts the server closed `stream` at once without a word: it was over a cap.
async fn assert_refused(stream: &mut TcpStream, what: &str) {
    let closed = read_until_closed(stream, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("{what}: should have been closed at once"));
    assert!(closed.received.is_empty(), "{what}: {:?}", closed.received);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_by_the_head_deadline() {
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut silent = connect_from("127.0.0.1", socket_addr(&app)).await;
    let closed = read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("the server closes a silent connection");
    assert!(
        closed.after >= Duration::from_millis(900) && closed.after < Duration::from_millis(2500),
        "closed after {:?}: the head deadline is 1 s (the idle one 3 s)",
        closed.after
    );
}

#[tokio::test]
async fn a_request_head_trickling_in_is_closed_by_the_head_deadline() {
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut slow = connect_from("127.0.0.1", socket_addr(&app)).await;
    let start = Instant::now();
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: porteiro.test\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.split();
    let mut buf = [0u8; 1024];
    // One more header byte every 300 ms: far inside the 3 s idle deadline, so only the head
    // deadline can end this.
    let mut pace = tokio::time::interval(Duration::from_millis(300));
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a trickling request head is still open after 10 s"
        );
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break start.elapsed(),
                Ok(_) => {} // hyper may answer 408 before closing
            },
            _ = pace.tick() => {
                if writer.write_all(b"a").await.is_err() {
                    break start.elapsed();
                }
            }
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}: the head deadline is 1 s"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_head_deadline() {
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut kept = connect_from("127.0.0.1", socket_addr(&app)).await;
    assert_eq!(health_on(&mut kept).await, Some(200));
    // After a response, an HTTP/1 connection has the head deadline again to send the next head.
    let closed = read_until_closed(&mut kept, Duration::from_secs(10))
        .await
        .expect("the server closes an idle keep-alive connection");
    assert!(
        closed.after >= Duration::from_millis(900) && closed.after < Duration::from_millis(2500),
        "closed {:?} after the response: the head deadline is 1 s (the idle one 3 s)",
        closed.after
    );
}

#[tokio::test]
async fn a_request_body_that_stalls_is_closed_by_the_idle_deadline() {
    // The request timeout (30 s) would be far too late: the idle deadline cuts the stall.
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut stalled = connect_from("127.0.0.1", socket_addr(&app)).await;
    stalled
        .write_all(
            b"POST /api/auth/register HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\": ",
        )
        .await
        .unwrap();
    let closed = read_until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .expect("the server closes a connection whose body stalled");
    assert!(
        closed.quiet >= Duration::from_millis(2700) && closed.quiet < Duration::from_secs(6),
        "closed after {:?} of silence: the idle deadline is 3 s",
        closed.quiet
    );
    assert!(
        closed.received.is_empty(),
        "closed without an answer, got {:?}",
        String::from_utf8_lossy(&closed.received)
    );
}

/// An HTTP/2 frame: 24-bit length, type, flags, stream id.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HTTP/2 (prior knowledge) connection that has had one request answered.
async fn http2_after_one_request(app: &TestApp) -> TcpStream {
    let mut h2 = connect_from("127.0.0.1", socket_addr(app)).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    // HEADERS, END_STREAM | END_HEADERS: GET http://x/api/health, HPACK by static table index
    // plus two literals without indexing.
    let mut block = vec![0x82, 0x86, 0x01, 0x01, b'x', 0x04, 11];
    block.extend_from_slice(b"/api/health");
    hello.extend(h2_frame(0x1, 0x5, 1, &block));
    h2.write_all(&hello).await.unwrap();
    // Read frames until the response on stream 1 has ended.
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut at = 0;
        loop {
            while data.len() >= at + 9 {
                let len = usize::from(data[at]) << 16
                    | usize::from(data[at + 1]) << 8
                    | usize::from(data[at + 2]);
                let (kind, flags) = (data[at + 3], data[at + 4]);
                let stream =
                    u32::from_be_bytes(data[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
                if data.len() < at + 9 + len {
                    break;
                }
                if kind == 0x4 && flags & 0x1 == 0 {
                    // Acknowledge the server's SETTINGS, as a client must.
                    h2.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap();
                }
                if stream == 1 && matches!(kind, 0x0 | 0x1) && flags & 0x1 != 0 {
                    return;
                }
                at += 9 + len;
            }
            let n = h2.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering");
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answered.is_ok(), "no HTTP/2 answer within 10 s");
    h2
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_by_the_idle_deadline() {
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut h2 = http2_after_one_request(&app).await;
    let closed = read_until_closed(&mut h2, Duration::from_secs(10))
        .await
        .expect("the server closes an idle HTTP/2 connection");
    assert!(
        closed.quiet >= Duration::from_millis(2500) && closed.quiet < Duration::from_secs(6),
        "closed after {:?} of silence: the idle deadline is 3 s",
        closed.quiet
    );
}

/// PING frames are traffic, but not requests: an HTTP/2 connection with no request in flight
/// is closed the idle deadline after its last response, however often the client pings.
#[tokio::test]
async fn pings_do_not_keep_an_http2_connection_without_requests_open() {
    let app = spawn_app_with(Backend::Sqlite, short_deadlines(&[])).await;
    let mut h2 = http2_after_one_request(&app).await;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        if h2
            .write_all(&h2_frame(0x6, 0, 0, b"porteiro"))
            .await
            .is_err()
        {
            break start.elapsed();
        }
        let read = tokio::time::timeout(Duration::from_millis(500), h2.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still open after 10 s of pings"
        );
    };
    assert!(
        closed_after >= Duration::from_millis(2000) && closed_after < Duration::from_secs(6),
        "closed {closed_after:?} after the answer: the idle deadline is 3 s"
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_starts_is_closed_by_the_head_deadline() {
    let dir = std::env::temp_dir().join(format!("porteiro-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let app = spawn_app_with(
        Backend::Sqlite,
        short_deadlines(&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key)]),
    )
    .await;
    assert!(app.url.starts_with("https://"));
    let mut silent = connect_from("127.0.0.1", socket_addr(&app)).await;
    let closed = read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("the server closes a connection that never says hello");
    assert!(
        closed.after >= Duration::from_millis(900) && closed.after < Duration::from_millis(2500),
        "closed after {:?}: the head deadline is 1 s",
        closed.after
    );
}

#[tokio::test]
async fn the_caps_hold_per_address_and_in_total() {
    // Arrange: 16 connections in all, 4 per address; 127.0.0.9 is a trusted proxy. Deadlines
    // long enough that nothing closes on its own during the test.
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            env: vec![
                ("MAX_CONNECTIONS", "16".to_owned()),
                ("MAX_CONNECTIONS_PER_IP", "4".to_owned()),
                ("TRUSTED_PROXIES", "127.0.0.9".to_owned()),
                ("HEADER_READ_TIMEOUT", "60".to_owned()),
                ("IDLE_TIMEOUT", "120".to_owned()),
            ],
        },
    )
    .await;
    let to = socket_addr(&app);

    // Act + assert: a flood of idle sockets from one address. The server takes them in order:
    // the first four get slots, the others are closed as soon as they are accepted.
    let mut flood = Vec::new();
    for _ in 0..10 {
        flood.push(connect_from("127.0.0.1", to).await);
    }
    for (i, stream) in flood.iter_mut().enumerate().skip(4) {
        assert_refused(stream, &format!("flood socket {i}")).await;
    }
    for stream in flood.iter_mut().take(4) {
        assert_eq!(health_on(stream).await, Some(200));
    }
    // Another client is served meanwhile.
    let mut kept = vec![served_from("127.0.0.2", to).await];
    // A trusted proxy may pass the per-address cap...
    for _ in 0..6 {
        kept.push(served_from("127.0.0.9", to).await);
    }
    // ...up to the total, which is reached here: 4 + 1 + 6 + 5 = 16.
    for _ in 0..4 {
        kept.push(served_from("127.0.0.3", to).await);
    }
    kept.push(served_from("127.0.0.4", to).await);
    for source in ["127.0.0.5", "127.0.0.9"] {
        let mut over = connect_from(source, to).await;
        assert_refused(&mut over, &format!("{source} over the total")).await;
    }
    // A closed connection gives its slot back.
    drop(kept.pop());
    let start = Instant::now();
    loop {
        let mut next = connect_from("127.0.0.5", to).await;
        if health_on(&mut next).await == Some(200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the slot of a closed connection was not given back"
        );
    }
}

/// The first line of the child's JSON log with this message, waiting up to 30 s for it.
fn log_line(lines: &std::sync::mpsc::Receiver<String>, message: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {message:?} line in the server's log within 30 s"));
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && value["message"] == message
        {
            return value;
        }
    }
}

/// Stops the child process when the test ends, however it ends.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary on a fresh SQLite database under `prlimit --nofile=LIMIT:LIMIT` (soft and
/// hard, so it cannot raise them), and its JSON log lines.
fn spawn_binary_with_descriptors(limit: u32) -> (Reaper, std::sync::mpsc::Receiver<String>) {
    let probe = std::process::Command::new("prlimit")
        .arg("--version")
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs prlimit (Debian package util-linux)"
    );
    let dir = std::env::temp_dir().join(format!("porteiro-fd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new("prlimit")
        .args([
            &format!("--nofile={limit}:{limit}"),
            "--",
            env!("CARGO_BIN_EXE_porteiro"),
            "serve",
        ])
        .env_clear()
        .current_dir(&dir)
        .env("DATA_DIR", &dir)
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("EMAIL_ENABLED", "false")
        .env("LOG_LEVEL", "info")
        .env("LOG_FORMAT", "json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (Reaper(child), lines)
}

/// The address in the child's `listening` log line.
fn listening_addr(lines: &std::sync::mpsc::Receiver<String>) -> SocketAddr {
    let listening = log_line(lines, "listening");
    listening["addr"]
        .as_str()
        .and_then(|a| a.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{listening}"))
}

#[tokio::test]
async fn under_a_small_descriptor_limit_an_idle_flood_does_not_stop_other_clients() {
    // Arrange: the real binary with 128 descriptors.
    let (mut server, lines) = spawn_binary_with_descriptors(128);
    let limits = log_line(&lines, "connection limits");
    assert_eq!(limits["descriptor_limit"], 128, "{limits}");
    // Half the descriptors kept back for the database and the rest, a quarter of the slots per address.
    assert_eq!(
        (
            limits["max_connections"].as_u64(),
            limits["max_connections_per_ip"].as_u64()
        ),
        (Some(64), Some(16)),
        "{limits}"
    );
    let to = listening_addr(&lines);

    // Act: 200 idle sockets from one address, more than the process has descriptors.
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(connect_from("127.0.0.1", to).await);
    }

    // Assert: another client is served, twice over, and the server is still running.
    for _ in 0..2 {
        let mut other = connect_from("127.0.0.2", to).await;
        assert_eq!(health_on(&mut other).await, Some(200));
    }
    // The flood's first sockets got slots and are served too.
    assert_eq!(health_on(&mut flood[0]).await, Some(200));
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited under the flood"
    );
    drop(flood);
}

#[tokio::test]
async fn refusals_that_leave_a_body_unread_keep_the_connection_usable() {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await;
    let to = socket_addr(&app);
    // Arrange: a refusal that never reads the body (no credentials), with the body sent a
    // moment after the head, as a slow client or a busy network would.
    let body = json!({"old_password": "x", "new_password": "y".repeat(1000)}).to_string();
    let head = format!(
        "POST /change-password HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = connect_from("127.0.0.1", to).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // pacing the client, not waiting for the server
    stream.write_all(body.as_bytes()).await.unwrap();
    // Act + assert: the refusal, then a second request on the same connection.
    let (status, head) = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status, 401, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert_eq!(
        health_on(&mut stream).await,
        Some(200),
        "the connection was closed after the refusal"
    );
}

#[tokio::test]
async fn many_refusals_with_large_unread_bodies_keep_one_connection_usable() {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await;
    let mut stream = connect_from("127.0.0.1", socket_addr(&app)).await;
    // The whole request in one write, with a body larger than one read of the server's, many
    // times over on one connection: the compact API's and the bearer check's refusals in turn.
    let body = json!({"refresh_token": "r".repeat(48 * 1024)}).to_string();
    for i in 0..50 {
        let (path, auth) = if i % 2 == 0 {
            ("/change-password", "")
        } else {
            (
                "/api/auth/token/rotate",
                "Authorization: Bearer not-a-token\r\n",
            )
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: porteiro.test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_response(&mut stream).await.map(|(status, _)| status);
        assert_eq!(answer, Some(401), "refusal #{i}");
        assert_eq!(
            health_on(&mut stream).await,
            Some(200),
            "after refusal #{i}"
        );
    }
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_connection_close() {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await;
    let to = socket_addr(&app);
    // Declared in Content-Length: refused before anything is read.
    let mut big = connect_from("127.0.0.1", to).await;
    big.write_all(b"POST /auth HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n{")
        .await
        .unwrap();
    let (status, head) = read_response(&mut big).await.expect("an answer");
    assert_eq!(status, 413, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut chunked = connect_from("127.0.0.1", to).await;
    // 64 KiB in one chunk, then one byte too many (and no final chunk).
    let over = format!(
        "POST /auth HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n{}\r\n1\r\na\r\n",
        "a".repeat(0x10000)
    );
    chunked.write_all(over.as_bytes()).await.unwrap();
    let (status, head) = read_response(&mut chunked).await.expect("an answer");
    assert_eq!(status, 413, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
}

#[tokio::test]
async fn a_pooled_client_sees_no_connection_errors_after_refusals() {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await;
    // One client, one connection pool; a body large enough (48 KiB, within the 64 KiB limit)
    // to arrive over more than one read.
    let body =
        json!({"refresh_token": "r".repeat(48 * 1024), "old_password": "x", "new_password": "y"});
    let mut failures = Vec::new();
    for i in 0..200 {
        let refusals = [
            // 401 from the bearer check, before the JSON body is read.
            app.client
                .post(format!("{}/api/auth/token/rotate", app.url))
                .bearer_auth("not-a-token")
                .json(&body),
            // 401 from the compact API without credentials.
            app.client
                .post(format!("{}/change-password", app.url))
                .json(&body),
        ];
        let health = app.client.get(format!("{}/api/health", app.url));
        let expected = [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::OK,
        ];
        for (request, expected) in refusals.into_iter().chain([health]).zip(expected) {
            // Each answer is read to its end, so its connection goes back to the pool.
            let answer = match request.send().await {
                Ok(r) => {
                    r.status().to_string()
                        + &r.text()
                            .await
                            .map_or_else(|e| e.to_string(), |_| String::new())
                }
                Err(e) => e.to_string(),
            };
            if answer != expected.to_string() {
                failures.push(format!("#{i}: expected {expected}, got {answer}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
}

#[tokio::test]
async fn shutdown_finishes_requests_under_way_closes_idle_connections_and_returns() {
    // Arrange: an application of our own, to hold its shutdown trigger.
    let dir = std::env::temp_dir().join(format!("porteiro-stop-{}", uuid::Uuid::new_v4().simple()));
    let env: std::collections::HashMap<String, String> = [
        ("DATA_DIR", dir.to_string_lossy().into_owned()),
        ("SERVER_PORT", "0".to_owned()),
        ("ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD.to_owned()),
        ("ARGON2_MEMORY_KIB", "256".to_owned()),
        ("ARGON2_ITERATIONS", "1".to_owned()),
        ("EMAIL_ENABLED", "false".to_owned()),
        ("LOG_LEVEL", "off".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = porteiro::config::Config::from_env(&env).unwrap();
    let app = porteiro::app::Application::build(config).await.unwrap();
    let to = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut kept = connect_from("127.0.0.1", to).await;
    assert_eq!(health_on(&mut kept).await, Some(200));
    // A request under way: the server has its head (it says so with 100 Continue when it starts
    // reading the body) and part of its body.
    let body = br#"{"login": "nobody", "password": "wrong-password"}"#;
    let mut busy = connect_from("127.0.0.1", to).await;
    let head = format!(
        "POST /auth HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(
        read_response(&mut busy).await.map(|(status, _)| status),
        Some(100)
    );
    busy.write_all(&body[..10]).await.unwrap();

    // Act: stop, and once the listener is gone, send the rest of the body.
    stop.send(()).unwrap();
    let start = Instant::now();
    while TcpStream::connect(to).await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(5), "still accepting");
    }
    busy.write_all(&body[10..]).await.unwrap();

    // Assert: the request under way is answered (the compact API refuses bad credentials with
    // 403), then its connection closes; the idle keep-alive connection is closed; the server
    // returns.
    let answer = read_response(&mut busy).await.map(|(status, _)| status);
    assert_eq!(answer, Some(403));
    assert!(
        read_until_closed(&mut busy, Duration::from_secs(5))
            .await
            .is_some()
    );
    let closed = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the idle connection is still open");
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "run_until should return soon after shutdown: {finished:?}"
    );
}

#[tokio::test]
async fn when_descriptors_run_out_accept_errors_are_logged_once_a_second_and_survived() {
    // Arrange: so few descriptors (24) that the reserve for everything else (half of them)
    // cannot cover what the process already holds (about 17 when idle), and the connections the
    // caps admit (12) use up the rest.
    let (mut server, lines) = spawn_binary_with_descriptors(24);
    let to = listening_addr(&lines);

    // Act: idle sockets from eleven addresses, three each.
    let mut flood = Vec::new();
    for host in 1..=11 {
        for _ in 0..3 {
            flood.push(connect_from(&format!("127.0.0.{host}"), to).await);
        }
    }

    // Assert: accept fails (EMFILE) and says so; over the next 2.5 s it keeps failing, ten times
    // a second, but logs one line a second, counting the ones it left out.
    let first = log_line(&lines, "cannot accept a connection; retrying");
    assert!(
        first["error"]
            .as_str()
            .unwrap_or("")
            .contains("os error 24"),
        "{first}"
    );
    let window = Instant::now() + Duration::from_millis(2500);
    let mut later = Vec::new();
    while let Some(left) = window.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && value["message"] == "cannot accept a connection; retrying"
        {
            later.push(value);
        }
    }
    assert!(
        (1..=3).contains(&later.len()),
        "expected one line a second, got {}",
        later.len()
    );
    assert!(
        later.iter().all(|l| l["skipped"].as_u64() >= Some(5)),
        "{later:?}"
    );
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");

    // Once the flood lets go, the server serves again.
    drop(flood);
    let start = Instant::now();
    loop {
        let mut client = connect_from("127.0.0.60", to).await;
        if health_on(&mut client).await == Some(200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server did not recover after the flood"
        );
    }
}

/// Many half-sent bodies from one address cannot pin the server's memory: each body reserves its
/// size from a per-address share (2 MiB) before it is read, so the 33rd 64 KiB body from one
/// address is refused at once with `503`, while another address is served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_bodies_from_one_address_cannot_pin_the_servers_memory() {
    let app = spawn_app_with(Backend::Sqlite, Options::default()).await;
    let to = socket_addr(&app);
    let body_head = |len: usize| {
        format!(
            "POST /auth HTTP/1.1\r\nHost: porteiro.test\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut stream = connect_from("127.0.0.1", to).await;
        stream
            .write_all(body_head(65_000).as_bytes())
            .await
            .unwrap();
        stream.write_all(&[b' '; 1000]).await.unwrap();
        held.push(stream);
    }
    // The share is spent only once the server has read those heads; wait for a refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        let mut extra = connect_from("127.0.0.1", to).await;
        extra.write_all(body_head(65_000).as_bytes()).await.unwrap();
        extra.write_all(&[b' '; 1000]).await.unwrap();
        let answered =
            tokio::time::timeout(Duration::from_millis(500), read_response(&mut extra)).await;
        if let Ok(Some((status, head))) = answered {
            break (status, head);
        }
        held.push(extra);
        assert!(
            Instant::now() < deadline,
            "no refusal after {} half-sent bodies",
            held.len()
        );
    };
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert!(
        refusal.1.to_ascii_lowercase().contains("retry-after"),
        "{}",
        refusal.1
    );
    // Another address still gets its bodies read and answered.
    let mut other = connect_from("127.0.0.2", to).await;
    let body = json!({"login": "nobody", "password": "Wrong-pass-1"}).to_string();
    other
        .write_all(body_head(body.len()).as_bytes())
        .await
        .unwrap();
    other.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut other).await.map(|r| r.0), Some(403));
    // Once the held requests end, the share is given back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from("127.0.0.1", to).await;
        again
            .write_all(body_head(body.len()).as_bytes())
            .await
            .unwrap();
        again.write_all(body.as_bytes()).await.unwrap();
        if read_response(&mut again).await.map(|r| r.0) == Some(403) {
            break;
        }
        assert!(Instant::now() < deadline, "the share was not given back");
        tokio::task::yield_now().await;
    }
}
