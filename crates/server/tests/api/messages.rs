//! Private messages (`/api/messages`, issue 17): the round trip, encryption at rest (no
//! plaintext in the SQLite file or a `pg_dump`), no enumeration of recipients, ciphertexts that
//! cannot be moved between rows or parties, crypto-shredding with the sender's account, bad
//! input and the sending limit.

use porteiro_core::envelope::{Aad, KeyOwner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::both_backends;
use crate::helpers::{Options, PASSWORD, TestApp, Tokens, spawn_app, spawn_app_with};

/// Sends a message and returns the answer.
async fn send(
    app: &TestApp,
    from: &Tokens,
    to: &str,
    subject: &str,
    body: &str,
) -> crate::helpers::Reply {
    app.post_auth(
        "/api/messages",
        &from.access,
        json!({"to": to, "subject": subject, "body": body}),
    )
    .await
}

/// Sends a message that must be accepted; returns its id.
async fn sent_id(app: &TestApp, from: &Tokens, to: &str, subject: &str, body: &str) -> String {
    let r = send(app, from, to, subject, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

/// Runs a statement directly on the application's database (ids spliced as literals: they
/// are UUIDs the test got from the API).
async fn raw_execute(app: &TestApp, sql: &str) {
    let url = &app.env["DATABASE_URL"];
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
}

/// Reads one binary column directly from the application's database.
async fn raw_bytes(app: &TestApp, sql: &str) -> Vec<u8> {
    use sqlx::Row as _;
    let url = &app.env["DATABASE_URL"];
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get::<Vec<u8>, _>(0)
    } else {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{url}"))
            .await
            .unwrap();
        sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get::<Vec<u8>, _>(0)
    }
}

/// Every byte the database holds: the SQLite file and its write-ahead log, or a `pg_dump`.
fn database_bytes(app: &TestApp) -> Vec<u8> {
    let url = &app.env["DATABASE_URL"];
    if url.starts_with("postgres") {
        let out = std::process::Command::new("pg_dump")
            .arg("--no-owner")
            .arg(url)
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    } else {
        let mut bytes = std::fs::read(url).unwrap();
        if let Ok(wal) = std::fs::read(format!("{url}-wal")) {
            bytes.extend(wal);
        }
        bytes
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A send answer with what differs between any two sends (id, time) blanked.
fn shape(r: &crate::helpers::Reply) -> (StatusCode, Value) {
    let mut body = r.body.clone();
    body["data"]["id"] = json!("<id>");
    body["data"]["created_at"] = json!("<time>");
    body["data"]["to"] = json!("<to>");
    (r.status, body)
}

both_backends! {
    async fn messages_go_from_sender_to_recipient_and_each_deletes_their_own_copy(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bia = app.register("bia").await;
        let cleo = app.register("cleo").await;
        let (ta, tb, tc) = (app.sign_in(&ana).await, app.sign_in(&bia).await, app.sign_in(&cleo).await);
        // Act: one by username, one by address in another spelling.
        let r = send(&app, &ta, "bia", "Olá", "Primeira mensagem").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["status"], "success");
        assert_eq!(r.body["message"], "Message sent.");
        assert_eq!(r.data()["box"], "sent");
        assert_eq!(r.data()["to"], "bia");
        assert_eq!(r.data()["subject"], "Olá");
        let first = r.data()["id"].as_str().unwrap().to_owned();
        let second = sent_id(&app, &ta, " BIA@Example.com ", "Second", "Segunda\nlinha").await;
        // Assert: the inbox, newest first, unread.
        let inbox = app.get_auth("/api/messages?box=inbox", &tb.access).await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
        assert_eq!(inbox.data()["total"], 2);
        assert_eq!(inbox.data()["box"], "inbox");
        let items = inbox.data()["items"].as_array().unwrap();
        assert_eq!(items[0]["id"], second.as_str());
        assert_eq!(items[0]["to"], "BIA@Example.com");
        assert_eq!(items[1]["id"], first.as_str());
        assert_eq!(items[1]["from"], "ana");
        assert_eq!(items[1]["subject"], "Olá");
        assert_eq!(items[1]["unread"], true);
        assert_eq!(items[1]["readable"], true);
        assert!(items[1].get("body").is_none());
        // Reading marks it read, for the recipient only.
        let read = app.get_auth(&format!("/api/messages/{first}"), &tb.access).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.data()["body"], "Primeira mensagem");
        assert_eq!(read.data()["box"], "inbox");
        assert!(read.data()["read_at"].is_string());
        let inbox = app.get_auth("/api/messages", &tb.access).await;
        assert_eq!(inbox.data()["items"][1]["unread"], false);
        let as_sent = app.get_auth(&format!("/api/messages/{second}"), &ta.access).await;
        assert_eq!(as_sent.status, StatusCode::OK);
        assert_eq!(as_sent.data()["box"], "sent");
        assert_eq!(as_sent.data()["body"], "Segunda\nlinha");
        assert_eq!(as_sent.data()["read_at"], Value::Null);
        let sent = app.get_auth("/api/messages?box=sent&page=1&per_page=1", &ta.access).await;
        assert_eq!((sent.data()["total"].clone(), sent.data()["total_pages"].clone()), (json!(2), json!(2)));
        assert_eq!(sent.data()["items"][0]["id"], second.as_str());
        assert_eq!(sent.data()["items"][0]["unread"], false);
        // Nobody else sees them.
        assert_eq!(app.get_auth(&format!("/api/messages/{first}"), &tc.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/messages/{first}"), &tc.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth("/api/messages", &tc.access).await.data()["total"], 0);
        let admin = app.admin().await;
        assert_eq!(app.get_auth(&format!("/api/messages/{first}"), &admin.access).await.status, StatusCode::NOT_FOUND);
        // Deleting removes the caller's copy only.
        let d = app.delete_auth(&format!("/api/messages/{first}"), &tb.access).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.text);
        assert_eq!(app.get_auth(&format!("/api/messages/{first}"), &tb.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/messages/{first}"), &tb.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth(&format!("/api/messages/{first}"), &ta.access).await.status, StatusCode::OK);
        assert_eq!(app.delete_auth(&format!("/api/messages/{first}"), &ta.access).await.status, StatusCode::OK);
        assert_eq!(app.get_auth(&format!("/api/messages/{first}"), &ta.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth("/api/messages?box=sent", &ta.access).await.data()["total"], 1);
        // A note to self is in both folders.
        let note = sent_id(&app, &ta, "ana", "Lembrete", "comprar pão").await;
        assert_eq!(app.get_auth("/api/messages", &ta.access).await.data()["items"][0]["id"], note.as_str());
        assert_eq!(app.get_auth(&format!("/api/messages/{note}"), &ta.access).await.data()["box"], "inbox");
    }

    async fn subjects_and_bodies_never_reach_the_database_in_plaintext(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        app.register("bia").await;
        let ta = app.sign_in(&ana).await;
        let subject = "SUBJECT-MARKER-7f3a9c";
        let body = "BODY-MARKER-b81e44 the launch code is 0000";
        // Act: delivered, undelivered, read.
        let id = sent_id(&app, &ta, "bia", subject, body).await;
        sent_id(&app, &ta, "nobody-here", subject, body).await;
        assert_eq!(app.get_auth(&format!("/api/messages/{id}"), &ta.access).await.data()["body"], body);
        // Assert
        let bytes = database_bytes(&app);
        assert!(contains(&bytes, b"bia"), "the dump holds the accounts");
        for marker in ["SUBJECT-MARKER-7f3a9c", "BODY-MARKER-b81e44", "launch code"] {
            assert!(!contains(&bytes, marker.as_bytes()), "{marker} is stored in plaintext");
            assert!(!contains(&bytes, hex(marker.as_bytes()).as_bytes()), "{marker} is stored hex-encoded");
        }
    }

    async fn unknown_disabled_and_opted_out_recipients_are_answered_like_real_ones(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bia = app.register("bia").await;
        let cleo = app.register("cleo").await;
        let dave = app.register("dave").await;
        let (ta, tc) = (app.sign_in(&ana).await, app.sign_in(&cleo).await);
        let me = app.get_auth("/api/auth/me", &tc.access).await;
        assert_eq!(me.data()["accept_messages"], true);
        let off = app.put_auth(&format!("/api/users/{}", cleo.id), &tc.access, json!({"accept_messages": false})).await;
        assert_eq!(off.status, StatusCode::OK, "{}", off.text);
        assert_eq!(off.data()["accept_messages"], false);
        let admin = app.admin().await;
        let r = app.post_auth(&format!("/api/users/{}/disable", dave.id), &admin.access, json!({})).await;
        assert!(r.status.is_success(), "{}", r.text);
        // Act
        let real = send(&app, &ta, "bia", "Oi", "Olá").await;
        let answers = [
            send(&app, &ta, "cleo", "Oi", "Olá").await,
            send(&app, &ta, &dave.email, "Oi", "Olá").await,
            send(&app, &ta, "nobody-at-all", "Oi", "Olá").await,
            send(&app, &ta, "ghost@example.net", "Oi", "Olá").await,
        ];
        // Assert: the same status and body, apart from id, time and the recipient as typed.
        assert_eq!(real.status, StatusCode::CREATED, "{}", real.text);
        let mut header_names: Vec<_> = real.headers.keys().map(|k| k.as_str().to_owned()).collect();
        header_names.sort();
        for other in &answers {
            assert_eq!(shape(other), shape(&real), "{}", other.text);
            let mut names: Vec<_> = other.headers.keys().map(|k| k.as_str().to_owned()).collect();
            names.sort();
            assert_eq!(names, header_names);
        }
        // Only bia got one; the sender keeps all five, with the recipients as typed.
        let tb = app.sign_in(&bia).await;
        assert_eq!(app.get_auth("/api/messages", &tb.access).await.data()["total"], 1);
        assert_eq!(app.get_auth("/api/messages", &tc.access).await.data()["total"], 0);
        let dave_id = dave.id.parse().unwrap();
        let page = app.auth.store().messages(dave_id, porteiro_core::domain::message::MessageBox::Inbox, 10, 0).await.unwrap();
        assert_eq!(page.total, 0);
        let sent = app.get_auth("/api/messages?box=sent", &ta.access).await;
        assert_eq!(sent.data()["total"], 5);
        let to: Vec<_> = sent.data()["items"].as_array().unwrap().iter().map(|m| m["to"].as_str().unwrap().to_owned()).collect();
        assert_eq!(to, ["ghost@example.net", "nobody-at-all", dave.email.as_str(), "cleo", "bia"]);
        // Turning messages back on is not retroactive.
        app.put_auth(&format!("/api/users/{}", cleo.id), &tc.access, json!({"accept_messages": true})).await;
        assert_eq!(app.get_auth("/api/messages", &tc.access).await.data()["total"], 0);
        sent_id(&app, &ta, "cleo", "Again", "Olá").await;
        assert_eq!(app.get_auth("/api/messages", &tc.access).await.data()["total"], 1);
    }

    async fn a_ciphertext_moved_to_another_row_or_party_is_unreadable_and_the_rest_still_works(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bia = app.register("bia").await;
        let (ta, tb) = (app.sign_in(&ana).await, app.sign_in(&bia).await);
        let m1 = sent_id(&app, &ta, "bia", "One", "first").await;
        let m2 = sent_id(&app, &ta, "bia", "Two", "second").await;
        let m3 = sent_id(&app, &ta, "bia", "Three", "third").await;
        let m4 = sent_id(&app, &ta, "bia", "Four", "fourth").await;
        // Act: another row's content; another row's wrapped key; the other party's wrapped key.
        raw_execute(&app, &format!("update messages set content = (select content from messages where id = '{m2}') where id = '{m1}'")).await;
        raw_execute(&app, &format!("update messages set recipient_key = (select recipient_key from messages where id = '{m2}') where id = '{m3}'")).await;
        raw_execute(&app, &format!("update messages set recipient_key = sender_key where id = '{m4}'")).await;
        // Assert
        for id in [&m1, &m3, &m4] {
            let r = app.get_auth(&format!("/api/messages/{id}"), &tb.access).await;
            assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
            assert_eq!(r.body["code"], "data_unreadable");
            assert!(!r.text.contains("One") && !r.text.contains("second"));
        }
        let ok = app.get_auth(&format!("/api/messages/{m2}"), &tb.access).await;
        assert_eq!((ok.status, ok.data()["body"].clone()), (StatusCode::OK, json!("second")));
        let inbox = app.get_auth("/api/messages", &tb.access).await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
        let readable: Vec<_> = inbox.data()["items"].as_array().unwrap().iter().map(|m| (m["id"].as_str().unwrap().to_owned(), m["readable"].as_bool().unwrap())).collect();
        assert_eq!(readable, [(m4.clone(), false), (m3.clone(), false), (m2.clone(), true), (m1.clone(), false)]);
        // The sender's copy of m4 was not touched; the accounts keep working.
        assert_eq!(app.get_auth(&format!("/api/messages/{m4}"), &ta.access).await.data()["body"], "fourth");
        assert_eq!(app.me_status(&tb.access).await, StatusCode::OK);
        assert_eq!(app.delete_auth(&format!("/api/messages/{m1}"), &tb.access).await.status, StatusCode::OK);
        sent_id(&app, &tb, "ana", "Still", "working").await;
    }

    async fn deleting_the_senders_account_keeps_the_recipients_copy_and_shreds_the_senders(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bia = app.register("bia").await;
        let (ta, tb) = (app.sign_in(&ana).await, app.sign_in(&bia).await);
        let id = sent_id(&app, &ta, "bia", "Adeus", "kept by bia").await;
        let sender_key = raw_bytes(&app, &format!("select sender_key from messages where id = '{id}'")).await;
        let ana_id: uuid::Uuid = ana.id.parse().unwrap();
        let aad = Aad { table: "messages", column: "sender_key", record: &id, owner: KeyOwner::User(ana_id) };
        assert!(app.auth.envelope().open(&aad, &sender_key).await.is_ok(), "the sender's copy opens while the account exists");
        // Act
        let r = app.request(app.client.delete(format!("{}/api/users/{}", app.url, ana.id)).bearer_auth(&ta.access).json(&json!({"password": PASSWORD}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // Assert
        let read = app.get_auth(&format!("/api/messages/{id}"), &tb.access).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.data()["body"], "kept by bia");
        assert_eq!(read.data()["from"], Value::Null);
        // The account's wrapped copy is erased with it, and the old wrapping (in an older copy
        // of the database, say) no longer opens: its data key is destroyed.
        let bia_id: uuid::Uuid = bia.id.parse().unwrap();
        let stored = app.auth.store().message(bia_id, id.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.sender_key, None);
        let shredded = app.auth.envelope().open(&aad, &sender_key).await;
        assert!(matches!(shredded, Err(porteiro_core::Error::DataUnreadable)), "{shredded:?}");
        assert_eq!(app.delete_auth(&format!("/api/messages/{id}"), &tb.access).await.status, StatusCode::OK);
        assert_eq!(app.get_auth("/api/messages", &tb.access).await.data()["total"], 0);
    }

    async fn bad_message_input_is_refused_with_4xx_json(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        app.register("bia").await;
        let ta = app.sign_in(&ana).await;
        let max_body = "x".repeat(60 * 1024);
        let subject_200 = "s".repeat(200);
        // Act / Assert: the limits themselves pass.
        assert_eq!(send(&app, &ta, "bia", &subject_200, &max_body).await.status, StatusCode::CREATED);
        let over_body = format!("{max_body}x");
        let subject_201 = "s".repeat(201);
        let bodies = [
            (json!({"to": "bia", "subject": "Oi", "body": over_body}), "invalid_body"),
            (json!({"to": "bia", "subject": subject_201, "body": "x"}), "invalid_subject"),
            (json!({"to": "bia", "subject": "", "body": "x"}), "invalid_subject"),
            (json!({"to": "bia", "subject": "Oi", "body": "   "}), "invalid_body"),
            (json!({"to": "", "subject": "Oi", "body": "x"}), "invalid_recipient"),
            (json!({"to": "bia", "subject": "Oi"}), "invalid_request"),
            (json!({"subject": "Oi", "body": "x"}), "invalid_request"),
            (json!({"to": 5, "subject": "Oi", "body": "x"}), "invalid_request"),
            (json!({"to": "bia", "subject": ["Oi"], "body": "x"}), "invalid_request"),
            (json!({"to": "bia", "subject": "Oi", "body": null}), "invalid_request"),
            (json!(["bia"]), "invalid_request"),
        ];
        for (body, code) in bodies {
            let r = app.post_auth("/api/messages", &ta.access, body.clone()).await;
            assert!(r.status.is_client_error(), "{body}: {} {}", r.status, r.text);
            assert_eq!(r.body["status"], "error", "{body}");
            assert_eq!(r.body["code"], code, "{body}: {}", r.text);
        }
        let raw = app.request(app.client.post(format!("{}/api/messages", app.url)).bearer_auth(&ta.access).header("content-type", "application/json").body("{not json")).await;
        assert_eq!((raw.status, raw.body["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_json")));
        let huge = app.post_auth("/api/messages", &ta.access, json!({"to": "bia", "subject": "Oi", "body": "x".repeat(70 * 1024)})).await;
        assert!(huge.status.is_client_error(), "{}", huge.status);
        let unauthenticated = app.post("/api/messages", json!({"to": "bia", "subject": "Oi", "body": "x"})).await;
        assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
        for (path, code) in [
            ("/api/messages?box=trash", "invalid_box"),
            ("/api/messages?box=", "invalid_box"),
            ("/api/messages?page=0", "invalid_pagination"),
            ("/api/messages?per_page=0", "invalid_pagination"),
            ("/api/messages?per_page=101", "invalid_pagination"),
            ("/api/messages?page=18446744073709551615&per_page=100", "invalid_pagination"),
            ("/api/messages?page=abc", "invalid_query"),
            ("/api/messages?page=-1", "invalid_query"),
            ("/api/messages/not-a-uuid", "invalid_path"),
            ("/api/messages/123", "invalid_path"),
        ] {
            let r = app.get_auth(path, &ta.access).await;
            assert_eq!((r.status, r.body["code"].clone()), (StatusCode::BAD_REQUEST, json!(code)), "{path}: {}", r.text);
        }
        let r = app.delete_auth("/api/messages/%00", &ta.access).await;
        assert!(r.status.is_client_error(), "{}", r.status);
        let unknown = uuid::Uuid::new_v4();
        assert_eq!(app.get_auth(&format!("/api/messages/{unknown}"), &ta.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/messages/{unknown}"), &ta.access).await.status, StatusCode::NOT_FOUND);
        let huge_page = app.get_auth("/api/messages?page=1000000&per_page=100", &ta.access).await;
        assert_eq!(huge_page.status, StatusCode::OK, "{}", huge_page.text);
        assert_eq!(huge_page.data()["items"], json!([]));
    }

    async fn sending_is_limited_per_sender_whoever_the_recipient_is(backend: Backend) {
        // Arrange
        let app = spawn_app_with(backend, Options { env: vec![("MESSAGES_PER_HOUR", "3".to_owned())] }).await;
        let ana = app.register("ana").await;
        let bia = app.register("bia").await;
        let (ta, tb) = (app.sign_in(&ana).await, app.sign_in(&bia).await);
        // Act
        for to in ["bia", "nobody", "bia"] {
            assert_eq!(send(&app, &ta, to, "Oi", "x").await.status, StatusCode::CREATED);
        }
        let limited = send(&app, &ta, "nobody-else", "Oi", "x").await;
        // Assert
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.text);
        assert_eq!(limited.body["code"], "too_many_requests");
        let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1200).contains(&retry), "{retry}");
        assert_eq!(send(&app, &ta, "bia", "Oi", "x").await.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(send(&app, &tb, "ana", "Oi", "x").await.status, StatusCode::CREATED);
        assert_eq!(app.get_auth("/api/messages?box=sent", &ta.access).await.data()["total"], 3);
        // One message every 20 minutes comes back.
        app.clock.advance(chrono::Duration::minutes(21));
        let ta = app.sign_in(&ana).await;
        assert_eq!(send(&app, &ta, "bia", "Oi", "x").await.status, StatusCode::CREATED);
        assert_eq!(send(&app, &ta, "bia", "Oi", "x").await.status, StatusCode::TOO_MANY_REQUESTS);
    }
}
