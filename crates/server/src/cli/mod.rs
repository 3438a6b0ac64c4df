//! Command-line interface: `serve`, `migrate`, `user …`, `keys rotate`, `config check`,
//! `backup`, `restore`.

use std::io::Read as _;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use porteiro_core::clock::SystemClock;
use porteiro_core::envelope::Envelope;
use porteiro_core::flows::registration::Registration;
use secrecy::SecretString;

pub mod backup;
mod bench;

use crate::app::{Application, build_auth, build_auth_with_key, load_master_key, open_store};
use crate::config::Config;

/// Data keys re-wrapped per batch by `porteiro keys rewrap`.
const REWRAP_BATCH: u32 = 500;

/// Porteiro: a self-hosted authentication and identity server.
///
/// Configuration comes from environment variables and a `.env` file; see the README.
#[derive(Debug, Parser)]
#[command(name = "porteiro", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrates the database and creates the first administrator if needed).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage token-signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Benchmark helpers: bulk seeding and the hashing and rotation ceilings (bench/run.sh).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Write an encrypted backup of the database (while the server runs), or check one with
    /// `backup verify FILE`.
    Backup(backup::BackupArgs),
    /// Restore a backup into the configured database (empty, or replaced with --force).
    Restore(backup::RestoreArgs),
}

/// `porteiro user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from stdin with `--password-stdin`, otherwise a
    /// random one is generated and printed once (passwords never go on the command line).
    Create(CreateUser),
    /// List accounts, oldest first, with optional search and filters.
    List {
        /// 1-based page.
        #[arg(long, default_value_t = 1)]
        page: u64,
        /// Page size (1–100).
        #[arg(long, default_value_t = 50)]
        per_page: u64,
        /// Only accounts whose email or username starts with this (case-insensitive).
        #[arg(long)]
        q: Option<String>,
        /// Only active (`true`) or disabled (`false`) accounts.
        #[arg(long)]
        active: Option<bool>,
        /// Only accounts locked by failed sign-ins right now (`true`), or the others (`false`).
        #[arg(long)]
        locked: Option<bool>,
        /// Only holders of this role.
        #[arg(long)]
        role: Option<String>,
    },
    /// Disable an account: it can no longer sign in and its sessions end (refused for the last
    /// active administrator).
    Disable {
        /// User id, username or email.
        user: String,
    },
    /// Enable a disabled account.
    Enable {
        /// User id, username or email.
        user: String,
    },
    /// End every session of an account at once.
    SignOutAll {
        /// User id, username or email.
        user: String,
    },
    /// Mail an account a password-reset link (the account's limit of reset mails applies).
    SendPasswordReset {
        /// User id, username or email.
        user: String,
    },
    /// Delete an account and everything of it (refused for the last active administrator).
    Delete {
        /// User id, username or email.
        user: String,
        /// Confirm the deletion (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
    /// Set a user's password (revokes all their sessions).
    SetPassword {
        /// User id, username or email.
        user: String,
        /// Read the new password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Clear a lock caused by failed sign-ins.
    Unlock {
        /// User id, username or email.
        user: String,
    },
    /// Remove a user's authenticator app and backup codes (a lost device); they are told by
    /// mail and can set up an app again after signing in with their password.
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// User id, username or email.
        user: String,
    },
    /// How many accounts still use older password-hash parameters (they are re-hashed at their
    /// next sign-in; until then every verification is padded to the slowest of them).
    RehashStatus,
}

/// Arguments of `user create`.
#[derive(Debug, Args)]
pub struct CreateUser {
    /// Username (3–32 characters).
    #[arg(long)]
    pub username: String,
    /// Email address.
    #[arg(long)]
    pub email: String,
    /// Make the account an administrator.
    #[arg(long)]
    pub admin: bool,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The email address counts as confirmed (no confirmation link is mailed).
    #[arg(long)]
    pub verified: bool,
    /// First name.
    #[arg(long)]
    pub first_name: Option<String>,
    /// Last name.
    #[arg(long)]
    pub last_name: Option<String>,
}

