//! `porteiro backup FILE`, `porteiro backup verify FILE`, `porteiro restore FILE`, and the
//! scheduled backups of `serve`.
//!
//! A backup is the portable stream of `porteiro_store_sql::backup` (JSON lines with per-table
//! and overall SHA-256), zstd-compressed, then encrypted in the age format to `BACKUP_RECIPIENT`
//! or `BACKUP_PASSPHRASE`: `age -d -i key.txt FILE | zstd -d` reads it without Porteiro.
//! The database side runs on the async runtime and hands 64 KiB chunks through a bounded
//! channel to a blocking thread that compresses and encrypts (or decrypts and decompresses),
//! so memory stays flat whatever the size of the database.
//!
//! A backup is written to a temporary file in the destination's directory (mode 0600), synced,
//! then renamed over the destination: a reader never sees half a backup.

use std::io::{BufRead as _, BufReader, BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use porteiro_store_sql::backup::{
    Chunk, Loader, Progress, RestoreOptions, TableSpec, Totals, Value, load, read_header,
};
use secrecy::ExposeSecret as _;
use tokio::sync::mpsc;

use crate::config::{BackupSettings, Config};

/// `porteiro backup …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Check a backup instead of writing one.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The file to write (replaced atomically, mode 0600). Needs `BACKUP_RECIPIENT` or
    /// `BACKUP_PASSPHRASE`.
    pub file: Option<PathBuf>,
}

/// `porteiro backup verify …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Decrypt, decompress and check a backup (header, every table's row count and checksum,
    /// the trailer) without touching any database. Needs `BACKUP_IDENTITY_FILE` or
    /// `BACKUP_PASSPHRASE`.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

/// `porteiro restore …`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file. Needs `BACKUP_IDENTITY_FILE` or `BACKUP_PASSPHRASE`, and the master key
    /// of the deployment that took it (`MASTER_KEY` or `DATA_DIR/master.key`) to read the
    /// encrypted columns afterwards.
    pub file: PathBuf,
    /// Replace the contents of a database that is not empty (in one transaction: a failed
    /// restore changes nothing).
    #[arg(long)]
    pub force: bool,
    /// Keep the restored sessions usable (by default every session is revoked).
    #[arg(long)]
    pub keep_sessions: bool,
}

