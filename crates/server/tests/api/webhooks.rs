//! Webhooks end to end: a real HTTP receiver started here (axum on 127.0.0.1:0) records what
//! Porteiro POSTs and answers a programmed sequence (statuses, slow answers, redirects, a
//! request held open). Signatures are checked with aws-lc-rs HMAC; retries are made due by
//! moving the application's clock rather than by sleeping (`WEBHOOK_RETRY_BASE=1h`, so nothing
//! is retried unless the test moves the clock past the 12-hour cap). The kill -9 test runs the
//! real binary.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_PASSWORD, Options, TestApp, spawn_app_with};

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
enum Answer {
    /// This status at once.
    Status(u16),
    /// 200 after this long.
    Slow(Duration),
    /// Never answers (the connection stays open until the test ends).
    Hold,
    /// `302` to this location.
    Redirect(String),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// How many of the `webhook-signature` entries verify with `secret` (`whsec_…`).
    fn signatures_by(&self, secret: &str) -> usize {
        let key_bytes = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
            .expect("base64 secret");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key_bytes);
        let mut signed = format!(
            "{}.{}.",
            self.header("webhook-id"),
            self.header("webhook-timestamp")
        )
        .into_bytes();
        signed.extend_from_slice(&self.body);
        self.header("webhook-signature")
            .split(' ')
            .filter(|entry| {
                entry
                    .strip_prefix("v1,")
                    .and_then(|sig| STANDARD.decode(sig).ok())
                    .is_some_and(|sig| aws_lc_rs::hmac::verify(&key, &signed, &sig).is_ok())
            })
            .count()
    }
}

#[derive(Debug, Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
}