/// `porteiro keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key; older keys keep verifying the tokens they signed until those
    /// expire, then are retired automatically.
    Rotate,
    /// Retire a key at once (e.g. leaked): it stops verifying, leaves the JWKS and its private
    /// half is erased. The current signing key cannot be retired: rotate first.
    Retire {
        /// The key id (`kid`), as `keys status` lists it.
        kid: String,
    },
    /// Add a key-encryption key version (RSA-3072, OAEP-SHA256): it wraps new data keys at once,
    /// and a running server re-wraps the existing ones in the background, then retires the old
    /// version. Nothing is re-encrypted and nothing stops.
    RotateKek,
    /// Re-wrap every data key still wrapped by an older key-encryption key version now, in
    /// batches (what the server does in the background), and retire versions left unused.
    Rewrap,
    /// List the key-encryption key versions (with how many data keys each wraps) and the
    /// signing keys, with their state.
    Status,
}

/// `porteiro config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without starting the server.
    Check,
}

/// The store and the key hierarchy over it (made on first use), for the `keys` commands.
async fn open_envelope(
    config: &Config,
) -> anyhow::Result<(Arc<dyn porteiro_core::store::Store>, Envelope)> {
    let store = open_store(config).await?;
    let master = Arc::new(load_master_key(config)?);
    let envelope = Envelope::load(master, store.clone(), chrono::Utc::now())
        .await
        .map_err(domain_error)?;
    Ok((store, envelope))
}

fn read_password_stdin() -> anyhow::Result<SecretString> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from stdin")?;
    let password = input.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(SecretString::from(password))
}

fn generated_password() -> String {
    format!("{}-7a", porteiro_core::crypto::random_token::<18>())
}