/// Runs `porteiro backup …`.
///
/// # Errors
/// Whatever stops the backup or the check, in one line.
pub async fn backup_command(config: &Config, args: BackupArgs) -> anyhow::Result<()> {
    match (args.command, args.file) {
        (Some(BackupCommand::Verify { file }), _) => verify_command(config, &file).await,
        (None, Some(file)) => {
            let progress = Reporter::new("backup");
            let started = Instant::now();
            let s = write_backup(config, &file, &|p| progress.report(p)).await?;
            progress.done();
            println!(
                "backup written to {}: {} tables, {} rows, {} ({} before compression) in {:.1} s",
                file.display(),
                s.totals.tables,
                s.totals.rows,
                megabytes(s.file_bytes),
                megabytes(s.stream_bytes),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        (None, None) => bail!("name the file to write: porteiro backup FILE"),
    }
}

/// Runs `porteiro restore …`.
///
/// # Errors
/// Whatever stops the restore, in one line; the database is then unchanged.
pub async fn restore_command(config: &Config, args: RestoreArgs) -> anyhow::Result<()> {
    let identities = identities(&config.backup)?;
    let progress = Reporter::new("restore");
    let started = Instant::now();
    let (mut rx, reader) = spawn_reader(args.file.clone(), identities);
    let opts = RestoreOptions {
        force: args.force,
        keep_sessions: args.keep_sessions,
    };
    let on_progress = |p| progress.report(p);
    let restored = if config.is_postgres() {
        porteiro_store_postgres::backup::restore(&config.database_url, &mut rx, opts, &on_progress)
            .await
    } else {
        porteiro_store_sqlite::backup::restore(&config.database_url, &mut rx, opts, &on_progress)
            .await
    };
    drop(rx);
    let _ = reader.await;
    progress.done();
    let r = restored.with_context(|| {
        format!(
            "restore of {} failed; the database was not changed",
            args.file.display()
        )
    })?;
    println!(
        "restored {} ({} backup of {}, schema version {}) into the {} database: {} tables, {} rows, {} in {:.1} s; {}{}",
        args.file.display(),
        r.source,
        r.created_at,
        r.schema_version,
        if config.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        },
        r.totals.tables,
        r.totals.rows,
        megabytes(r.bytes),
        started.elapsed().as_secs_f64(),
        if args.keep_sessions {
            "sessions kept".to_owned()
        } else {
            format!("{} session(s) revoked", r.sessions_revoked)
        },
        if r.data_keys_shredded > 0 {
            format!(
                "; {} destroyed data key(s) removed again",
                r.data_keys_shredded
            )
        } else {
            String::new()
        }
    );
    println!(
        "encrypted columns need the master key of the deployment that took the backup (MASTER_KEY or DATA_DIR/master.key)"
    );
    Ok(())
}

async fn verify_command(config: &Config, file: &Path) -> anyhow::Result<()> {
    let identities = identities(&config.backup)?;
    let progress = Reporter::new("verify");
    let started = Instant::now();
    let (mut rx, reader) = spawn_reader(file.to_path_buf(), identities);
    let checked = check_stream(&mut rx, &|p| progress.report(p)).await;
    drop(rx);
    let _ = reader.await;
    progress.done();
    let (header, totals, bytes, per_table) =
        checked.with_context(|| format!("{} is not a usable backup", file.display()))?;
    println!(
        "{} is intact: a {} backup of {}, schema version {}, {} tables, {} rows, {} ({:.1} s)",
        file.display(),
        header.source,
        header.created_at,
        header.schema_version,
        totals.tables,
        totals.rows,
        megabytes(bytes),
        started.elapsed().as_secs_f64()
    );
    for (name, rows) in per_table.iter().filter(|(_, n)| *n > 0) {
        println!("  {rows:>12}  {name}");
    }
    Ok(())
}

/// Counts rows per table; stores nothing.
struct Counter(Vec<(String, u64)>);

#[async_trait::async_trait]
impl Loader for Counter {
    async fn insert(&mut self, table: &TableSpec, rows: &[Vec<Value>]) -> anyhow::Result<()> {
        match self.0.last_mut() {
            Some((name, n)) if *name == table.name => *n += rows.len() as u64,
            _ => self.0.push((table.name.clone(), rows.len() as u64)),
        }
        Ok(())
    }
}

type Checked = (
    porteiro_store_sql::backup::Header,
    Totals,
    u64,
    Vec<(String, u64)>,
);

async fn check_stream(
    rx: &mut mpsc::Receiver<Chunk>,
    on_progress: porteiro_store_sql::backup::OnProgress<'_>,
) -> anyhow::Result<Checked> {
    let (header, mut decoder, first) =
        read_header(rx, porteiro_store_sql::backup::SCHEMA_VERSION).await?;
    let mut counter = Counter(Vec::new());
    let (totals, bytes) = load(&mut decoder, first, rx, &mut counter, on_progress).await?;
    Ok((header, totals, bytes, counter.0))
}

/// What [`write_backup`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Tables and rows.
    pub totals: Totals,
    /// Size of the stream before compression.
    pub stream_bytes: u64,
    /// Size of the file.
    pub file_bytes: u64,
}

/// Writes a backup of the configured database to `file`, atomically.
///
/// # Errors
/// No encryption key configured, a database failure, or a write failure; `file` is then left
/// as it was.
pub async fn write_backup(
    config: &Config,
    file: &Path,
    on_progress: porteiro_store_sql::backup::OnProgress<'_>,
) -> anyhow::Result<Written> {
    let encryptor = encryptor(&config.backup)?;
    let name = file
        .file_name()
        .context("the backup file name is missing")?
        .to_string_lossy()
        .into_owned();
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "the directory {} does not exist",
        dir.display()
    );
    let tmp = dir.join(format!(
        ".{name}.tmp-{}",
        porteiro_core::crypto::random_token::<6>()
    ));
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = spawn_writer(tmp.clone(), encryptor, rx);
    let dumped = if config.is_postgres() {
        porteiro_store_postgres::backup::dump(&config.database_url, &tx, on_progress).await
    } else {
        porteiro_store_sqlite::backup::dump(&config.database_url, &tx, on_progress).await
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| anyhow::anyhow!("the backup writer stopped: {e}"))
        .and_then(|r| r);
    let outcome = match (dumped, written) {
        (Ok((totals, stream_bytes)), Ok(file_bytes)) => std::fs::rename(&tmp, file)
            .with_context(|| format!("cannot move the backup into place at {}", file.display()))
            .map(|()| Written {
                totals,
                stream_bytes,
                file_bytes,
            }),
        // A failed writer explains a failed dump ("could not be written"): report the cause.
        (_, Err(e)) => Err(e.context(format!("cannot write {}", file.display()))),
        (Err(e), Ok(_)) => Err(e.context("backup failed")),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Ok(d) = std::fs::File::open(&dir) {
        // The rename itself is durable only once the directory is synced.
        let _ = d.sync_all();
    }
    outcome
}

