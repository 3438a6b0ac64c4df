//! `/metrics`: scraped and parsed as Prometheus text; counters move with the requests made;
//! access by token, on a separate listener, or from loopback only; no user data in any label.
//!
//! The recorder is process-wide, so when tests share a process (plain `cargo test`) their
//! counters add up: assertions compare a scrape before and after, never absolute values.

use std::collections::{BTreeMap, HashMap};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed strictly: every line is a comment, a `# HELP`/`# TYPE` line or a sample
/// whose label values are quoted strings with `\\`, `\"` and `\n` escapes (a route template
/// holds `{` and `}`: `prometheus-parse` drops such lines silently, so it is not used).
struct Metrics {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
    text: String,
}

fn metric_name(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
        })
        .map_or(s.len(), |(i, _)| i);
    assert!(end > 0, "no metric name in {s:?}");
    s.split_at(end)
}

fn sample(line: &str) -> Sample {
    let (name, mut rest) = metric_name(line);
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = metric_name(rest);
            assert!(!label.contains(':'), "bad label name in {line:?}");
            let mut chars = after
                .strip_prefix("=\"")
                .unwrap_or_else(|| panic!("bad label in {line:?}"))
                .chars();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some('\n') | None => panic!("unterminated label value in {line:?}"),
                    Some(c) => value.push(c),
                }
            }
            assert!(
                labels.insert(label.to_owned(), value).is_none(),
                "repeated label in {line:?}"
            );
            rest = chars.as_str();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = match fields
        .next()
        .unwrap_or_else(|| panic!("no value in {line:?}"))
    {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    }
    assert!(fields.next().is_none(), "trailing text in {line:?}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

impl Metrics {
    fn parse(text: String) -> Self {
        let mut samples: Vec<Sample> = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_ascii_whitespace().collect();
                if words.first() == Some(&"TYPE") {
                    let [_, name, kind] = words[..] else {
                        panic!("bad TYPE line {line:?}")
                    };
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "{line:?}"
                    );
                }
                continue;
            }
            let s = sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    s.name
                        .strip_suffix(suffix)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(&s.name);
            assert!(types.contains_key(family), "{} has no TYPE line", s.name);
            assert!(
                !samples
                    .iter()
                    .any(|o| o.name == s.name && o.labels == s.labels),
                "duplicate series {line:?}"
            );
            samples.push(s);
        }
        Self {
            samples,
            types,
            text,
        }
    }

    /// The sum of the samples of `name` whose labels include `labels`; 0 when none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name)
            .filter(move |s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// Every `(metric, label, value)`.
    fn labels(&self) -> Vec<(&str, &str, &str)> {
        self.samples
            .iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .map(move |(k, v)| (s.name.as_str(), k.as_str(), v.as_str()))
            })
            .collect()
    }
}

