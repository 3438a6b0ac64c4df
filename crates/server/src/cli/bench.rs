//! `porteiro bench …`: helpers for the benchmark harness (`bench/run.sh`). Seeding loads rows in
//! bulk (one password hash for every seeded account), and the two ceilings measure what the
//! hardware allows without HTTP: password verification and the refresh-rotation transaction.
//! Results are printed as one JSON object on stdout.

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use clap::Subcommand;
use porteiro_core::Auth;
use porteiro_core::crypto::{random_bytes, random_token, token_hash};
use porteiro_core::domain::audit::kind;
use porteiro_core::domain::rbac::{Permission, RbacKind, RbacObject};
use porteiro_core::domain::session::{NewRefreshToken, RotateOutcome};
use porteiro_core::domain::{NewAuditEvent, NewSession, NewUser, Outcome, Username};
use porteiro_core::envelope::Envelope;
use porteiro_core::store::SealedColumn;
use secrecy::SecretString;
use uuid::Uuid;

/// `porteiro bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bulk-create accounts `PREFIX<n>` / `PREFIX<n>@bench.invalid` (n from `--start`), all with
    /// the password read from stdin, hashed once; optionally sessions and audit rows.
    Seed {
        /// Accounts to create.
        #[arg(long)]
        users: u64,
        /// First account number.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Username prefix.
        #[arg(long, default_value = "bench")]
        prefix: String,
        /// Sessions to open, spread over the new accounts.
        #[arg(long, default_value_t = 0)]
        sessions: u64,
        /// Audit events to append, spread over the new accounts.
        #[arg(long, default_value_t = 0)]
        audit_rows: u64,
        /// Enable an authenticator app on every new account, all with one fresh secret (printed
        /// as `totp_secret_hex`, for the harness to make codes with), no step used yet and no
        /// backup codes.
        #[arg(long)]
        totp: bool,
        /// Give the first `readers` new accounts the custom role `bench-reader`, holding
        /// `users:read` (the role is created if missing): the accounts of the
        /// `check-permission` scenario.
        #[arg(long, default_value_t = 0)]
        readers: u64,
    },
    /// Password verifications per second on one thread with the configured parameters, and that
    /// times the cores: the sign-in ceiling.
    Hash {
        /// Verifications to time.
        #[arg(long, default_value_t = 40)]
        iterations: u32,
    },
    /// Time of the password policy check (seed-003 rules, breached list, zxcvbn) per password,
    /// over weak, strong, random and worst-case inputs up to the 128-character maximum; the first
    /// check's time and the resident memory before and after it (the list and zxcvbn's
    /// dictionaries load on first use).
    Policy {
        /// Checks of each password.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
    },
    /// Refresh rotations per second through the store (no HTTP), over parallel chains: the
    /// refresh ceiling.
    Rotate {
        /// Rotations per chain.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
        /// Parallel chains.
        #[arg(long, default_value_t = 8)]
        chains: u32,
    },
}

const BATCH: usize = 5_000;

/// Runs a bench subcommand.
///
/// # Errors
/// On store or hashing failure.
pub async fn run(auth: Arc<Auth>, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Seed {
            users,
            start,
            prefix,
            sessions,
            audit_rows,
            totp,
            readers,
        } => {
            let envelope = auth.envelope().clone();
            let totp = totp.then_some(envelope.as_ref());
            let seeded = Seeded {
                users,
                start,
                prefix,
                sessions,
                audit_rows,
                readers,
            };
            seed(&auth, &seeded, totp).await
        }
        BenchCommand::Hash { iterations } => hash_ceiling(&auth, iterations).await,
        BenchCommand::Policy { iterations } => {
            policy_cost(iterations);
            Ok(())
        }
        BenchCommand::Rotate { iterations, chains } => {
            rotate_ceiling(&auth, iterations, chains).await
        }
    }
}

/// What `bench seed` creates.
struct Seeded {
    users: u64,
    start: u64,
    prefix: String,
    sessions: u64,
    audit_rows: u64,
    readers: u64,
}