fn encryptor(settings: &BackupSettings) -> anyhow::Result<age::Encryptor> {
    if !settings.recipients.is_empty() {
        let recipients = settings
            .recipients
            .iter()
            .map(|r| {
                r.parse::<age::x25519::Recipient>()
                    .map_err(|e| anyhow::anyhow!("BACKUP_RECIPIENT: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return age::Encryptor::with_recipients(
            recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| anyhow::anyhow!("BACKUP_RECIPIENT: {e}"));
    }
    if let Some(p) = &settings.passphrase {
        return Ok(age::Encryptor::with_user_passphrase(
            age::secrecy::SecretString::from(p.expose_secret().to_owned()),
        ));
    }
    bail!(
        "no backup key: set BACKUP_RECIPIENT (an age public key, from age-keygen) or BACKUP_PASSPHRASE"
    )
}

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

fn identities(settings: &BackupSettings) -> anyhow::Result<Identities> {
    let mut out: Identities = Vec::new();
    if let Some(path) = &settings.identity_file {
        let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
            .with_context(|| format!("BACKUP_IDENTITY_FILE: cannot read {}", path.display()))?;
        out.extend(
            file.into_identities()
                .map_err(|e| anyhow::anyhow!("BACKUP_IDENTITY_FILE: {e}"))?,
        );
    }
    if let Some(p) = &settings.passphrase {
        out.push(Box::new(age::scrypt::Identity::new(
            age::secrecy::SecretString::from(p.expose_secret().to_owned()),
        )));
    }
    if out.is_empty() {
        bail!(
            "no backup key: set BACKUP_IDENTITY_FILE (an age identity file) or BACKUP_PASSPHRASE to read backups"
        );
    }
    Ok(out)
}

/// Compresses and encrypts the chunks from `rx` into a new file at `tmp` (mode 0600), synced.
/// Returns the file's size.
fn spawn_writer(
    tmp: PathBuf,
    encryptor: age::Encryptor,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> tokio::task::JoinHandle<anyhow::Result<u64>> {
    tokio::task::spawn_blocking(move || {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let sealed = encryptor.wrap_output(BufWriter::with_capacity(256 * 1024, file))?;
        let mut out = zstd::Encoder::new(sealed, 3)?;
        let result = (|| -> anyhow::Result<u64> {
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
            }
            let sealed = out.finish()?;
            let buffered = sealed.finish()?;
            let file = buffered.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(file.metadata()?.len())
        })();
        // Whatever happened, stop the producer: it sees a closed channel.
        rx.close();
        result
    })
}

/// Decrypts and decompresses `file` on a blocking thread, sending chunks of whole lines (the
/// last one may be partial if the file is truncated), or the reason reading stopped.
fn spawn_reader(
    file: PathBuf,
    identities: Identities,
) -> (mpsc::Receiver<Chunk>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    let handle = tokio::task::spawn_blocking(move || {
        if let Err(e) = read_into(&file, &identities, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    (rx, handle)
}

fn read_into(file: &Path, identities: &Identities, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, f))
        .map_err(describe_decrypt)?;
    let scrypt = decryptor.is_scrypt();
    let plain = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            // A wrong passphrase fails the scrypt stanza's authentication.
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys if scrypt => {
                "cannot decrypt the backup: none of the configured keys opens it (it is encrypted with a passphrase: check BACKUP_PASSPHRASE)".to_owned()
            }
            other => describe_decrypt(other),
        })?;
    let inflated = zstd::Decoder::new(plain).map_err(|e| damaged(&e))?;
    let mut lines = BufReader::with_capacity(256 * 1024, inflated);
    let mut chunk = Vec::with_capacity(128 * 1024);
    loop {
        let n = lines
            .read_until(b'\n', &mut chunk)
            .map_err(|e| damaged(&e))?;
        if n == 0 || chunk.len() >= 64 * 1024 {
            if !chunk.is_empty() {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(128 * 1024));
                if tx.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    }
}

fn describe_decrypt(e: age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => "cannot decrypt the backup: none of the configured keys opens it (check BACKUP_IDENTITY_FILE or BACKUP_PASSPHRASE)".to_owned(),
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            "this is not an age-encrypted Porteiro backup, or its header is damaged".to_owned()
        }
        age::DecryptError::DecryptionFailed | age::DecryptError::InvalidMac => {
            "the backup is damaged: its header does not authenticate".to_owned()
        }
        other => format!("cannot decrypt the backup: {other}"),
    }
}

fn damaged(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        format!("the backup is truncated ({e})")
    } else {
        format!("the backup is damaged or truncated ({e})")
    }
}

