//! Test harness: [`spawn_app`], [`TestApp`] with one method per kind of call, an in-process SMTP
//! sink that really speaks SMTP, and the [`both_backends!`] macro.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use porteiro::app::Application;
use porteiro::config::Config;
use porteiro_core::Auth;
use porteiro_core::clock::Clock;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// Runs a test body once per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($backend: $crate::helpers::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() { run($crate::helpers::Backend::Sqlite).await }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if std::env::var("TEST_POSTGRES_URL").is_err() {
                        eprintln!("TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant");
                        return;
                    }
                    run($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on the `TEST_POSTGRES_URL` server.
    Postgres,
}

/// A clock that follows the wall clock plus an adjustable offset, so tests can jump past expiry.
#[derive(Debug, Default)]
pub struct ShiftedClock(Mutex<chrono::Duration>);

impl ShiftedClock {
    /// Moves time forward.
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

/// A received mail.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Raw message.
    pub raw: String,
}

impl ReceivedMail {
    /// The decoded plain-text body.
    pub fn text(&self) -> String {
        let msg = mail_parser::MessageParser::default()
            .parse(self.raw.as_bytes())
            .expect("parsable mail");
        msg.body_text(0).expect("text part").into_owned()
    }

    /// The decoded subject.
    pub fn subject(&self) -> String {
        let msg = mail_parser::MessageParser::default()
            .parse(self.raw.as_bytes())
            .expect("parsable mail");
        msg.subject().unwrap_or_default().to_owned()
    }

    /// Whether this is an address-confirmation mail (every registration sends one).
    pub fn is_confirmation(&self) -> bool {
        self.text().contains("/ui/verify-email?token=")
    }

    /// The first link in the text body.
    pub fn link(&self) -> String {
        let text = self.text();
        text.split_whitespace()
            .find(|w| w.starts_with("http"))
            .expect("a link")
            .to_owned()
    }
}