async fn seed(auth: &Auth, seeded: &Seeded, totp: Option<&Envelope>) -> anyhow::Result<()> {
    let Seeded {
        users,
        start,
        ref prefix,
        sessions,
        audit_rows,
        readers,
    } = *seeded;
    let began = Instant::now();
    let password = super::read_password_stdin()?;
    let hash = auth.hasher().hash(&password).await?;
    let now = auth.now();
    let store = auth.store();
    let mut ids = Vec::with_capacity(usize::try_from(users)?);
    let mut batch = Vec::with_capacity(BATCH);
    for n in start..start + users {
        let username = Username::parse(&format!("{prefix}{n}"))
            .map_err(|e| anyhow::anyhow!("bad prefix: {e}"))?;
        let id = Uuid::now_v7();
        ids.push(id);
        batch.push(NewUser {
            id,
            username_key: username.key(),
            username: username.as_str().to_owned(),
            email: format!("{prefix}{n}@bench.invalid"),
            first_name: None,
            last_name: None,
            password_hash: hash.clone(),
            is_admin: false,
            locale: "en".to_owned(),
            now,
            email_verified: false,
        });
        if batch.len() == BATCH {
            store.insert_users_bulk(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_users_bulk(&batch).await?;
    }
    let users_done = began.elapsed();
    // One secret for every account keeps the harness's code table to one code per step; each
    // account still has its own sealed copy and its own record of the last step used, so the
    // server does exactly the work it does for accounts with secrets of their own.
    let totp_secret = match totp {
        Some(envelope) => {
            let secret = random_bytes::<20>();
            for &id in &ids {
                let sealed = envelope
                    .seal_column(SealedColumn::TotpSecret, &id.to_string(), &secret)
                    .await?;
                let enabled = store.begin_totp_setup(id, &sealed, &[], now).await?
                    && store.enable_totp(id, &sealed, 0, now, &[]).await?;
                anyhow::ensure!(enabled, "enabling TOTP for a seeded account failed");
            }
            Some(porteiro_core::crypto::hex(&secret))
        }
        None => None,
    };
    for i in 0..sessions {
        let user_id = ids[usize::try_from(i)? % ids.len().max(1)];
        let id = Uuid::new_v4();
        let expires_at = now + Duration::days(7);
        store
            .create_session(
                &NewSession {
                    id,
                    user_id,
                    now,
                    expires_at,
                    ip_address: Some("192.0.2.1".to_owned()),
                    user_agent: Some("porteiro-bench".to_owned()),
                    device_name: "bench".to_owned(),
                    device_type: "desktop".to_owned(),
                    os: None,
                    browser: None,
                    credential_epoch: 0,
                    amr: vec!["pwd".to_owned()],
                },
                &NewRefreshToken {
                    token_hash: token_hash(&random_token::<32>()),
                    session_id: id,
                    expires_at,
                    now,
                },
                &[],
            )
            .await?;
    }
    let readers = ids
        .get(..usize::try_from(readers)?.min(ids.len()))
        .unwrap_or_default();
    if !readers.is_empty() {
        give_reader_role(auth, readers).await?;
    }
    let mut events = Vec::with_capacity(BATCH);
    for i in 0..audit_rows {
        events.push(NewAuditEvent {
            occurred_at: now - Duration::seconds(i64::try_from(audit_rows - i)?),
            event_type: if i % 3 == 0 {
                kind::SIGN_IN_FAILED
            } else {
                kind::SIGN_IN_SUCCEEDED
            },
            outcome: if i % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            // Grouped by account, in id order: a realistic history per user, and index inserts
            // that append instead of landing at random (10M rows in minutes, not an hour).
            user_id: ids
                .get(usize::try_from(i * ids.len() as u64 / audit_rows.max(1))?)
                .copied(),
            actor_id: None,
            ip_address: Some("192.0.2.1".to_owned()),
            user_agent: Some("porteiro-bench".to_owned()),
            details: serde_json::json!({"seeded": true}),
        });
        if events.len() == BATCH {
            store.append_audit_bulk(&events).await?;
            events.clear();
        }
    }
    if !events.is_empty() {
        store.append_audit_bulk(&events).await?;
    }
    println!(
        "{}",
        serde_json::json!({
            "users": users, "sessions": sessions, "audit_rows": audit_rows,
            "users_secs": users_done.as_secs_f64(), "total_secs": began.elapsed().as_secs_f64(),
            "totp_secret_hex": totp_secret, "readers": readers.len(),
        })
    );
    Ok(())
}

/// Name of the custom role `--readers` gives.
const READER_ROLE: &str = "bench-reader";

/// Gives `ids` the role [`READER_ROLE`], holding `users:read`, creating it if missing.
async fn give_reader_role(auth: &Auth, ids: &[Uuid]) -> anyhow::Result<()> {
    let store = auth.store();
    let now = auth.now();
    let role = match store
        .rbac_object_by_name(RbacKind::Role, READER_ROLE)
        .await?
    {
        Some(role) => role,
        None => {
            let role = RbacObject {
                id: Uuid::now_v7(),
                name: READER_ROLE.to_owned(),
                description: "Benchmark accounts of the check-permission scenario.".to_owned(),
                builtin: false,
                created_at: now,
                updated_at: now,
            };
            store.create_rbac_object(RbacKind::Role, &role, &[]).await?
        }
    };
    store
        .grant_permission(role.id, Permission::UsersRead.id(), now, &[])
        .await?;
    for &id in ids {
        store.assign_role(id, role.id, now, &[]).await?;
    }
    Ok(())
}

async fn hash_ceiling(auth: &Auth, iterations: u32) -> anyhow::Result<()> {
    let password = SecretString::from("Bench-Ceiling-Passw0rd".to_owned());
    let hash = auth.hasher().hash(&password).await?;
    auth.hasher().verify(&password, Some(&hash)).await?;
    let began = Instant::now();
    for _ in 0..iterations {
        let v = auth.hasher().verify(&password, Some(&hash)).await?;
        anyhow::ensure!(v.matches, "verification failed");
    }
    let per_verify = began.elapsed().as_secs_f64() / f64::from(iterations.max(1));
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "{}",
        serde_json::json!({
            "verify_ms": per_verify * 1000.0,
            "cores": cores,
            "ceiling_rps": cores as f64 / per_verify,
        })
    );
    Ok(())
}

/// Resident memory of this process in KiB (`VmRSS`), 0 where /proc is missing.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The inputs of `bench policy`: what people type, what generators make, and the longest and
/// most patterned inputs the policy accepts to analyse (zxcvbn's cost grows with length).
fn policy_corpus() -> Vec<(&'static str, String)> {
    let mut corpus: Vec<(&'static str, String)> = [
        "Passw0rd",
        "P@ssw0rd1",
        "Welcome123",
        "Qwerty123",
        "Summer2024",
        "Jennifer1985",
        "ana.silva2024",
    ]
    .iter()
    .map(|p| ("guessable", (*p).to_owned()))
    .collect();
    for p in [
        "correct horse battery staple 9",
        "tangerine otter 42 violin under the bridge",
        "MinhaS3nha!Forte",
    ] {
        corpus.push(("passphrase", p.to_owned()));
    }
    for len in [12, 16, 32, 64, 128] {
        let token = random_token::<128>();
        corpus.push(("random", format!("{}7a", &token[..len - 2])));
    }
    corpus.push(("worst-case", "a1".repeat(64)));
    corpus.push(("worst-case", "1234567890".repeat(12) + "abcdefgh"));
    corpus.push(("worst-case", "qwertyuiop1qaz2wsx".repeat(7) + "zx"));
    corpus.push(("worst-case", "P@ssw0rd".repeat(16)));
    corpus.push(("worst-case", "19851231".repeat(15) + "abcdefgh"));
    corpus.push(("worst-case", "correcthorsebatterystaple".repeat(5) + "aaa"));
    corpus.push(("worst-case", "p4$$w0rd!@#1".repeat(10) + "abcdefgh"));
    corpus.push(("worst-case", "ãéîõüçàèìòùâêô1".repeat(8) + "abcdefgh"));
    corpus
}

fn policy_cost(iterations: u32) {
    use porteiro_core::domain::password::{PolicyContext, check_policy};
    let ctx = PolicyContext {
        username: Some("ana.silva"),
        email: Some("ana.silva@example.com"),
        first_name: Some("Ana"),
        last_name: Some("Silva"),
        bcrypt: false,
    };
    let rss_before = rss_kib();
    let began = Instant::now();
    let _ = check_policy("first check of the process 7", ctx);
    let first_ms = began.elapsed().as_secs_f64() * 1000.0;
    let rss_after = rss_kib();
    // Each password's median over its iterations (robust to the other processes sharing the
    // cores), then the slowest password per class and overall.
    let mut all = Vec::new();
    let mut per_class = serde_json::Map::new();
    let mut slowest = (0.0_f64, 0_usize);
    for (class, password) in policy_corpus() {
        let mut times: Vec<f64> = (0..iterations.max(1))
            .map(|_| {
                let began = Instant::now();
                std::hint::black_box(check_policy(std::hint::black_box(&password), ctx));
                began.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if median > slowest.0 {
            slowest = (median, password.chars().count());
        }
        let entry = per_class
            .entry(class)
            .or_insert_with(|| serde_json::json!(0.0));
        if entry.as_f64().unwrap_or(0.0) < median {
            *entry = serde_json::json!(median);
        }
        all.extend(times);
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "checks": all.len(),
            "first_check_ms": first_ms,
            "p50_us": at(0.5),
            "p99_us": at(0.99),
            "slowest_password_median_us": slowest.0,
            "slowest_password_chars": slowest.1,
            "median_us_of_slowest_password_by_class": per_class,
            "rss_kib_before_first_check": rss_before,
            "rss_kib_after_first_check": rss_after,
            "breached_list_entries": porteiro_core::domain::password::breached::entries(),
        })
    );
}

async fn rotate_ceiling(auth: &Arc<Auth>, iterations: u32, chains: u32) -> anyhow::Result<()> {
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..chains {
        let auth = Arc::clone(auth);
        tasks.push(tokio::spawn(async move {
            rotate_chain(&auth, iterations).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = f64::from(iterations) * f64::from(chains);
    println!(
        "{}",
        serde_json::json!({"rotations": total, "rps": total / began.elapsed().as_secs_f64()})
    );
    Ok(())
}

async fn rotate_chain(auth: &Auth, iterations: u32) -> anyhow::Result<()> {
    let store = auth.store();
    let now = auth.now();
    let user_id = Uuid::now_v7();
    let key = format!("chain{}", user_id.simple());
    store
        .insert_users_bulk(&[NewUser {
            id: user_id,
            username_key: key.clone(),
            username: key.clone(),
            email: format!("{key}@bench.invalid"),
            first_name: None,
            last_name: None,
            password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
            is_admin: false,
            locale: "en".to_owned(),
            now,
            email_verified: false,
        }])
        .await?;
    let session_id = Uuid::new_v4();
    let expires_at = now + Duration::days(7);
    let mut current = random_token::<32>();
    store
        .create_session(
            &NewSession {
                id: session_id,
                user_id,
                now,
                expires_at,
                ip_address: None,
                user_agent: None,
                device_name: "bench".to_owned(),
                device_type: "desktop".to_owned(),
                os: None,
                browser: None,
                credential_epoch: 0,
                amr: vec!["pwd".to_owned()],
            },
            &NewRefreshToken {
                token_hash: token_hash(&current),
                session_id,
                expires_at,
                now,
            },
            &[],
        )
        .await?;
    for _ in 0..iterations {
        let next = random_token::<32>();
        let outcome = store
            .rotate_refresh_token(
                &token_hash(&current),
                &token_hash(&next),
                expires_at,
                Duration::days(30),
                Some("192.0.2.1"),
                auth.now(),
                None,
                &|user_id, session_id| {
                    porteiro_core::flows::audit::new_event(
                        auth.now(),
                        porteiro_core::domain::audit::kind::REFRESH_TOKEN_REUSED,
                        porteiro_core::domain::Outcome::Failure,
                        Some(user_id),
                        None,
                        serde_json::json!({"session_id": session_id}),
                    )
                },
            )
            .await?;
        anyhow::ensure!(
            matches!(outcome, RotateOutcome::Rotated(_)),
            "rotation refused"
        );
        current = next;
    }
    Ok(())
}