fn megabytes(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1_000_000.0;
    format!("{mb:.1} MB")
}

/// Progress on standard error when it is a terminal: one line, updated at most five times a
/// second.
struct Reporter {
    what: &'static str,
    tty: bool,
    started: Instant,
    last: Mutex<Option<Instant>>,
}

impl Reporter {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }

    fn report(&self, p: Progress) {
        if !self.tty {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < Duration::from_millis(200)) {
            return;
        }
        *last = Some(now);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        #[allow(clippy::cast_precision_loss)]
        let rate = p.bytes as f64 / 1_000_000.0 / secs;
        eprint!(
            "\r\x1b[2K{}: {} rows, {} ({rate:.1} MB/s)",
            self.what,
            p.rows,
            megabytes(p.bytes)
        );
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.tty && self.last.lock().is_ok_and(|l| l.is_some()) {
            eprintln!();
        }
    }
}

/// Starts the scheduled backups of `serve` when `BACKUP_DIR` is set.
pub fn spawn_schedule(config: &Config) {
    let Some(dir) = config.backup.dir.clone() else {
        return;
    };
    let config = config.clone();
    tokio::spawn(async move {
        tracing::info!(
            dir = %dir.display(),
            every_secs = config.backup.interval.as_secs(),
            keep = config.backup.keep,
            "scheduled backups on"
        );
        let mut ticks = tokio::time::interval(config.backup.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the first backup is one interval after start-up.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match scheduled_backup(&config, &dir).await {
                Ok(Some((path, w, secs, pruned))) => tracing::info!(
                    file = %path.display(),
                    tables = w.totals.tables,
                    rows = w.totals.rows,
                    bytes = w.file_bytes,
                    seconds = secs,
                    pruned,
                    "scheduled backup written"
                ),
                Ok(None) => tracing::info!(
                    "scheduled backup skipped: another instance is taking one or just took one"
                ),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "scheduled backup failed"),
            }
        }
    });
}

/// Name prefix and suffix of scheduled backups (the middle is the UTC time, so names sort by
/// age).
const SCHEDULED_PREFIX: &str = "porteiro-";
const SCHEDULED_SUFFIX: &str = ".backup.age";

type Scheduled = (PathBuf, Written, f64, usize);

/// One scheduled backup: on PostgreSQL only by the instance that holds the backup lock, and
/// not when another instance wrote one into the same directory less than half an interval
/// ago. Then the oldest ones beyond `BACKUP_KEEP` are deleted.
///
/// # Errors
/// When the backup or the pruning fails.
pub async fn scheduled_backup(config: &Config, dir: &Path) -> anyhow::Result<Option<Scheduled>> {
    let lock = if config.is_postgres() {
        match porteiro_store_postgres::backup::try_backup_lock(&config.database_url).await? {
            Some(l) => Some(l),
            None => return Ok(None),
        }
    } else {
        None
    };
    let result = scheduled_locked(config, dir).await;
    if let Some(l) = lock {
        let _ = l.release().await;
    }
    result
}

async fn scheduled_locked(config: &Config, dir: &Path) -> anyhow::Result<Option<Scheduled>> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            b.mode(0o700);
        }
        b.create(dir)
            .with_context(|| format!("BACKUP_DIR: cannot create {}", dir.display()))?;
    }
    let now = chrono::Utc::now();
    if let Some(newest) = scheduled_files(dir)?.last()
        && let Ok(modified) = std::fs::metadata(newest).and_then(|m| m.modified())
        && modified
            .elapsed()
            .is_ok_and(|age| age < config.backup.interval / 2)
    {
        return Ok(None);
    }
    let path = dir.join(format!(
        "{SCHEDULED_PREFIX}{}{SCHEDULED_SUFFIX}",
        now.format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let started = Instant::now();
    let written = write_backup(config, &path, &|_| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    let files = scheduled_files(dir)?;
    let excess = files.len().saturating_sub(config.backup.keep);
    for old in &files[..excess] {
        std::fs::remove_file(old)
            .with_context(|| format!("cannot delete the old backup {}", old.display()))?;
    }
    Ok(Some((path, written, secs, excess)))
}

/// The scheduled backups in `dir`, oldest first.
fn scheduled_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("BACKUP_DIR: cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX) && n.ends_with(SCHEDULED_SUFFIX))
        })
        .collect();
    files.sort();
    Ok(files)
}