/// A minimal SMTP server that accepts everything and records it.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    /// Port it listens on.
    pub port: u16,
    inbox: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    /// Starts the sink on a random loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let shared = inbox.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let inbox = shared.clone();
                tokio::spawn(async move {
                    let _ = serve_smtp(socket, inbox).await;
                });
            }
        });
        Self { port, inbox }
    }

    /// Mail received so far, except address-confirmation mails: every registration sends one,
    /// and tests of other mail need not skip it (see [`SmtpSink::wait_for_confirmation`]).
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.all_messages()
            .into_iter()
            .filter(|m| !m.is_confirmation())
            .collect()
    }

    /// Every mail received so far.
    pub fn all_messages(&self) -> Vec<ReceivedMail> {
        self.inbox.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` messages for `to` have arrived and returns them
    /// (address-confirmation mails left out, as in [`SmtpSink::messages`]).
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<ReceivedMail> {
        self.wait_until(to, n, false).await
    }

    /// Waits (up to 10 s) until `n` address-confirmation mails for `to` have arrived and
    /// returns them.
    pub async fn wait_for_confirmation(&self, to: &str, n: usize) -> Vec<ReceivedMail> {
        self.wait_until(to, n, true).await
    }

    async fn wait_until(&self, to: &str, n: usize, confirmations: bool) -> Vec<ReceivedMail> {
        for _ in 0..200 {
            let got: Vec<_> = self
                .all_messages()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to) && m.is_confirmation() == confirmations)
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} mail(s) for {to} (confirmations: {confirmations}), got {:?}",
            self.all_messages()
                .iter()
                .map(|m| (&m.to, m.is_confirmation()))
                .collect::<Vec<_>>()
        );
    }
}

async fn serve_smtp(
    socket: tokio::net::TcpStream,
    inbox: Arc<Mutex<Vec<ReceivedMail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write
                .write_all(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("MAIL FROM") {
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            let addr = line
                .trim()
                .split_once(':')
                .map(|(_, a)| a.trim().trim_matches(['<', '>']).to_owned())
                .unwrap_or_default();
            to.push(addr);
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut raw = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                raw.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            inbox.lock().unwrap().push(ReceivedMail {
                to: to.clone(),
                raw,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// JSON body (`Null` when not JSON).
    pub body: Value,
    /// Raw body text.
    pub text: String,
}

impl Reply {
    /// `body.data`.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

/// A running application and a client for it.
pub struct TestApp {
    /// Base URL.
    pub url: String,
    /// HTTP client (no redirects, no cookies).
    pub client: reqwest::Client,
    /// The domain service behind the server.
    pub auth: Arc<Auth>,
    /// The SMTP sink receiving its mail.
    pub smtp: SmtpSink,
    /// The shifted clock the server uses.
    pub clock: Arc<ShiftedClock>,
    /// The environment it was configured with (to start a twin instance).
    pub env: HashMap<String, String>,
    /// Temporary directory holding its data.
    pub dir: std::path::PathBuf,
    /// Base URL of the separate metrics listener, when `METRICS_ADDR` is set.
    pub metrics_url: Option<String>,
    /// Removes `dir` once neither this application nor a twin of it is left.
    dir_guard: Arc<DirGuard>,
}

/// A test's data directory, removed when the last application using it is dropped (thousands
/// of tests would otherwise leave thousands of directories behind).
#[derive(Debug)]
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options for [`spawn_app_with`].
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Extra or overriding environment variables.
    pub env: Vec<(&'static str, String)>,
}

/// Starts an application on a fresh database with cheap password hashing.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

/// Starts an application with extra configuration.
pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let dir = std::env::temp_dir().join(format!("porteiro-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = match backend {
        Backend::Sqlite => dir.join("porteiro.db").to_string_lossy().into_owned(),
        Backend::Postgres => {
            let admin = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
            porteiro_store_postgres::testing::fresh_database(&admin)
                .await
                .unwrap()
        }
    };
    let smtp = SmtpSink::start().await;
    let mut env: HashMap<String, String> = [
        ("SERVER_HOST", "127.0.0.1".to_owned()),
        ("SERVER_PORT", "0".to_owned()),
        ("DATABASE_URL", database_url),
        ("DATA_DIR", dir.to_string_lossy().into_owned()),
        ("PUBLIC_URL", "http://porteiro.test".to_owned()),
        // A plain-HTTP, non-loopback public URL, as the cookie tests want (no `__Host-`, no
        // `Secure`): refused at start-up unless explicitly allowed.
        ("ALLOW_INSECURE_COOKIES", "true".to_owned()),
        ("EMAIL_BASE_URL", "https://id.example.com".to_owned()),
        ("EMAIL_SMTP_SERVER", "127.0.0.1".to_owned()),
        ("EMAIL_SMTP_PORT", smtp.port.to_string()),
        ("EMAIL_SMTP_TLS", "none".to_owned()),
        ("EMAIL_FROM", "noreply@example.com".to_owned()),
        ("EMAIL_POLL_INTERVAL", "1".to_owned()),
        ("ADMIN_EMAIL", "admin@example.com".to_owned()),
        ("ADMIN_USERNAME", "admin".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("ARGON2_MEMORY_KIB", "256".to_owned()),
        ("ARGON2_ITERATIONS", "1".to_owned()),
        // Every test client is 127.0.0.1: tests of the limits themselves set their own.
        ("RATE_LIMIT_CAPACITY", "100000".to_owned()),
        ("RATE_LIMIT_REFILL_RATE", "100000".to_owned()),
        (
            "LOG_LEVEL",
            if std::env::var("TEST_LOG").is_ok() {
                "debug"
            } else {
                "off"
            }
            .to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in options.env {
        env.insert(k.to_owned(), v);
    }
    let guard = Arc::new(DirGuard(dir.clone()));
    start(env, dir, smtp, guard).await
}

/// Starts a second instance sharing `app`'s database and keys (PostgreSQL only).
pub async fn spawn_twin(app: &TestApp) -> TestApp {
    start(
        app.env.clone(),
        app.dir.clone(),
        app.smtp.clone(),
        Arc::clone(&app.dir_guard),
    )
    .await
}

async fn start(
    env: HashMap<String, String>,
    dir: std::path::PathBuf,
    smtp: SmtpSink,
    dir_guard: Arc<DirGuard>,
) -> TestApp {
    if env.get("LOG_LEVEL").is_some_and(|l| l != "off") {
        porteiro::telemetry::init("debug", false);
    }
    let config = Config::from_env(&env).expect("valid test configuration");
    let clock = Arc::new(ShiftedClock::default());
    let app = Application::build_with_clock(config, clock.clone())
        .await
        .expect("application starts");
    let scheme = if env.contains_key("TLS_CERT_FILE") {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}", app.local_addr());
    let auth = app.auth();
    let metrics_url = app.metrics_addr().map(|a| format!("http://{a}"));
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        url,
        client,
        auth,
        smtp,
        clock,
        env,
        dir,
        metrics_url,
        dir_guard,
    }
}

/// The first administrator's password in every test application.
pub const ADMIN_PASSWORD: &str = "Admin-Passw0rd-e2e";
/// A password that meets the policy.
pub const PASSWORD: &str = "MinhaS3nha!Forte";

/// A registered user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Tokens from a sign-in.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Access JWT.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
}

impl TestApp {
    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Median seconds of a failed compact sign-in as `first` and as `second`: one warm-up each,
    /// then `pairs` interleaved tries, so the medians shrug off samples slowed by whatever else
    /// the machine is doing.
    pub async fn median_failed_sign_in_secs(
        &self,
        first: &str,
        second: &str,
        pairs: usize,
    ) -> (f64, f64) {
        let time = |login: &str| {
            let body = json!({"login": login, "password": "Wrong-pass-1"});
            async move {
                let start = std::time::Instant::now();
                let r = self.post("/auth", body).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN);
                start.elapsed()
            }
        };
        time(first).await;
        time(second).await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..pairs {
            a.push(time(first).await);
            b.push(time(second).await);
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2].as_secs_f64()
        };
        (median(&mut a), median(&mut b))
    }

    /// The status of a compact sign-in (`POST /auth`).
    pub async fn sign_in_as_status(&self, login: &str, password: &str) -> StatusCode {
        self.post("/auth", json!({"login": login, "password": password}))
            .await
            .status
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(format!("{}{path}", self.url)).json(&body))
            .await
    }

    /// `POST path` with a JSON body and a bearer token.
    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            self.client
                .post(format!("{}{path}", self.url))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    /// `GET path` with a bearer token.
    pub async fn get_auth(&self, path: &str, token: &str) -> Reply {
        self.send(
            self.client
                .get(format!("{}{path}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    /// `PUT path` with a bearer token.
    pub async fn put_auth(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(
            self.client
                .put(format!("{}{path}", self.url))
                .bearer_auth(token)
                .json(&body),
        )
        .await
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete_auth(&self, path: &str, token: &str) -> Reply {
        self.send(
            self.client
                .delete(format!("{}{path}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    /// Any request.
    pub async fn request(&self, req: reqwest::RequestBuilder) -> Reply {
        self.send(req).await
    }

    /// Registers a user with a unique name and the standard password.
    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let r = self
            .post(
                "/api/auth/register",
                json!({"username": name, "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        TestUser {
            id: r.data()["id"].as_str().unwrap().to_owned(),
            username: name.to_owned(),
            email,
            password: PASSWORD.to_owned(),
        }
    }

    /// Signs in through the compact API.
    pub async fn sign_in(&self, user: &TestUser) -> Tokens {
        self.sign_in_as(&user.username, &user.password).await
    }

    /// Signs in through the compact API with explicit credentials.
    pub async fn sign_in_as(&self, login: &str, password: &str) -> Tokens {
        let r = self
            .post("/auth", json!({"login": login, "password": password}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        Tokens {
            access: r.body["auth"].as_str().unwrap().to_owned(),
            refresh: r.body["refresh"].as_str().unwrap().to_owned(),
        }
    }

    /// Signs in as the first administrator.
    pub async fn admin(&self) -> Tokens {
        self.sign_in_as("admin", ADMIN_PASSWORD).await
    }

    /// `GET /api/auth/me` status with a token.
    pub async fn me_status(&self, token: &str) -> StatusCode {
        self.get_auth("/api/auth/me", token).await.status
    }
}

/// What the application's database holds at rest: the SQLite file and its WAL, or a `pg_dump`
/// of its PostgreSQL database (where binary columns appear in hex: see [`holds`]).
pub fn at_rest(app: &TestApp) -> Vec<u8> {
    let url = &app.env["DATABASE_URL"];
    if url.starts_with("postgres") {
        let out = std::process::Command::new("pg_dump")
            .args(["--data-only", "--dbname", url])
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    } else {
        ["porteiro.db", "porteiro.db-wal"]
            .iter()
            .flat_map(|name| std::fs::read(app.dir.join(name)).unwrap_or_default())
            .collect()
    }
}

/// Whether `haystack` (from [`at_rest`]) holds `needle`, as is or in hex (how a dump shows
/// binary columns).
pub fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    let hex: Vec<u8> = needle
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect();
    [needle, hex.as_slice()]
        .iter()
        .any(|n| !n.is_empty() && haystack.windows(n.len()).any(|w| w == *n))
}