/// Appends a key event done from the command line to the audit log.
fn domain_error(e: porteiro_core::Error) -> anyhow::Error {
    match e {
        porteiro_core::Error::WeakPassword(issues) => {
            anyhow::anyhow!(
                "weak password: {}",
                issues
                    .iter()
                    .map(|i| i.message())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        porteiro_core::Error::Refused("last_admin") => anyhow::anyhow!(
            "refused: this would leave no active administrator (give the admin role to someone else first)"
        ),
        porteiro_core::Error::Refused("account_disabled") => {
            anyhow::anyhow!("refused: the account is disabled (enable it first)")
        }
        porteiro_core::Error::RateLimited { retry_after_secs } => anyhow::anyhow!(
            "refused: the account's limit of mails is reached; retry in {retry_after_secs} s"
        ),
        porteiro_core::Error::NotFound => anyhow::anyhow!("no such user"),
        other => anyhow::anyhow!("{other}"),
    }
}

/// The account named by id, username or email.
async fn find(
    auth: &porteiro_core::Auth,
    user: &str,
) -> anyhow::Result<porteiro_core::domain::User> {
    auth.find_user(user)
        .await
        .map_err(domain_error)?
        .context("no such user")
}

async fn set_active(auth: &porteiro_core::Auth, user: &str, active: bool) -> anyhow::Result<()> {
    let target = find(auth, user).await?;
    auth.set_active_cli(target.id, active)
        .await
        .map_err(domain_error)?;
    if active {
        println!("{} enabled", target.username);
    } else {
        println!(
            "{} disabled; all their sessions were revoked",
            target.username
        );
    }
    Ok(())
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command reports.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("migrations applied ({} database)", store.backend());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            load_master_key(&config)?;
            println!("configuration is valid");
            println!("  listen:        http://{}:{}", config.host, config.port);
            println!(
                "  database:      {}",
                if config.is_postgres() {
                    "postgres"
                } else {
                    config.database_url.as_str()
                }
            );
            println!("  issuer:        {}", config.issuer);
            println!("  access token:  {} s", config.access_ttl.num_seconds());
            println!("  refresh token: {} s", config.refresh_ttl.num_seconds());
            println!(
                "  session max:   {} s",
                config.session_max_lifetime.num_seconds()
            );
            println!("  password hash: {:?}", config.hash_scheme);
            let limits = config.connections;
            let descriptors = crate::serve::descriptor_limit_when_serving();
            let caps = crate::serve::Caps::effective(
                &limits,
                descriptors,
                config.database_max_connections,
            );
            println!(
                "  connections:   at most {} open, {} per client address (MAX_CONNECTIONS {}, MAX_CONNECTIONS_PER_IP {}, open-file limit {})",
                caps.total,
                caps.per_ip,
                limits.max_connections,
                limits.max_connections_per_ip,
                descriptors.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
            );
            println!(
                "  deadlines:     request head {} s, idle {} s, request {} s",
                limits.header_read_timeout.as_secs(),
                limits.idle_timeout.as_secs(),
                config.request_timeout.as_secs()
            );
            println!(
                "  metrics:       {}",
                match (&config.metrics_addr, &config.metrics_token) {
                    (Some(addr), Some(_)) => format!("http://{addr}/metrics, bearer token"),
                    (Some(addr), None) => format!("http://{addr}/metrics"),
                    (None, Some(_)) => "/metrics, bearer token".to_owned(),
                    (None, None) => "/metrics, direct loopback connections only".to_owned(),
                }
            );
            let hooks = &config.webhooks;
            println!(
                "  webhooks:      timeout {} ms, {} attempts (first retry after {} s), {} in flight per endpoint, private destinations {}",
                hooks.timeout.as_millis(),
                hooks.max_attempts,
                hooks.retry_base.num_seconds(),
                hooks.concurrency,
                if hooks.allow_private {
                    "allowed"
                } else {
                    "refused"
                }
            );
            println!(
                "  maintenance:   every {} s",
                config.maintenance_interval.as_secs()
            );
            match &config.mail.smtp {
                Some(s) => println!("  mail:          smtp {}:{} ({:?})", s.host, s.port, s.tls),
                None => println!(
                    "  mail:          files in {}",
                    config.mail.outbox_dir.display()
                ),
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let (store, envelope) = open_envelope(&config).await?;
            let now = chrono::Utc::now();
            let kid = porteiro_core::keys::generate_key(store.as_ref(), &envelope, now, "cli")
                .await
                .map_err(domain_error)?;
            println!(
                "new signing key {kid}; previous keys verify the tokens they signed until those expire, then are retired"
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Retire { kid }) => {
            let store = open_store(&config).await?;
            let now = chrono::Utc::now();
            porteiro_core::keys::retire_key(store.as_ref(), &kid, now, "cli")
                .await
                .map_err(|e| match e {
                    porteiro_core::Error::NotFound => {
                        anyhow::anyhow!("no signing key {kid:?} that is not already retired")
                    }
                    other => domain_error(other),
                })?;
            println!(
                "signing key {kid} retired: it no longer verifies tokens and its private half is erased"
            );
            Ok(())
        }
        Command::Keys(KeysCommand::RotateKek) => {
            let (_, envelope) = open_envelope(&config).await?;
            let now = chrono::Utc::now();
            let version = envelope
                .rotate_kek(now, "cli")
                .await
                .map_err(domain_error)?;
            println!(
                "new key-encryption key version {version} (RSA-3072): it wraps new data keys now; \
                 a running server re-wraps the existing ones in the background (or run `porteiro keys rewrap`)"
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rewrap) => {
            let (_, envelope) = open_envelope(&config).await?;
            let report = envelope
                .rewrap_all(REWRAP_BATCH)
                .await
                .map_err(domain_error)?;
            for version in &report.retired {
                println!("key-encryption key version {version} retired");
            }
            println!(
                "{} data keys re-wrapped; {} still wrapped by an older version{}",
                report.rewrapped,
                report.remaining,
                if report.failed > 0 {
                    " (some could not be unwrapped: see the log)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Status) => {
            let store = open_store(&config).await?;
            let (keks, destroyed) = Envelope::status(store.as_ref())
                .await
                .map_err(domain_error)?;
            println!("key-encryption keys:");
            for k in keks {
                let state = match (k.current, k.retired_at) {
                    (_, Some(at)) => format!("retired {}", at.to_rfc3339()),
                    (true, None) => "current".to_owned(),
                    (false, None) => "re-wrapping".to_owned(),
                };
                println!(
                    "  v{}  {}  {:>8} data keys  created {}  {state}",
                    k.version,
                    k.algorithm,
                    k.data_keys,
                    k.created_at.to_rfc3339()
                );
            }
            println!("destroyed data keys (erased accounts): {destroyed}");
            println!("signing keys:");
            let keys = porteiro_core::keys::key_status(
                store.as_ref(),
                config.access_ttl,
                chrono::Utc::now(),
            )
            .await
            .map_err(domain_error)?;
            for k in keys {
                let detail = match (k.verifies_until, k.retired_at) {
                    (_, Some(at)) => format!("retired {}", at.to_rfc3339()),
                    (Some(until), None) => format!("verifies until {}", until.to_rfc3339()),
                    (None, None) => String::new(),
                };
                println!(
                    "  {}  {:<9}  created {}  {detail}",
                    k.kid,
                    k.state,
                    k.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
        Command::Bench(cmd) => {
            let store = open_store(&config).await?;
            let master = Arc::new(load_master_key(&config)?);
            let auth = build_auth_with_key(&config, store, Arc::new(SystemClock), master).await?;
            bench::run(auth, cmd).await
        }
        Command::Backup(args) => backup::backup_command(&config, args).await,
        Command::Restore(args) => backup::restore_command(&config, args).await,
        Command::User(cmd) => {
            let store = open_store(&config).await?;
            let auth = build_auth(&config, store, Arc::new(SystemClock)).await?;
            user_command(&auth, cmd).await
        }
    }
}

async fn user_command(auth: &porteiro_core::Auth, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::RehashStatus => {
            let scheme = auth.hasher().scheme();
            let status = porteiro_core::credentials::hash_status(auth.store().as_ref(), scheme)
                .await
                .map_err(domain_error)?;
            println!("configured: {}", scheme.phc_prefix());
            println!(
                "accounts:   {} ({} on the configured parameters, {} to re-hash at their next sign-in)",
                status.total,
                status.total.saturating_sub(status.stale),
                status.stale
            );
            for (scheme, count) in &status.stale_schemes {
                println!("  {count:>10}  {}", scheme.phc_prefix());
            }
            if status.unrecognised > 0 {
                println!(
                    "  {:>10}  unrecognised hashes (these accounts cannot sign in; reset their passwords)",
                    status.unrecognised
                );
            }
            if status.stale > u64::from(porteiro_core::credentials::CENSUS_LIMIT) {
                println!(
                    "  (parameters read from the first {} stale accounts)",
                    porteiro_core::credentials::CENSUS_LIMIT
                );
            }
        }
        UserCommand::Create(args) => {
            let (password, generated) = if args.password_stdin {
                (read_password_stdin()?, None)
            } else {
                let p = generated_password();
                (SecretString::from(p.clone()), Some(p))
            };
            let user = auth
                .register(Registration {
                    username: args.username,
                    email: args.email,
                    password,
                    confirm_password: None,
                    first_name: args.first_name,
                    last_name: args.last_name,
                    locale: None,
                    is_admin: args.admin,
                    email_verified: args.verified,
                })
                .await
                .map_err(domain_error)?;
            println!(
                "created {} <{}> id={}{}",
                user.username,
                user.email,
                user.id,
                if user.roles.iter().any(|r| r == "admin") {
                    " (admin)"
                } else {
                    ""
                }
            );
            if user.email_verified {
                println!("email address confirmed");
            } else {
                // Delivered by the server's mail worker, which reads the same outbox.
                crate::app::build_email_confirmation(auth, Arc::new(SystemClock))
                    .send_link(&user, "registration")
                    .await
                    .map_err(domain_error)?;
                println!("a link to confirm the email address was queued");
            }
            if let Some(p) = generated {
                println!("password: {p}");
            }
        }
        UserCommand::List {
            page,
            per_page,
            q,
            active,
            locked,
            role,
        } => {
            let filter = porteiro_core::flows::admin::UserFilter {
                q,
                active,
                locked,
                role,
            };
            let page = auth
                .users_page(&filter, page, per_page)
                .await
                .map_err(domain_error)?;
            let now = auth.now();
            println!("{:<36}  {:<20}  {:<32}  flags", "id", "username", "email");
            for u in &page.users {
                let mut flags = Vec::new();
                if u.roles.iter().any(|r| r == "admin") {
                    flags.push("admin");
                }
                if !u.is_active {
                    flags.push("disabled");
                }
                if u.is_locked(now) {
                    flags.push("locked");
                }
                if !u.email_verified {
                    flags.push("unconfirmed");
                }
                println!(
                    "{:<36}  {:<20}  {:<32}  {}",
                    u.id,
                    u.username,
                    u.email,
                    flags.join(",")
                );
            }
            println!(
                "page {} of {} ({} users)",
                page.page,
                page.total.div_ceil(page.per_page).max(1),
                page.total
            );
        }
        UserCommand::SetPassword {
            user,
            password_stdin,
        } => {
            let target = auth
                .find_user(&user)
                .await
                .map_err(domain_error)?
                .context("no such user")?;
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, None)
            } else {
                let p = generated_password();
                (SecretString::from(p.clone()), Some(p))
            };
            auth.set_password(target.id, &password)
                .await
                .map_err(domain_error)?;
            println!(
                "password of {} changed; all their sessions were revoked",
                target.username
            );
            if let Some(p) = generated {
                println!("password: {p}");
            }
        }
        UserCommand::Unlock { user } => {
            let u = auth.unlock(&user).await.map_err(|e| match e {
                porteiro_core::Error::NotFound => anyhow::anyhow!("no such user"),
                other => domain_error(other),
            })?;
            println!("{} unlocked", u.username);
        }
        UserCommand::Disable { user } => set_active(auth, &user, false).await?,
        UserCommand::Enable { user } => set_active(auth, &user, true).await?,
        UserCommand::SignOutAll { user } => {
            let target = find(auth, &user).await?;
            let n = auth
                .sign_out_everywhere_cli(target.id)
                .await
                .map_err(domain_error)?;
            println!("{n} session(s) of {} revoked", target.username);
        }
        UserCommand::SendPasswordReset { user } => {
            let target = find(auth, &user).await?;
            auth.send_password_reset_cli(target.id)
                .await
                .map_err(domain_error)?;
            println!(
                "a password-reset link for {} was queued (delivered by the server's mail worker)",
                target.username
            );
        }
        UserCommand::Delete { user, yes } => {
            let target = find(auth, &user).await?;
            anyhow::ensure!(
                yes,
                "deleting {} cannot be undone: add --yes to confirm",
                target.username
            );
            auth.delete_user_cli(target.id)
                .await
                .map_err(domain_error)?;
            println!(
                "{} <{}> deleted with everything of theirs",
                target.username, target.email
            );
        }
        UserCommand::Reset2fa { user } => {
            let target = auth
                .find_user(&user)
                .await
                .map_err(domain_error)?
                .context("no such user")?;
            let two_factor = porteiro_core::flows::mfa::TwoFactor::new(auth);
            if two_factor
                .reset(None, target.id)
                .await
                .map_err(domain_error)?
            {
                println!(
                    "two-factor authentication of {} was reset; they were told by mail",
                    target.username
                );
            } else {
                println!(
                    "{} had no two-factor authentication; nothing changed",
                    target.username
                );
            }
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
