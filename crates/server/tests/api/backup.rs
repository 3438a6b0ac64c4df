//! Backups end to end, with the real binary (`porteiro backup`, `backup verify`, `restore`) on
//! real SQLite files and the real PostgreSQL of `TEST_POSTGRES_URL`, and the standard `age` and
//! `zstd` tools (Debian packages, installed by scripts/test.sh) as the independent readers.
//!
//! Round trips move a live deployment from one backend to the other and sign in on the restored
//! one; damaged backups are refused and leave the target exactly as it was (compared through a
//! backup of the target taken before and after).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Options, TestApp, spawn_app, spawn_app_with};

/// A scratch directory with an age key pair, and the binary.
struct Kit {
    dir: PathBuf,
    identity: PathBuf,
    recipient: String,
}

impl Kit {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("porteiro-backup-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let identity = dir.join("key.txt");
        let recipient = keygen(&identity);
        Self {
            dir,
            identity,
            recipient,
        }
    }

    fn porteiro(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_porteiro"));
        cmd.args(args)
            .env_clear()
            .current_dir(&self.dir)
            .env("ARGON2_MEMORY_KIB", "256")
            .env("ARGON2_ITERATIONS", "1")
            .env("LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.porteiro(args, env);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its one-line error.
    fn refused(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.porteiro(args, env);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8(out.stderr).unwrap();
        let last = err.trim_end().lines().last().unwrap_or("").to_owned();
        assert!(last.starts_with("error: "), "{err}");
        last
    }

    /// `porteiro backup` of the database at `url` into `name`.
    fn backup(&self, name: &str, url: &str, data_dir: &Path) -> PathBuf {
        let file = self.dir.join(name);
        let out = self.ok(
            &["backup", file.to_str().unwrap()],
            &[
                ("DATABASE_URL", url),
                ("DATA_DIR", data_dir.to_str().unwrap()),
                ("BACKUP_RECIPIENT", &self.recipient),
            ],
        );
        assert!(out.contains("backup written to"), "{out}");
        file
    }

    /// The plaintext of a backup, read with the standard `age` and `zstd` tools only.
    fn plaintext(&self, file: &Path) -> String {
        let mut age = Command::new("age")
            .args(["-d", "-i"])
            .arg(&self.identity)
            .arg(file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the age tool (Debian package age) is installed");
        let out = Command::new("zstd")
            .args(["-d", "-c"])
            .stdin(age.stdout.take().unwrap())
            .output()
            .expect("the zstd tool is installed");
        assert!(age.wait().unwrap().success(), "age -d failed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every table's rows in a fresh backup of `url`: equal before and after means unchanged.
    fn contents(&self, url: &str, data_dir: &Path) -> Vec<String> {
        let name = format!("snapshot-{}.age", uuid::Uuid::new_v4().simple());
        let file = self.backup(&name, url, data_dir);
        let text = self.plaintext(&file);
        // The header (its time) and the trailer (a checksum over the header) differ; the mail
        // queue changes on its own as the server delivers.
        let mut table = String::new();
        let mut lines: Vec<String> = Vec::new();
        for line in text.lines().skip(1) {
            if let Some(t) = line.strip_prefix("{\"table\":\"") {
                table = t.trim_end_matches("\"}").to_owned();
            }
            if line.starts_with("{\"trailer\"") || table == "mail_outbox" {
                continue;
            }
            lines.push(format!("{table} {line}"));
        }
        lines.sort();
        lines
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Generates an age identity file with `age-keygen`; returns its public key.
fn keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen (Debian package age) is installed");
    assert!(out.status.success());
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned()
}

/// A new, empty database of `backend` and a data directory holding `master_key_from`'s key.
async fn empty_target(backend: Backend, kit: &Kit, master_key_from: &Path) -> (String, PathBuf) {
    let dir = kit
        .dir
        .join(format!("target-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(master_key_from.join("master.key"), dir.join("master.key")).unwrap();
    let url = match backend {
        Backend::Sqlite => dir.join("porteiro.db").to_string_lossy().into_owned(),
        Backend::Postgres => {
            let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
            porteiro_store_postgres::testing::fresh_database(&admin)
                .await
                .unwrap()
        }
    };
    (url, dir)
}

fn has_postgres() -> bool {
    if std::env::var("TEST_POSTGRES_URL").is_err() {
        eprintln!("TEST_POSTGRES_URL is not set: skipping a cross-backend backup test");
        return false;
    }
    true
}

async fn audit_ids(app: &TestApp, token: &str) -> BTreeMap<i64, String> {
    let r = app.get_auth("/api/admin/audit?limit=200", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn env_of(app: &TestApp) -> (String, PathBuf) {
    (app.env["DATABASE_URL"].clone(), app.dir.clone())
}

/// Moves a live deployment from `from` to `to` with `backup` + `restore`, then signs in there:
/// same passwords, the authenticator app still works, roles and audit history kept, and the old
/// sessions revoked unless `keep_sessions`.
async fn round_trip(from: Backend, to: Backend, keep_sessions: bool) {
    let app = spawn_app(from).await;
    let alice = app.register("alice").await;
    let alice_tokens = app.sign_in(&alice).await;
    let mut bob = crate::mfa::enrol(&app, "bob").await;
    let admin = app.admin().await;
    let history = audit_ids(&app, &admin.access).await;
    assert!(history.values().any(|t| t == "user.registered"));

    let kit = Kit::new();
    let (url, data_dir) = env_of(&app);
    // Taken while the source server runs.
    let file = kit.backup("move.age", &url, &data_dir);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions())
            & 0o777,
        0o600
    );
    let (target_url, target_dir) = empty_target(to, &kit, &data_dir).await;
    let mut args = vec!["restore", file.to_str().unwrap()];
    if keep_sessions {
        args.push("--keep-sessions");
    }
    let out = kit.ok(
        &args,
        &[
            ("DATABASE_URL", &target_url),
            ("DATA_DIR", target_dir.to_str().unwrap()),
            ("BACKUP_IDENTITY_FILE", kit.identity.to_str().unwrap()),
        ],
    );
    assert!(out.contains("restored"), "{out}");

    let restored = spawn_app_with(
        to,
        Options {
            env: vec![
                ("DATABASE_URL", target_url.clone()),
                ("DATA_DIR", target_dir.to_string_lossy().into_owned()),
            ],
        },
    )
    .await;
    // Same password.
    restored.sign_in(&alice).await;
    // The authenticator app: a code computed from the secret handed out before the move.
    let token = crate::mfa::mfa_token(&restored, &bob.user).await;
    let code = bob.code(&restored);
    let r = crate::mfa::verify(&restored, &token, &code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Roles: the administrator reads the audit log, alice may not.
    let admin = restored.admin().await;
    let after = audit_ids(&restored, &admin.access).await;
    for (id, kind) in &history {
        assert_eq!(
            after.get(id),
            Some(kind),
            "audit event {id} kept with its id"
        );
    }
    let alice_now = restored.sign_in(&alice).await;
    let r = restored
        .get_auth("/api/admin/audit?limit=1", &alice_now.access)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // Sessions opened before the backup.
    let r = restored
        .post("/refresh", json!({"refresh": alice_tokens.refresh}))
        .await;
    if keep_sessions {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    } else {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.body["code"], "invalid_refresh_token", "{}", r.text);
        assert_eq!(
            restored.me_status(&alice_tokens.access).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // New audit events continue after the restored ids (the identity sequence moved on).
    let latest = audit_ids(&restored, &admin.access).await;
    let max_before = history.keys().max().copied().unwrap_or(0);
    assert!(latest.keys().any(|id| *id > max_before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_postgres_keeps_accounts_able_to_sign_in() {
    if has_postgres() {
        round_trip(Backend::Sqlite, Backend::Postgres, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_to_sqlite_keeps_accounts_able_to_sign_in() {
    if has_postgres() {
        round_trip(Backend::Postgres, Backend::Sqlite, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_sessions_leaves_restored_sessions_usable() {
    round_trip(Backend::Sqlite, Backend::Sqlite, true).await;
}

both_backends! {
    async fn the_age_tool_decrypts_a_backup_and_zstd_decompresses_it(backend: Backend) {
        let app = spawn_app(backend).await;
        app.register("carol").await;
        let kit = Kit::new();
        let (url, dir) = env_of(&app);
        let file = kit.backup("b.age", &url, &dir);
        let text = kit.plaintext(&file);
        let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(header["format"], "porteiro-backup");
        assert_eq!(header["source"], if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
        assert!(text.contains("\"carol\""));
        assert!(text.lines().last().unwrap().starts_with("{\"trailer\""));
        // And `backup verify` agrees, without a database.
        let out = kit.ok(
            &["backup", "verify", file.to_str().unwrap()],
            &[("BACKUP_IDENTITY_FILE", kit.identity.to_str().unwrap())],
        );
        assert!(out.contains("is intact"), "{out}");
    }

    async fn damaged_or_foreign_backups_are_refused_and_change_nothing(backend: Backend) {
        let source = spawn_app(backend).await;
        source.register("dave").await;
        let target = spawn_app(backend).await;
        target.register("erin").await;
        let kit = Kit::new();
        let (url, dir) = env_of(&source);
        let good = kit.backup("good.age", &url, &dir);
        let bytes = std::fs::read(&good).unwrap();
        let (target_url, target_dir) = env_of(&target);
        let before = kit.contents(&target_url, &target_dir);
        let key = kit.identity.to_str().unwrap().to_owned();
        let restore = |file: &Path, env: &[(&str, &str)]| {
            let mut all = vec![
                ("DATABASE_URL", target_url.as_str()),
                ("DATA_DIR", target_dir.to_str().unwrap()),
            ];
            all.extend_from_slice(env);
            kit.refused(&["restore", file.to_str().unwrap(), "--force"], &all)
        };

        // Truncated.
        let truncated = kit.dir.join("truncated.age");
        std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = restore(&truncated, &[("BACKUP_IDENTITY_FILE", &key)]);
        assert!(e.contains("truncated") || e.contains("damaged"), "{e}");
        // One byte changed in the payload.
        let mut flipped = bytes.clone();
        let at = bytes.len() - 40;
        flipped[at] ^= 0x20;
        let corrupted = kit.dir.join("corrupted.age");
        std::fs::write(&corrupted, &flipped).unwrap();
        let e = restore(&corrupted, &[("BACKUP_IDENTITY_FILE", &key)]);
        assert!(e.contains("damaged") || e.contains("truncated"), "{e}");
        // Another key.
        let other = kit.dir.join("other-key.txt");
        keygen(&other);
        let e = restore(&good, &[("BACKUP_IDENTITY_FILE", other.to_str().unwrap())]);
        assert!(e.contains("none of the configured keys"), "{e}");
        // No key at all.
        let e = restore(&good, &[]);
        assert!(e.contains("no backup key") && e.contains("BACKUP_IDENTITY_FILE"), "{e}");
        // A well-encrypted stream whose trailer is missing: rows are loaded, then refused
        // before the commit.
        let text = kit.plaintext(&good);
        let cut: String = text.lines().take(text.lines().count() - 1).map(|l| format!("{l}\n")).collect();
        let resealed = kit.dir.join("resealed.age");
        seal(&kit, &cut, &resealed);
        let e = restore(&resealed, &[("BACKUP_IDENTITY_FILE", &key)]);
        assert!(e.contains("trailer"), "{e}");
        // A changed row, resealed: the table checksum catches it.
        let forged: String = text.replace("\"dave\"", "\"mallory\"");
        assert_ne!(forged, text);
        seal(&kit, &forged, &resealed);
        let e = restore(&resealed, &[("BACKUP_IDENTITY_FILE", &key)]);
        assert!(e.contains("checksum"), "{e}");
        // Not empty, no --force.
        let e = kit.refused(
            &["restore", good.to_str().unwrap()],
            &[
                ("DATABASE_URL", target_url.as_str()),
                ("DATA_DIR", target_dir.to_str().unwrap()),
                ("BACKUP_IDENTITY_FILE", &key),
            ],
        );
        assert!(e.contains("not empty") && e.contains("--force"), "{e}");

        assert_eq!(kit.contents(&target_url, &target_dir), before, "the target is unchanged");
        // The target still works.
        assert_eq!(target.sign_in_as_status("erin", crate::helpers::PASSWORD).await, StatusCode::OK);

        // And --force with the good backup replaces it.
        kit.ok(
            &["restore", good.to_str().unwrap(), "--force"],
            &[
                ("DATABASE_URL", target_url.as_str()),
                ("DATA_DIR", target_dir.to_str().unwrap()),
                ("BACKUP_IDENTITY_FILE", &key),
            ],
        );
        let after = kit.contents(&target_url, &target_dir);
        assert!(after.iter().any(|l| l.contains("\"dave\"")));
        assert!(!after.iter().any(|l| l.contains("\"erin\"")));
    }

    async fn a_backup_under_write_load_is_a_consistent_snapshot(backend: Backend) {
        let app = std::sync::Arc::new(spawn_app(backend).await);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    app.register(&format!("load{n}")).await;
                    n += 1;
                }
                n
            })
        };
        // Let some registrations land first, polling (no sleeps).
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = app.admin().await;
        while audit_ids(&app, &admin.access).await.values().filter(|t| *t == "user.registered").count() < 5 {
            assert!(Instant::now() < deadline, "no registrations");
            tokio::task::yield_now().await;
        }
        let kit = Kit::new();
        let (url, dir) = env_of(&app);
        let file = {
            let kit_dir = kit.dir.clone();
            let (recipient, url, dir) = (kit.recipient.clone(), url.clone(), dir.clone());
            tokio::task::spawn_blocking(move || {
                let file = kit_dir.join("load.age");
                let out = Command::new(env!("CARGO_BIN_EXE_porteiro"))
                    .args(["backup", file.to_str().unwrap()])
                    .env_clear()
                    .env("DATABASE_URL", url)
                    .env("DATA_DIR", dir)
                    .env("BACKUP_RECIPIENT", recipient)
                    .env("LOG_LEVEL", "warn")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                file
            })
            .await
            .unwrap()
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let registered = writer.await.unwrap();
        assert!(registered > 0);

        // Each registration writes the account, its role and its event in one transaction:
        // a snapshot has all three or none, for every account.
        let text = kit.plaintext(&file);
        let mut table = String::new();
        let (mut users, mut with_role, mut with_event) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v.get("table").and_then(Value::as_str) {
                t.clone_into(&mut table);
                continue;
            }
            let Some(row) = v.as_array() else { continue };
            match table.as_str() {
                "users" if row[1].as_str().unwrap().starts_with("load") => {
                    users.insert(row[0].as_str().unwrap().to_owned());
                }
                "user_roles" => {
                    with_role.insert(row[0].as_str().unwrap().to_owned());
                }
                "audit_events" if row[2] == "user.registered" => {
                    with_event.insert(row[4].as_str().unwrap_or_default().to_owned());
                }
                _ => {}
            }
        }
        assert!(!users.is_empty());
        for id in &users {
            assert!(with_role.contains(id) && with_event.contains(id), "account {id} is half there");
        }
        let load_events = with_event.iter().filter(|id| users.contains(*id)).count();
        assert_eq!(load_events, users.len());
        // And it restores.
        let (target_url, target_dir) = empty_target(Backend::Sqlite, &kit, &dir).await;
        let out = kit.ok(
            &["restore", file.to_str().unwrap()],
            &[
                ("DATABASE_URL", &target_url),
                ("DATA_DIR", target_dir.to_str().unwrap()),
                ("BACKUP_IDENTITY_FILE", kit.identity.to_str().unwrap()),
            ],
        );
        assert!(out.contains("restored"), "{out}");
    }

    async fn scheduled_backups_appear_and_are_pruned(backend: Backend) {
        let kit = Kit::new();
        let backups = kit.dir.join("scheduled");
        let app = spawn_app_with(
            backend,
            Options {
                env: vec![
                    ("BACKUP_DIR", backups.to_string_lossy().into_owned()),
                    ("BACKUP_INTERVAL", "1s".to_owned()),
                    ("BACKUP_KEEP", "2".to_owned()),
                    ("BACKUP_RECIPIENT", kit.recipient.clone()),
                ],
            },
        )
        .await;
        app.register("frank").await;
        let list = || -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&backups)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            v.retain(|p| p.extension().is_some_and(|e| e == "age"));
            v.sort();
            v
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut first: Option<PathBuf> = None;
        loop {
            let files = list();
            assert!(files.len() <= 2, "kept more than BACKUP_KEEP: {files:?}");
            if first.is_none() {
                first = files.first().cloned();
            }
            // Pruned: the first backup seen is gone, and two remain.
            if let Some(f) = &first && !f.exists() && files.len() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "no pruning within a minute: {files:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let newest = list().pop().unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&newest).unwrap().permissions()) & 0o777,
            0o600
        );
        let out = kit.ok(
            &["backup", "verify", newest.to_str().unwrap()],
            &[("BACKUP_IDENTITY_FILE", kit.identity.to_str().unwrap())],
        );
        assert!(out.contains("is intact"), "{out}");
        assert!(kit.plaintext(&newest).contains("\"frank\""));
    }
}

/// Compresses `text` with `zstd` and encrypts it with `age` to the kit's key.
fn seal(kit: &Kit, text: &str, out: &Path) {
    let plain = kit.dir.join("plain.txt");
    std::fs::write(&plain, text).unwrap();
    let zst = kit.dir.join("plain.txt.zst");
    let s = Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&plain)
        .status()
        .unwrap();
    assert!(s.success());
    let s = Command::new("age")
        .args(["-r", &kit.recipient, "-o"])
        .arg(out)
        .arg(&zst)
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn backup_commands_explain_themselves_and_need_a_key() {
    let kit = Kit::new();
    for args in [
        vec!["backup", "--help"],
        vec!["backup", "verify", "--help"],
        vec!["restore", "--help"],
    ] {
        let out = kit.ok(&args, &[]);
        assert!(out.contains("Usage"), "{out}");
    }
    let help = kit.ok(&["restore", "--help"], &[]);
    assert!(
        help.contains("--force") && help.contains("--keep-sessions"),
        "{help}"
    );
    let db = kit.dir.join("p.db");
    let e = kit.refused(
        &["backup", "x.age"],
        &[
            ("DATABASE_URL", db.to_str().unwrap()),
            ("DATA_DIR", kit.dir.to_str().unwrap()),
        ],
    );
    assert!(
        e.contains("no backup key") && e.contains("BACKUP_RECIPIENT"),
        "{e}"
    );
    let e = kit.refused(&["backup", "verify", "x.age"], &[]);
    assert!(
        e.contains("BACKUP_IDENTITY_FILE") && e.contains("BACKUP_PASSPHRASE"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passphrase_encrypts_and_decrypts() {
    let app = spawn_app(Backend::Sqlite).await;
    app.register("gina").await;
    let kit = Kit::new();
    let (url, dir) = env_of(&app);
    let file = kit.dir.join("pass.age");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATA_DIR", dir.to_str().unwrap()),
        ("BACKUP_PASSPHRASE", "correct horse battery staple"),
    ];
    kit.ok(&["backup", file.to_str().unwrap()], &env);
    let out = kit.ok(&["backup", "verify", file.to_str().unwrap()], &env);
    assert!(out.contains("is intact"), "{out}");
    let e = kit.refused(
        &["backup", "verify", file.to_str().unwrap()],
        &[("BACKUP_PASSPHRASE", "wrong horse")],
    );
    assert!(e.contains("none of the configured keys"), "{e}");
}

both_backends! {
    async fn an_older_backup_does_not_bring_an_erased_accounts_messages_back(backend: Backend) {
        let app = spawn_app(backend).await;
        let kit = Kit::new();
        let (url, data_dir) = env_of(&app);
        let alice = app.register("alice").await;
        let bruno = app.register("bruno").await;
        let a = app.sign_in(&alice).await;
        let b = app.sign_in(&bruno).await;
        for (from, to, body) in [(&a, &bruno, "segredo da alice"), (&b, &alice, "segredo do bruno")] {
            let r = app.post_auth("/api/messages", &from.access,
                json!({"to": to.username, "subject": "hello", "body": body})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        let older = kit.backup("older.age", &url, &data_dir);

        // Alice erases her account; then the live deployment is rolled back to the older backup.
        let r = app.request(app.client.delete(format!("{}/api/users/{}", app.url, alice.id))
            .bearer_auth(&a.access).json(&json!({"password": alice.password}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let out = kit.ok(
            &["restore", older.to_str().unwrap(), "--force"],
            &[
                ("DATABASE_URL", url.as_str()),
                ("DATA_DIR", data_dir.to_str().unwrap()),
                ("BACKUP_IDENTITY_FILE", kit.identity.to_str().unwrap()),
            ],
        );
        assert!(out.contains("restored"), "{out}");

        // Her account row is back (it was in the backup), but nothing encrypted for her opens:
        // her data key stays destroyed.
        let a = app.sign_in(&alice).await;
        for folder in ["inbox", "sent"] {
            let r = app.get_auth(&format!("/api/messages?box={folder}"), &a.access).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let items = r.data()["items"].as_array().unwrap().clone();
            assert_eq!(items.len(), 1, "{}", r.text);
            assert_eq!(items[0]["readable"], false, "{}", r.text);
            assert!(!r.text.contains("segredo"), "{}", r.text);
            let one = app.get_auth(&format!("/api/messages/{}", items[0]["id"].as_str().unwrap()), &a.access).await;
            assert_eq!((one.status, one.body["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("data_unreadable")), "{}", one.text);
        }
        // The rest of her account works: a new message gets a new key.
        let r = app.post_auth("/api/messages", &a.access, json!({"to": bruno.username, "subject": "again", "body": "nova"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Bruno's own copies were wrapped for him, and stay his.
        let b = app.sign_in(&bruno).await;
        let r = app.get_auth("/api/messages?box=inbox", &b.access).await;
        let first = r.data()["items"].as_array().unwrap().iter()
            .find(|m| m["subject"] == "hello").unwrap()["id"].as_str().unwrap().to_owned();
        let r = app.get_auth(&format!("/api/messages/{first}"), &b.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.data()["body"], "segredo da alice");
        assert!(app.auth.store().destroyed_data_key_count().await.unwrap() >= 1, "the record survives the restore");
    }
}