/// A webhook receiver on a random loopback port.
#[derive(Debug, Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    let answer = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Answer::Hold => std::future::pending::<Response>().await,
        Answer::Redirect(to) => {
            (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
        }
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Answers the next requests like this (then 200).
    fn script(&self, answers: &[Answer]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().cloned());
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `n` requests have arrived and returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} webhook request(s), got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Settings for fast, deterministic delivery: private receivers allowed, a short poll, and
/// retries only when the test moves the clock.
fn hooks(extra: &[(&'static str, &str)]) -> Options {
    let mut env = vec![
        ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("WEBHOOK_POLL_INTERVAL", "25ms".to_owned()),
        ("WEBHOOK_RETRY_BASE", "1h".to_owned()),
        ("WEBHOOK_TIMEOUT", "1s".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Options { env }
}

/// Moves the clock past the longest retry delay (12 h), so the next retry is due, and signs
/// the administrator in again (the old access token has expired meanwhile).
async fn past_next_retry(app: &TestApp) -> String {
    app.clock.advance(chrono::Duration::hours(13));
    app.admin().await.access
}

/// Creates an endpoint; returns its id and secret.
async fn create_endpoint(app: &TestApp, token: &str, url: &str, types: Value) -> (String, String) {
    let mut body = json!({"url": url, "description": "test receiver"});
    if !types.is_null() {
        body["event_types"] = types;
    }
    let r = app.post_auth("/api/admin/webhooks", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (
        r.data()["id"].as_str().unwrap().to_owned(),
        r.data()["secret"].as_str().unwrap().to_owned(),
    )
}

/// An endpoint's delivery log, newest first.
async fn deliveries(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let r = app
        .get_auth(&format!("/api/admin/webhooks/{id}/deliveries"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["deliveries"].as_array().unwrap().clone()
}

/// Waits (up to 20 s) until the newest delivery of the endpoint satisfies `done`.
async fn wait_delivery(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = deliveries(app, token, id).await;
        if let Some(d) = list.first()
            && done(d)
        {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

both_backends! {
    async fn the_secret_is_shown_once_and_each_delivery_is_signed_with_it(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, secret) = create_endpoint(&app, &admin, &receiver.url(), Value::Null).await;
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret["whsec_".len()..]).unwrap().len(), 32);

        // Never again: not in GET, not in the list.
        let one = app.get_auth(&format!("/api/admin/webhooks/{id}"), &admin).await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.data()["event_types"], json!(["*"]));
        assert!(one.data().get("secret").is_none() && !one.text.contains(&secret[6..]));
        let list = app.get_auth("/api/admin/webhooks", &admin).await;
        assert_eq!(list.data()["items"].as_array().unwrap().len(), 1);
        assert!(!list.text.contains("whsec_"));

        let user = app.register("wanda").await;
        // The registration and its confirmation link (`email.confirmation_sent`).
        let got = receiver.wait_for(2).await;
        let hook = got.iter().find(|h| h.json()["type"] == "user.registered").unwrap();
        assert_eq!(hook.signatures_by(&secret), 1, "{:?}", hook.headers);
        assert_eq!(hook.header("content-type"), "application/json");
        assert!(hook.header("user-agent").starts_with("Porteiro-Webhooks/"));
        let body = hook.json();
        assert_eq!(body["type"], "user.registered");
        assert_eq!(body["version"], 1);
        assert_eq!(body["data"]["user_id"], user.id.as_str());
        assert_eq!(body["data"]["outcome"], "success");
        assert_eq!(hook.header("webhook-id"), body["id"].as_str().unwrap());
        let ts: i64 = hook.header("webhook-timestamp").parse().unwrap();
        assert!((ts - app.auth.now().timestamp()).abs() < 60);
        // Nothing secret in the payload.
        let text = String::from_utf8_lossy(&hook.body).to_lowercase();
        for word in ["password", "hash", "token", "whsec"] {
            assert!(!text.contains(word), "{word} in {text}");
        }

        // A sign-in is delivered too; the administrator's own change (creating the endpoint)
        // is not fanned out.
        app.sign_in(&user).await;
        let got = receiver.wait_for(3).await;
        assert_eq!(got[2].json()["type"], "sign_in.succeeded");
        assert_eq!(got[2].signatures_by(&secret), 1);
        assert!(got.iter().all(|r| !r.json()["type"].as_str().unwrap().starts_with("webhook.")));
        let log = wait_delivery(&app, &admin, &id, "delivered", |d| d["status"] == "delivered").await;
        assert_eq!(log["last_status_code"], 200);
        assert_eq!(log["attempts"], 1);
        assert_eq!(log["webhook_id"], got[2].header("webhook-id"));

        // The creation is in the audit log, without the secret.
        let audit = app.get_auth("/api/admin/audit?type=webhook.created", &admin).await;
        assert_eq!(audit.data()["events"].as_array().unwrap().len(), 1);
        assert!(!audit.text.contains(&secret[6..]) && !audit.text.contains("/hooks"));
    }

    async fn only_subscribed_event_types_are_queued(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (failed_only, _) = create_endpoint(&app, &admin, &receiver.url(), json!(["sign_in.failed"])).await;
        let user = app.register("filipa").await;
        assert_eq!(app.sign_in_as_status(&user.username, "Wrong-passw0rd!").await, StatusCode::FORBIDDEN);
        let got = receiver.wait_for(1).await;
        assert_eq!(got[0].json()["type"], "sign_in.failed");
        // Deliveries are queued with the event, so the log is complete at once.
        let log = deliveries(&app, &admin, &failed_only).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["event_type"], "sign_in.failed");
    }

    async fn a_refused_change_queues_no_delivery(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, _) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered", "user.deleted"])).await;
        app.register("rolf").await;
        // The same username again: the insert fails and its transaction, event included, is
        // rolled back.
        let again = app.post("/api/auth/register", json!({
            "username": "rolf", "email": "rolf2@example.com", "password": crate::helpers::PASSWORD
        })).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        // Deleting an unknown account changes nothing and queues nothing.
        let ghost = app.delete_auth(&format!("/api/users/{}", uuid::Uuid::new_v4()), &admin).await;
        assert_eq!(ghost.status, StatusCode::NOT_FOUND);
        let log = deliveries(&app, &admin, &id).await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["event_type"], "user.registered");
        receiver.wait_for(1).await;
    }

    async fn failures_and_timeouts_are_retried_with_the_same_webhook_id(backend: Backend) {
        let receiver = Receiver::start().await;
        receiver.script(&[Answer::Status(500), Answer::Slow(Duration::from_secs(3))]);
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, secret) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered"])).await;
        app.register("rita").await;

        let first = wait_delivery(&app, &admin, &id, "first attempt recorded", |d| d["last_status_code"] == 500).await;
        assert_eq!((first["status"].as_str(), first["attempts"].as_i64()), (Some("pending"), Some(1)));
        assert_eq!(first["last_error"], "HTTP 500");
        assert!(first["next_attempt_at"].is_string());

        let admin = past_next_retry(&app).await;
        let second = wait_delivery(&app, &admin, &id, "timed-out attempt recorded", |d| d["attempts"] == 2 && d["last_error"] == "timed out").await;
        assert_eq!(second["status"], "pending");
        assert!(second["last_status_code"].is_null());

        let admin = past_next_retry(&app).await;
        let third = wait_delivery(&app, &admin, &id, "delivered", |d| d["status"] == "delivered").await;
        assert_eq!(third["attempts"], 3);
        assert!(third["last_error"].is_null() && third["completed_at"].is_string());

        let got = receiver.received();
        assert_eq!(got.len(), 3);
        let ids: Vec<String> = got.iter().map(|r| r.header("webhook-id")).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        assert!(got.iter().all(|r| r.signatures_by(&secret) == 1));
        assert_eq!(got[0].body, got[2].body);
    }

    async fn the_last_failed_attempt_makes_a_dead_letter_that_can_be_replayed(backend: Backend) {
        let receiver = Receiver::start().await;
        receiver.script(&[Answer::Status(503), Answer::Status(400)]);
        let app = spawn_app_with(backend, hooks(&[("WEBHOOK_MAX_ATTEMPTS", "2")])).await;
        let admin = app.admin().await.access;
        let (id, secret) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered"])).await;
        let start = app.auth.now();
        app.register("dora").await;
        wait_delivery(&app, &admin, &id, "first attempt", |d| d["last_status_code"] == 503).await;
        let admin = past_next_retry(&app).await;
        let dead = wait_delivery(&app, &admin, &id, "dead letter", |d| d["status"] == "dead").await;
        assert_eq!((dead["attempts"].as_i64(), dead["last_status_code"].as_i64()), (Some(2), Some(400)));
        assert!(dead["next_attempt_at"].is_null());
        let letters = app.get_auth("/api/admin/webhooks/dead-letters", &admin).await;
        assert_eq!(letters.status, StatusCode::OK, "{}", letters.text);
        let letters = letters.data()["deliveries"].as_array().unwrap().clone();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0]["id"], dead["id"]);

        // Replay of the one event: delivered with its original webhook-id.
        let event_id = dead["event_id"].as_i64().unwrap();
        let r = app.post_auth(&format!("/api/admin/webhooks/{id}/replay"), &admin, json!({"event_id": event_id})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["queued"], 1);
        let got = receiver.wait_for(3).await;
        assert_eq!(got[2].header("webhook-id"), format!("evt_{event_id}"));
        assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
        assert_eq!(got[2].signatures_by(&secret), 1);

        // Replay of a range: every subscribed event in it (the one registration).
        let from = start.to_rfc3339();
        let to = (app.auth.now() + chrono::Duration::minutes(1)).to_rfc3339();
        let r = app.post_auth(&format!("/api/admin/webhooks/{id}/replay"), &admin, json!({"from": from, "to": to})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["queued"], 1);
        let got = receiver.wait_for(4).await;
        assert_eq!(got[3].json()["type"], "user.registered");
        let audit = app.get_auth("/api/admin/audit?type=webhook.replayed", &admin).await;
        assert_eq!(audit.data()["events"].as_array().unwrap().len(), 2);

        // Bad replays are refused without queuing anything.
        let replay = format!("/api/admin/webhooks/{id}/replay");
        for body in [
            json!({}),
            json!({"event_id": event_id, "from": from, "to": to}),
            json!({"from": to, "to": from}),
            json!({"from": "2020-01-01T00:00:00Z", "to": "2020-03-01T00:00:00Z"}),
            json!({"from": from}),
        ] {
            let r = app.post_auth(&replay, &admin, body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
            assert_eq!(r.body["code"], "invalid_replay");
        }
        let r = app.post_auth(&replay, &admin, json!({"from": "yesterday", "to": to})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = app.post_auth(&replay, &admin, json!({"event_id": 999_999_999})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    async fn a_test_event_goes_to_that_endpoint_only(backend: Backend) {
        let (one, two) = (Receiver::start().await, Receiver::start().await);
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, secret) = create_endpoint(&app, &admin, &one.url(), json!(["user.registered"])).await;
        let (other, _) = create_endpoint(&app, &admin, &two.url(), Value::Null).await;
        let r = app.post_auth(&format!("/api/admin/webhooks/{id}/test"), &admin, json!({})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert!(r.data()["delivery_id"].is_i64());
        let got = one.wait_for(1).await;
        assert_eq!(got[0].json()["type"], "webhook.tested");
        assert_eq!(got[0].json()["data"]["details"]["endpoint_id"], id.as_str());
        assert_eq!(got[0].signatures_by(&secret), 1);
        assert!(deliveries(&app, &admin, &other).await.is_empty());
        wait_delivery(&app, &admin, &id, "delivered", |d| d["status"] == "delivered").await;
        assert!(two.received().is_empty());
    }

    async fn after_a_rotation_both_secrets_sign_until_the_overlap_ends(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, old) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered"])).await;
        let rotate = format!("/api/admin/webhooks/{id}/rotate-secret");
        let r = app.post_auth(&rotate, &admin, json!({"overlap_seconds": 3600})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let new = r.data()["secret"].as_str().unwrap().to_owned();
        assert!(new.starts_with("whsec_") && new != old);
        assert!(r.data()["previous_secret_until"].is_string());

        app.register("otto").await;
        let got = receiver.wait_for(1).await;
        assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
        assert_eq!((got[0].signatures_by(&new), got[0].signatures_by(&old)), (1, 1));

        // Past the overlap, only the new secret signs.
        app.clock.advance(chrono::Duration::hours(2));
        let admin = app.admin().await.access;
        app.register("olga").await;
        let got = receiver.wait_for(2).await;
        assert_eq!(got[1].header("webhook-signature").split(' ').count(), 1);
        assert_eq!((got[1].signatures_by(&new), got[1].signatures_by(&old)), (1, 0));
        let view = app.get_auth(&format!("/api/admin/webhooks/{id}"), &admin).await;
        assert!(view.data()["previous_secret_until"].is_null());

        // No body: the default overlap (24 h). Out of range: refused.
        let r = app.request(app.client.post(format!("{}{rotate}", app.url)).bearer_auth(&admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for bad in [json!({"overlap_seconds": -1}), json!({"overlap_seconds": 604_801})] {
            let r = app.post_auth(&rotate, &admin, bad).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
            assert_eq!(r.body["code"], "invalid_overlap");
        }
        let r = app.post_auth(&rotate, &admin, json!({"overlap_seconds": "soon"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let audit = app.get_auth("/api/admin/audit?type=webhook.secret_rotated", &admin).await;
        assert_eq!(audit.data()["events"].as_array().unwrap().len(), 2);
        assert!(!audit.text.contains(&new[6..]) && !audit.text.contains(&old[6..]));
    }

    async fn an_update_that_changes_nothing_writes_nothing(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, _) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered"])).await;
        let before = app.get_auth(&format!("/api/admin/webhooks/{id}"), &admin).await;
        let same = json!({
            "url": receiver.url(),
            "description": "test receiver",
            "event_types": ["user.registered"],
            "enabled": true,
        });
        for body in [json!({}), same] {
            let r = app.put_auth(&format!("/api/admin/webhooks/{id}"), &admin, body).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.data()["updated_at"], before.data()["updated_at"]);
        }
        let audit = app.get_auth("/api/admin/audit?type=webhook.updated", &admin).await;
        assert_eq!(audit.data()["events"].as_array().unwrap().len(), 0, "{}", audit.text);
        // A real change is one event naming only what changed.
        let r = app
            .put_auth(
                &format!("/api/admin/webhooks/{id}"),
                &admin,
                json!({"description": "renamed", "enabled": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let audit = app.get_auth("/api/admin/audit?type=webhook.updated", &admin).await;
        let events = audit.data()["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["details"]["changed"], json!(["description"]));
    }

    async fn redirects_are_not_followed(backend: Backend) {
        let (first, elsewhere) = (Receiver::start().await, Receiver::start().await);
        first.script(&[Answer::Redirect(elsewhere.url())]);
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let (id, _) = create_endpoint(&app, &admin, &first.url(), json!(["user.registered"])).await;
        app.register("remo").await;
        let d = wait_delivery(&app, &admin, &id, "redirect recorded", |d| d["last_status_code"] == 302).await;
        assert_eq!(d["status"], "pending");
        assert!(d["last_error"].as_str().unwrap().contains("redirect"), "{d}");
        assert!(elsewhere.received().is_empty());
    }

    async fn an_endpoint_failing_for_too_long_is_disabled(backend: Backend) {
        let receiver = Receiver::start().await;
        receiver.script(&[Answer::Status(500), Answer::Status(500)]);
        let app = spawn_app_with(backend, hooks(&[("WEBHOOK_DISABLE_AFTER", "1h")])).await;
        let admin = app.admin().await.access;
        let (id, _) = create_endpoint(&app, &admin, &receiver.url(), json!(["user.registered"])).await;
        app.register("fabio").await;
        wait_delivery(&app, &admin, &id, "first failure", |d| d["attempts"] == 1 && d["last_status_code"] == 500).await;
        let admin = past_next_retry(&app).await;
        wait_delivery(&app, &admin, &id, "second failure", |d| d["attempts"] == 2 && d["last_status_code"] == 500).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let view = loop {
            let v = app.get_auth(&format!("/api/admin/webhooks/{id}"), &admin).await;
            if v.data()["enabled"] == false {
                break v;
            }
            assert!(Instant::now() < deadline, "{}", v.text);
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert_eq!(view.data()["disabled_reason"], "failing");
        let audit = app.get_auth("/api/admin/audit?type=webhook.disabled", &admin).await;
        assert_eq!(audit.data()["events"].as_array().unwrap().len(), 1);
        // The administrators are told by mail, with a link to the console and not the endpoint's
        // URL (it may carry a token).
        let notice = app.smtp.wait_for("admin@example.com", 1).await;
        let notice = notice.last().unwrap();
        assert!(notice.subject().contains("webhook endpoint was disabled"), "{}", notice.raw);
        assert!(notice.link().ends_with("/ui/admin/webhooks"), "{}", notice.text());
        assert!(!notice.text().contains(&receiver.url()), "{}", notice.text());

        // Disabled: no new delivery is queued. Enabling it clears the failing state, and the
        // pending retry goes out.
        app.register("flavia").await;
        assert_eq!(deliveries(&app, &admin, &id).await.len(), 1);
        let r = app.put_auth(&format!("/api/admin/webhooks/{id}"), &admin, json!({"enabled": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.data()["disabled_reason"].is_null() && r.data()["failing_since"].is_null());
        let admin = past_next_retry(&app).await;
        wait_delivery(&app, &admin, &id, "delivered after re-enabling", |d| d["status"] == "delivered").await;
    }

    async fn ssrf_targets_and_bad_input_are_refused_at_creation(backend: Backend) {
        let app = spawn_app_with(backend, Options::default()).await;
        let admin = app.admin().await.access;
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:9/",
            "http://2130706433/",
            "http://0.0.0.0/",
            "http://[fd00::1]/",
            "ftp://example.com/",
            "https://user:pass@example.com/",
            "javascript:alert(1)",
            "",
        ] {
            let r = app.post_auth("/api/admin/webhooks", &admin, json!({"url": url})).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.text);
            assert_eq!((r.body["code"].as_str(), r.body["field"].as_str()), (Some("invalid_url"), Some("url")), "{url}");
        }
        let long = format!("https://93.184.215.14/{}", "a".repeat(2048));
        let r = app.post_auth("/api/admin/webhooks", &admin, json!({"url": long})).await;
        assert_eq!(r.body["code"], "invalid_url");
        for (body, code) in [
            (json!({"url": "https://93.184.215.14/", "event_types": ["nope"]}), "invalid_event_types"),
            (json!({"url": "https://93.184.215.14/", "event_types": ["webhook.created"]}), "invalid_event_types"),
            (json!({"url": "https://93.184.215.14/", "event_types": []}), "invalid_event_types"),
            (json!({"url": "https://93.184.215.14/", "description": "x".repeat(501)}), "invalid_description"),
            (json!({"url": 5}), "invalid_request"),
            (json!({"event_types": ["*"]}), "invalid_request"),
        ] {
            let r = app.post_auth("/api/admin/webhooks", &admin, body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
            assert_eq!(r.body["code"], code, "{body}");
        }
        // Nothing was created.
        let list = app.get_auth("/api/admin/webhooks", &admin).await;
        assert!(list.data()["items"].as_array().unwrap().is_empty());

        // A public address literal is accepted (no delivery goes out: nothing happens yet),
        // and an update to a private one is refused like a creation.
        let (id, _) = create_endpoint(&app, &admin, "https://93.184.215.14/in", json!(["user.deleted"])).await;
        let r = app.put_auth(&format!("/api/admin/webhooks/{id}"), &admin, json!({"url": "http://192.168.0.10/"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["code"], "invalid_url");
        let view = app.get_auth(&format!("/api/admin/webhooks/{id}"), &admin).await;
        assert_eq!(view.data()["url"], "https://93.184.215.14/in");
    }

    async fn ssrf_targets_are_refused_at_delivery_time(backend: Backend) {
        let receiver = Receiver::start().await;
        let app = spawn_app_with(backend, hooks(&[("WEBHOOK_ALLOW_PRIVATE", "false")])).await;
        let admin = app.admin().await.access;
        let (id, _) = create_endpoint(&app, &admin, "https://93.184.215.14/in", json!(["user.registered"])).await;
        // The row is changed behind the API's back (as if an address had been allowed once, or
        // a name re-pointed): the worker must refuse on its own.
        let store = app.auth.store();
        let endpoint = uuid::Uuid::parse_str(&id).unwrap();
        let point_to = |url: String| porteiro_core::domain::webhook::WebhookUpdate { url: Some(url), ..Default::default() };
        store.update_webhook(endpoint, &point_to(receiver.url()), app.auth.now(), &[]).await.unwrap();
        app.register("sara").await;
        let d = wait_delivery(&app, &admin, &id, "refused literal", |d| d["attempts"] == 1 && d["last_error"].is_string()).await;
        assert!(d["last_error"].as_str().unwrap().contains("SSRF"), "{d}");

        let by_name = format!("http://localhost:{}/hooks", receiver.addr.port());
        store.update_webhook(endpoint, &point_to(by_name), app.auth.now(), &[]).await.unwrap();
        let admin = past_next_retry(&app).await;
        let d = wait_delivery(&app, &admin, &id, "refused name", |d| d["attempts"] == 2 && d["last_error"].is_string()).await;
        assert!(d["last_error"].as_str().unwrap().contains("SSRF"), "{d}");
        assert!(receiver.received().is_empty());
    }

    async fn only_administrators_manage_webhooks_and_unknown_ids_are_404(backend: Backend) {
        let app = spawn_app_with(backend, hooks(&[])).await;
        let admin = app.admin().await.access;
        let user = app.register("nora").await;
        let token = app.sign_in(&user).await.access;
        let (id, _) = create_endpoint(&app, &admin, "http://127.0.0.1:9/", json!(["user.deleted"])).await;
        let paths = [
            format!("/api/admin/webhooks/{id}"),
            format!("/api/admin/webhooks/{id}/deliveries"),
            "/api/admin/webhooks/dead-letters".to_owned(),
            "/api/admin/webhooks".to_owned(),
        ];
        for path in &paths {
            let r = app.get_auth(path, &token).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(app.get(path).await.status, StatusCode::UNAUTHORIZED, "{path}");
        }
        for path in ["/api/admin/webhooks".to_owned(), format!("/api/admin/webhooks/{id}/test"),
                     format!("/api/admin/webhooks/{id}/rotate-secret"), format!("/api/admin/webhooks/{id}/replay")] {
            let r = app.post_auth(&path, &token, json!({"url": "http://127.0.0.1:9/", "event_id": 1})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
        }
        assert_eq!(app.put_auth(&paths[0], &token, json!({"enabled": false})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.delete_auth(&paths[0], &token).await.status, StatusCode::FORBIDDEN);

        let ghost = uuid::Uuid::new_v4();
        for path in [format!("/api/admin/webhooks/{ghost}"), format!("/api/admin/webhooks/{ghost}/deliveries")] {
            assert_eq!(app.get_auth(&path, &admin).await.status, StatusCode::NOT_FOUND, "{path}");
        }
        for path in [format!("/api/admin/webhooks/{ghost}/test"), format!("/api/admin/webhooks/{ghost}/rotate-secret")] {
            assert_eq!(app.post_auth(&path, &admin, json!({})).await.status, StatusCode::NOT_FOUND, "{path}");
        }
        let r = app.post_auth(&format!("/api/admin/webhooks/{ghost}/replay"), &admin, json!({"event_id": 1})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(app.put_auth(&format!("/api/admin/webhooks/{ghost}"), &admin, json!({"enabled": true})).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/admin/webhooks/{ghost}"), &admin).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth("/api/admin/webhooks/not-a-uuid", &admin).await.status, StatusCode::BAD_REQUEST);

        // The administrator's update and delete work, and are audited.
        let r = app.put_auth(&paths[0], &admin, json!({"description": "renamed", "event_types": ["*"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!((r.data()["description"].as_str(), r.data()["event_types"].clone()), (Some("renamed"), json!(["*"])));
        assert_eq!(app.delete_auth(&paths[0], &admin).await.status, StatusCode::OK);
        assert_eq!(app.get_auth(&paths[0], &admin).await.status, StatusCode::NOT_FOUND);
        for kind in ["webhook.updated", "webhook.deleted"] {
            let audit = app.get_auth(&format!("/api/admin/audit?type={kind}"), &admin).await;
            assert_eq!(audit.data()["events"].as_array().unwrap().len(), 1, "{kind}");
        }
    }
}

/// The real binary, killed with SIGKILL when dropped (or by the test, mid-delivery).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `porteiro serve` on the SQLite database in `dir` and waits (up to 30 s) until it
/// answers.
async fn start_binary(dir: &std::path::Path, port: u16) -> Server {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_porteiro"))
        .arg("serve")
        .env_clear()
        .current_dir(dir)
        .env("DATA_DIR", dir)
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", port.to_string())
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .env("EMAIL_ENABLED", "false")
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_TIMEOUT", "2s")
        .env("WEBHOOK_POLL_INTERVAL", "50ms")
        .env("LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = client
            .get(format!("http://127.0.0.1:{port}/api/health"))
            .send()
            .await;
        if health.is_ok_and(|r| r.status() == StatusCode::OK) {
            return server;
        }
        assert!(Instant::now() < deadline, "porteiro did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_cut_off_by_kill_9_is_made_after_restart() {
    let receiver = Receiver::start().await;
    // The first request is held open: the process dies while the attempt is in flight.
    receiver.script(&[Answer::Hold]);
    let dir = std::env::temp_dir().join(format!("porteiro-kill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut server = start_binary(&dir, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/auth"))
        .json(&json!({"login": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = login["auth"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(format!("{base}/api/admin/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"url": receiver.url(), "event_types": ["user.registered"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["data"]["secret"].as_str().unwrap().to_owned();
    let registered = client
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": "kyra", "email": "kyra@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    let held = receiver.wait_for(1).await;
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    drop(server);

    let _restarted = start_binary(&dir, port).await;
    // The lease (2 s timeout + 5 s margin) runs out and the restarted worker sends it again.
    let deadline = Instant::now() + Duration::from_secs(40);
    let got = loop {
        let got = receiver.received();
        if got.len() >= 2 {
            break got;
        }
        assert!(Instant::now() < deadline, "not delivered after restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got[1].header("webhook-id"), held[0].header("webhook-id"));
    assert_eq!(got[1].json()["type"], "user.registered");
    assert_eq!(got[1].signatures_by(&secret), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