impl TestApp {
    async fn scrape_at(&self, base: &str, token: Option<&str>) -> crate::helpers::Reply {
        let mut req = self.client.get(format!("{base}/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        self.request(req).await
    }

    /// Scrapes the main listener from loopback and parses the result.
    async fn metrics(&self) -> Metrics {
        let r = self.scrape_at(&self.url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        Metrics::parse(r.text)
    }
}

const REQUESTS: &str = "porteiro_http_requests_total";

both_backends! {
    async fn metrics_parse_and_move_with_requests(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let user = app.register("metrics_mover").await;
        let before = app.metrics().await;

        // Act: a sign-in that works, one that fails, a rotation, `me`, an unknown route.
        let tokens = app.sign_in(&user).await;
        assert_eq!(app.sign_in_as_status(&user.username, "Wrong-pass-1").await, StatusCode::FORBIDDEN);
        let r = app.post("/refresh", json!({"refresh": tokens.refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let access = r.body["auth"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            assert_eq!(app.me_status(&access).await, StatusCode::OK);
        }
        let unknown = format!("/api/nothing-here-{}", uuid::Uuid::new_v4().simple());
        assert_eq!(app.get(&unknown).await.status, StatusCode::NOT_FOUND);
        let after = app.metrics().await;

        // Assert: HTTP requests by route template, method and status class.
        let moved = |labels: &[(&str, &str)]| after.value(REQUESTS, labels) - before.value(REQUESTS, labels);
        assert!(moved(&[("route", "/auth"), ("method", "POST"), ("status", "2xx")]) >= 1.0);
        assert!(moved(&[("route", "/auth"), ("method", "POST"), ("status", "4xx")]) >= 1.0);
        assert!(moved(&[("route", "/api/auth/me"), ("method", "GET"), ("status", "2xx")]) >= 3.0);
        assert!(moved(&[("route", "unmatched"), ("method", "GET"), ("status", "4xx")]) >= 1.0);
        assert!(!after.text.contains("nothing-here"), "a raw path became a label");
        // Latency histogram, with buckets from 0.5 ms to 10 s.
        let histogram = "porteiro_http_request_duration_seconds";
        assert_eq!(after.types.get(histogram).map(String::as_str), Some("histogram"));
        let me = [("route", "/api/auth/me"), ("method", "GET")];
        let bounds: Vec<&str> = after
            .matching("porteiro_http_request_duration_seconds_bucket", &me)
            .map(|s| s.labels["le"].as_str())
            .collect();
        assert!(bounds.contains(&"0.0005") && bounds.contains(&"10") && bounds.contains(&"+Inf"), "{bounds:?}");
        assert!(after.value("porteiro_http_request_duration_seconds_count", &me) >= 3.0);
        // Domain counters and scrape-time gauges.
        let rotations = "porteiro_refresh_rotations_total";
        assert!(after.value(rotations, &[]) - before.value(rotations, &[]) >= 1.0);
        assert!(after.value("porteiro_hash_pool_workers", &[]) >= 1.0);
        for gauge in [
            "porteiro_hash_pool_busy",
            "porteiro_hash_pool_queued",
            "porteiro_mail_outbox_backlog",
            "porteiro_session_cache_entries",
            "porteiro_session_cache_hit_ratio",
        ] {
            assert!(after.has(gauge), "{gauge} missing");
        }
        let hits = "porteiro_session_cache_hits_total";
        assert!(after.value(hits, &[]) - before.value(hits, &[]) >= 2.0, "me reads the cached session");
        let pools: &[&str] = match backend {
            Backend::Sqlite => &["writer", "reader"],
            Backend::Postgres => &["main"],
        };
        for pool in pools {
            assert!(after.value("porteiro_db_pool_max_connections", &[("pool", pool)]) >= 1.0, "{pool}");
            assert!(after.has("porteiro_db_pool_connections"));
        }
        #[cfg(target_os = "linux")]
        assert!(after.value("process_resident_memory_bytes", &[]) > 0.0);
        // Described (HELP) as well as typed.
        assert!(after.text.contains("# HELP porteiro_http_requests_total "));
        assert!(after.text.contains("# TYPE porteiro_http_request_duration_seconds histogram"));
    }

    async fn metrics_labels_carry_no_user_data(backend: Backend) {
        // Arrange: a user whose name, address and id could end up in a label, requests on
        // routes with ids in their path, and a forwarded client address.
        // (Through a declared proxy /metrics needs its token.)
        let app = spawn_app_with(
            backend,
            Options {
                env: vec![
                    ("TRUSTED_PROXIES", "127.0.0.1".to_owned()),
                    ("METRICS_TOKEN", "zelda-scrape-token-0123".to_owned()),
                ],
            },
        )
        .await;
        let user = app.register("zelda_metrics_probe").await;
        let tokens = app.sign_in(&user).await;
        let admin = app.admin().await;
        let r = app.get_auth(&format!("/api/users/{}", user.id), &admin.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app
            .request(
                app.client
                    .get(format!("{}/api/auth/me", app.url))
                    .bearer_auth(&tokens.access)
                    .header("x-forwarded-for", "198.51.100.123"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app
            .request(app.client.request(
                reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
                format!("{}/api/users/{}/secret-zelda", app.url, user.id),
            ))
            .await;
        assert!(r.status.is_client_error());
        assert_eq!(app.sign_in_as_status("nobody-zelda@example.com", "Wrong-pass-1").await, StatusCode::FORBIDDEN);

        // Act
        let scraped = app.scrape_at(&app.url, Some("zelda-scrape-token-0123")).await;
        assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text);
        let metrics = Metrics::parse(scraped.text);

        // Assert: none of it appears anywhere in the scrape.
        for needle in [
            user.username.as_str(),
            user.email.as_str(),
            user.id.as_str(),
            "zelda",
            "198.51.100.123",
            "127.0.0.1",
            "PROPFIND",
            &tokens.access,
        ] {
            assert!(!metrics.text.contains(needle), "{needle:?} appears in /metrics");
        }
        // And every label is from a fixed set or a route template of the router.
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];
        let statuses = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (metric, label, value) in metrics.labels() {
            *seen.entry(label).or_default() += 1;
            let ok = match label {
                "route" => {
                    value == "unmatched" || value == "other" || (value.starts_with('/') && uuid_free(value))
                }
                "method" if metric.starts_with("porteiro_http") => methods.contains(&value),
                "status" => statuses.contains(&value),
                "le" | "quantile" => value.parse::<f64>().is_ok() || value == "+Inf",
                _ => value.len() <= 32
                    && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'),
            };
            assert!(ok, "{metric}{{{label}={value:?}}} is not a fixed label value");
        }
        assert!(seen.contains_key("route") && seen.contains_key("method"));
        assert!(metrics.labels().iter().any(|(_, l, v)| *l == "route" && *v == "/api/users/{id}"));
    }

    async fn metrics_token_is_required_when_set(backend: Backend) {
        // Arrange
        let token = "scrape-0123456789-abcdef";
        let app = spawn_app_with(
            backend,
            Options { env: vec![("METRICS_TOKEN", token.to_owned())] },
        )
        .await;

        // Act + Assert: loopback is not enough; a missing, wrong or longer token is refused.
        for presented in [None, Some("wrong"), Some("scrape-0123456789-abcdeg"), Some("scrape-0123456789-abcdef0")] {
            let r = app.scrape_at(&app.url, presented).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{presented:?}");
            assert_eq!(r.body["status"], "error");
            assert_eq!(r.body["code"], "invalid_token");
            assert!(r.headers.contains_key("www-authenticate"));
        }
        let r = app.scrape_at(&app.url, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"),
            "{:?}",
            r.headers["content-type"]
        );
        assert_eq!(r.headers["cache-control"], "no-store");
        let metrics = Metrics::parse(r.text);
        assert!(metrics.has(REQUESTS));
    }

    async fn metrics_addr_serves_them_apart(backend: Backend) {
        // Arrange
        let app = spawn_app_with(
            backend,
            Options { env: vec![("METRICS_ADDR", "127.0.0.1:0".to_owned())] },
        )
        .await;
        let metrics_url = app.metrics_url.clone().expect("a metrics listener");
        assert_ne!(metrics_url, app.url);
        assert_eq!(app.me_status("not-a-token").await, StatusCode::UNAUTHORIZED);

        // Act
        let main = app.scrape_at(&app.url, None).await;
        let apart = app.scrape_at(&metrics_url, None).await;
        let elsewhere = app.request(app.client.get(format!("{metrics_url}/api/auth/me"))).await;

        // Assert: not on the main listener (like any unknown route), parsed on its own.
        assert_eq!(main.status, StatusCode::NOT_FOUND);
        assert_eq!(main.body["code"], "not_found");
        assert_eq!(apart.status, StatusCode::OK, "{}", apart.text);
        let metrics = Metrics::parse(apart.text);
        assert!(metrics.value(REQUESTS, &[("route", "/api/auth/me"), ("status", "4xx")]) >= 1.0);
        assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
        assert_eq!(elsewhere.body["code"], "not_found");
    }

    async fn metrics_answer_loopback_clients_only_by_default(backend: Backend) {
        // Arrange: the test client connects from 127.0.0.1, declared as a proxy. A proxy relays
        // remote clients, and what it says about them (or what they say through it) cannot make
        // a request local: without METRICS_TOKEN nothing through it is served.
        let app = spawn_app_with(
            backend,
            Options { env: vec![("TRUSTED_PROXIES", "127.0.0.1".to_owned())] },
        )
        .await;

        // Act
        let mut answers = Vec::new();
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "2001:db8::7"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-for", "garbage"),
            ("x-real-ip", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
        ] {
            let r = app
                .request(app.client.get(format!("{}/metrics", app.url)).header(name, value))
                .await;
            answers.push((format!("{name}: {value}"), r));
        }
        answers.push(("no header".to_owned(), app.scrape_at(&app.url, None).await));

        // Assert
        for (sent, r) in answers {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{sent}: {}", r.text);
            assert_eq!(r.body["code"], "not_found", "{sent}");
        }
    }

    async fn metrics_refuse_an_undeclared_local_proxy(backend: Backend) {
        // Arrange: no trusted proxies, so a loopback peer relaying a client (it adds
        // forwarding headers) must not pass for a local scraper.
        let app = spawn_app(backend).await;

        // Act
        let mut refused = Vec::new();
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
        ] {
            let r = app
                .request(app.client.get(format!("{}/metrics", app.url)).header(name, value))
                .await;
            refused.push((name, r.status));
        }

        // Assert
        for (name, status) in refused {
            assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
        }
        assert_eq!(app.scrape_at(&app.url, None).await.status, StatusCode::OK);
    }

}

/// Whether `route` holds nothing shaped like a UUID (a user or session id).
fn uuid_free(route: &str) -> bool {
    !route
        .split('/')
        .any(|segment| uuid::Uuid::parse_str(segment).is_ok())
}

/// Sign-ins by result, method and reason, counted from the committed security events.
mod metrics_count_sign_ins_by_result_and_method {
    use super::*;

    async fn sign_ins_are_counted(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("metrics_signer").await;
        let before = app.metrics().await;
        app.sign_in(&user).await;
        assert_eq!(
            app.sign_in_as_status(&user.username, "Wrong-pass-1").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.sign_in_as_status("nobody@example.com", "Wrong-pass-1")
                .await,
            StatusCode::FORBIDDEN
        );
        let after = app.metrics().await;
        let moved = |labels: &[(&str, &str)]| {
            after.value("porteiro_sign_ins_total", labels)
                - before.value("porteiro_sign_ins_total", labels)
        };
        assert!(moved(&[("result", "success"), ("method", "password")]) >= 1.0);
        assert!(moved(&[("result", "failure"), ("reason", "wrong_password")]) >= 1.0);
        assert!(moved(&[("result", "failure"), ("reason", "unknown_account")]) >= 1.0);
        let events = "porteiro_security_events_total";
        let labels = [("type", "sign_in.succeeded"), ("outcome", "success")];
        assert!(after.value(events, &labels) - before.value(events, &labels) >= 1.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        sign_ins_are_counted(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if std::env::var("TEST_POSTGRES_URL").is_err() {
            eprintln!("TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant");
            return;
        }
        sign_ins_are_counted(Backend::Postgres).await;
    }
}
