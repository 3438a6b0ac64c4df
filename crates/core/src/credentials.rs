//! Password hashing: Argon2id (default) or bcrypt, verified both ways, upgraded on sign-in.
//!
//! Hashing is deliberately slow, so it never runs on the async workers. [`PasswordHasher`] owns a
//! fixed set of threads (about one per core) fed by a bounded queue. When the queue is full the
//! caller gets [`Error::Overloaded`] at once (HTTP 503) instead of piling up latency for everyone.
//! Dedicated threads rather than tokio's elastic blocking pool also bound memory: each Argon2 hash
//! needs 19 MiB, and the allocator keeps that per thread, so few threads means few buffers. Each
//! thread reuses its buffer while work keeps coming and unmaps it after a second without any.
//!
//! Unknown users are verified against a dummy hash made with the same parameters, so an unknown
//! identifier costs the same time as a wrong password. The dummy hash is made in the background at
//! start-up, on a thread of its own so that the pool is free from the start (the server answers
//! meanwhile); a verification that needs it before it is ready waits for it on its hashing thread.
//!
//! Accounts not yet re-hashed after a change of scheme or parameters (bcrypt-12 after a move to
//! Argon2id, say) cost what *their* hash costs, which would tell them apart from unknown
//! identifiers. So the hasher is told which older parameters are still stored
//! ([`PasswordHasher::calibrate`], from a census of the stored hashes at start-up and by
//! maintenance), measures a verification under each, and while any is in use pads every
//! verification — real or dummy — by waiting (on the async side, not on a hashing thread) to what
//! the slowest of them costs at the machine's current load: the measured cost times a moving
//! average of observed over measured hashing times. With every account on the current parameters
//! there is no padding at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{RecvTimeoutError, Sender, TrySendError, bounded};

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::Error;

/// The configured hashing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashScheme {
    /// Argon2id v1.3 with memory (KiB), iterations and parallelism.
    Argon2id {
        /// Memory cost in KiB (default 19456 = 19 MiB).
        m_kib: u32,
        /// Iterations (default 2).
        t: u32,
        /// Lanes (default 1).
        p: u32,
    },
    /// bcrypt with the given cost (`PASSWORD_SALT_ROUNDS`).
    Bcrypt {
        /// log2 of the rounds, 4–31.
        cost: u32,
    },
}

impl Default for HashScheme {
    fn default() -> Self {
        Self::Argon2id {
            m_kib: 19_456,
            t: 2,
            p: 1,
        }
    }
}

impl HashScheme {
    /// The start of every hash this scheme makes: the scheme and its parameters, up to the salt
    /// (`$argon2id$v=19$m=19456,t=2,p=1$`, `$2b$12$`).
    #[must_use]
    pub fn phc_prefix(self) -> String {
        match self {
            Self::Argon2id { m_kib, t, p } => format!("$argon2id$v=19$m={m_kib},t={t},p={p}$"),
            Self::Bcrypt { cost } => format!("$2b${cost:02}$"),
        }
    }

    /// The scheme and parameters a stored hash (or its first characters, see
    /// [`crate::store::HASH_PREFIX_CHARS`]) was made with. Argon2i/Argon2d hashes count as
    /// Argon2id with the same parameters (the same cost). `None` when unrecognisable.
    #[must_use]
    pub fn of_stored(stored: &str) -> Option<Self> {
        let mut fields = stored.split('$');
        if !fields.next()?.is_empty() {
            return None;
        }
        match fields.next()? {
            "2a" | "2b" | "2x" | "2y" => {
                let cost: u32 = fields.next()?.parse().ok()?;
                let scheme = Self::Bcrypt { cost };
                scheme.validate().ok().map(|()| scheme)
            }
            "argon2id" | "argon2i" | "argon2d" => {
                let mut params = fields.next()?;
                if params.starts_with("v=") {
                    params = fields.next()?;
                }
                let (mut m, mut t, mut p) = (None, None, None);
                for pair in params.split(',') {
                    let (k, v) = pair.split_once('=')?;
                    let v: u32 = v.parse().ok()?;
                    match k {
                        "m" => m = Some(v),
                        "t" => t = Some(v),
                        "p" => p = Some(v),
                        _ => {}
                    }
                }
                let scheme = Self::Argon2id {
                    m_kib: m?,
                    t: t?,
                    p: p?,
                };
                scheme.validate().ok().map(|()| scheme)
            }
            _ => None,
        }
    }

    /// Whether this scheme truncates input (bcrypt, 72 bytes), so the policy must cap it.
    #[must_use]
    pub fn is_bcrypt(self) -> bool {
        matches!(self, Self::Bcrypt { .. })
    }

    fn argon2(m_kib: u32, t: u32, p: u32) -> Result<Argon2<'static>, Error> {
        let params = Params::new(m_kib, t, p, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks the parameters can be used (for start-up validation).
    ///
    /// # Errors
    /// When Argon2 parameters are out of range or the bcrypt cost is not 4–31.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Self::Argon2id { m_kib, t, p } => Params::new(m_kib, t, p, None)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Bcrypt { cost } if (4..=31).contains(&cost) => Ok(()),
            Self::Bcrypt { .. } => Err("bcrypt cost must be between 4 and 31".to_owned()),
        }
    }

    /// Hashes synchronously. Call from a blocking context only.
    fn hash_blocking(self, password: &[u8]) -> Result<String, Error> {
        match self {
            Self::Argon2id { m_kib, t, p } => argon2_hash(&Self::argon2(m_kib, t, p)?, password),
            Self::Bcrypt { cost } => {
                // The policy already refuses > 72 bytes under bcrypt; this is the backstop.
                bcrypt::non_truncating_hash(password, cost)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("bcrypt: {e}")))
            }
        }
    }

    /// How long one verification under this scheme takes here: the median of three, against a
    /// hash of a random password. Blocking (and as slow as three verifications).
    fn verification_cost(self) -> std::time::Duration {
        let password = crate::crypto::random_token::<16>();
        let Ok(hash) = self.hash_blocking(password.as_bytes()) else {
            return std::time::Duration::ZERO;
        };
        let mut times: Vec<std::time::Duration> = (0..3)
            .map(|_| {
                let start = std::time::Instant::now();
                let _ = self.verify_blocking(b"not-the-password-1", &hash);
                start.elapsed()
            })
            .collect();
        times.sort_unstable();
        times[1]
    }

    /// Verifies synchronously and says whether the stored hash should be replaced.
    fn verify_blocking(self, password: &[u8], stored: &str) -> Verification {
        if stored.starts_with("$2") {
            // `non_truncating_verify` refuses > 72 bytes instead of comparing a prefix.
            let matches = bcrypt::non_truncating_verify(password, stored).unwrap_or(false);
            let same_cost = bcrypt_cost(stored)
                == Some(match self {
                    Self::Bcrypt { cost } => cost,
                    Self::Argon2id { .. } => 0,
                });
            return Verification {
                matches,
                needs_rehash: matches && !same_cost,
            };
        }
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verification::default();
        };
        if parsed.algorithm != ARGON2ID_IDENT
            && parsed.algorithm.as_str() != "argon2i"
            && parsed.algorithm.as_str() != "argon2d"
        {
            return Verification::default();
        }
        let Ok(stored_params) = Params::try_from(&parsed) else {
            return Verification::default();
        };
        let Ok(algorithm) = Algorithm::new(parsed.algorithm.as_str()) else {
            return Verification::default();
        };
        let verifier = Argon2::new(algorithm, Version::V0x13, stored_params.clone());
        let matches = argon2_verify(&verifier, password, &parsed);
        let current = match self {
            Self::Argon2id { m_kib, t, p } => {
                algorithm == Algorithm::Argon2id
                    && parsed.version == Some(Version::V0x13 as u32)
                    && stored_params.m_cost() == m_kib
                    && stored_params.t_cost() == t
                    && stored_params.p_cost() == p
            }
            Self::Bcrypt { .. } => false,
        };
        Verification {
            matches,
            needs_rehash: matches && !current,
        }
    }
}

thread_local! {
    /// Argon2's working memory (19 MiB by default), kept per hashing thread and reused while work
    /// keeps coming; released after [`RELEASE_AFTER_IDLE`] without any.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// A hashing thread that has had no work for this long gives its Argon2 memory back, so an idle
/// server does not hold 19 MiB per thread. Under load the queue is rarely empty for that long, so
/// the memory is reused; after a pause the next hash pays for a fresh allocation (a few ms).
const RELEASE_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// 32 MiB + 1 KiB of blocks: above any mmap threshold glibc adjusts to, so the allocation is
/// always its own mapping and freeing it always unmaps it.
const ALWAYS_MAPPED_BLOCKS: usize = 32 * 1024 + 1;

/// Frees this thread's Argon2 memory. The block is far above the allocator's mmap threshold, so
/// freeing it returns the pages to the operating system.
fn release_blocks() {
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.capacity() > 0 {
            *blocks = Vec::new();
        }
    });
}

fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.capacity() < count {
            // Reserve past glibc's largest dynamic mmap threshold (32 MiB): a smaller block, once
            // freed, raises the threshold and the next one of the same size lands in the heap
            // arena, where freeing it keeps the pages. Only the `count` blocks written below
            // become resident; the rest of the reservation is address space.
            *blocks = Vec::with_capacity(count.max(ALWAYS_MAPPED_BLOCKS));
        }
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        f(&mut blocks[..count])
    })
}

/// Argon2 into a PHC string, as `argon2::PasswordHasher` would produce, on the reused memory.
fn argon2_hash(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, Error> {
    let fail =
        |e: &dyn std::fmt::Display| Error::Internal(anyhow::anyhow!("argon2 hashing failed: {e}"));
    let salt = Salt::new(&crate::crypto::random_bytes::<16>()).map_err(|e| fail(&e))?;
    let params = argon2.params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_blocks(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, &salt, &mut out, blocks)
    })
    .map_err(|e| fail(&e))?;
    let hash = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| fail(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(hash.to_string())
}

/// Recomputes a stored Argon2 hash on the reused memory and compares in constant time.
fn argon2_verify(argon2: &Argon2<'_>, password: &[u8], stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let expected = expected.as_bytes();
    if expected.is_empty() || expected.len() > Output::MAX_LENGTH {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let count = argon2.params().block_count();
    let computed = with_blocks(count, |blocks| {
        argon2.hash_password_into_with_memory(password, salt, &mut out, blocks)
    });
    computed.is_ok() && crate::crypto::ct_eq(&out, expected)
}

fn bcrypt_cost(stored: &str) -> Option<u32> {
    stored.split('$').nth(2)?.parse().ok()
}

/// Which password-hashing parameters the stored accounts use (`porteiro user rehash-status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashStatus {
    /// Accounts in all.
    pub total: u64,
    /// Accounts hashed with other parameters than the configured ones (re-hashed at their next
    /// sign-in).
    pub stale: u64,
    /// The other parameters found, with how many accounts use each. Counted over at most
    /// [`CENSUS_LIMIT`] stale accounts.
    pub stale_schemes: Vec<(HashScheme, u64)>,
    /// Stale hashes whose scheme is not recognised at all (they can never verify).
    pub unrecognised: u64,
}

/// Most stale accounts whose parameters a census reads.
pub const CENSUS_LIMIT: u32 = 100_000;

/// Counts the stored hashes by scheme and parameters, against the configured `scheme`.
///
/// # Errors
/// On store failure.
pub async fn hash_status(
    store: &dyn crate::store::Store,
    scheme: HashScheme,
) -> Result<HashStatus, Error> {
    let census = store
        .password_hash_census(&scheme.phc_prefix(), CENSUS_LIMIT)
        .await?;
    let mut counts = std::collections::BTreeMap::<HashScheme, u64>::new();
    let mut unrecognised = 0;
    for prefix in &census.stale_prefixes {
        match HashScheme::of_stored(prefix) {
            Some(s) => *counts.entry(s).or_default() += 1,
            None => unrecognised += 1,
        }
    }
    Ok(HashStatus {
        total: census.total,
        stale: census.stale,
        stale_schemes: counts.into_iter().collect(),
        unrecognised,
    })
}

/// Outcome of a verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verification {
    /// The password matches.
    pub matches: bool,
    /// It matched, but the stored hash uses another scheme or weaker parameters.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of hashing threads behind a bounded queue. The threads end when the last
/// [`PasswordHasher`] clone is dropped (the channel closes).
struct HashPool {
    jobs: Sender<Job>,
    workers: usize,
    /// Threads running a job right now (for the metrics; relaxed, a snapshot).
    busy: Arc<AtomicUsize>,
}

impl HashPool {
    fn new(workers: usize, queue: usize) -> Result<Self, Error> {
        // Every thread waits on the channel itself (no shared lock), so each one notices its
        // own idleness and releases its own memory.
        let (jobs, receiver) = bounded::<Job>(queue);
        let busy = Arc::new(AtomicUsize::new(0));
        for i in 0..workers {
            let receiver = receiver.clone();
            let running = Arc::clone(&busy);
            std::thread::Builder::new()
                .name(format!("porteiro-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.recv_timeout(RELEASE_AFTER_IDLE) {
                            Ok(job) => job,
                            Err(RecvTimeoutError::Timeout) => {
                                release_blocks();
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => return,
                        };
                        let _busy = Busy::start(&running);
                        job();
                    }
                })
                .map_err(|e| anyhow::anyhow!("cannot start a hashing thread: {e}"))?;
        }
        Ok(Self {
            jobs,
            workers,
            busy,
        })
    }
}

/// Counts a thread as busy while it lives, so a job that panics is not counted forever.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of the hashing pool, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPoolStats {
    /// Hashing threads.
    pub workers: usize,
    /// Threads hashing right now.
    pub busy: usize,
    /// Jobs waiting for a thread.
    pub queued: usize,
}

/// Hashing service with a bounded queue.
#[derive(Clone)]
pub struct PasswordHasher {
    scheme: HashScheme,
    pool: Arc<HashPool>,
    dummy: Arc<DummyHash>,
    /// The measured cost of each scheme in use, when more than one is (see
    /// [`PasswordHasher::calibrate`]); empty means no padding.
    costs: Arc<std::sync::RwLock<Arc<Calibration>>>,
}

/// What [`PasswordHasher::calibrate`] measured: each scheme's verification time on an unloaded
/// thread, the slowest of them, and how much slower than that verifications run lately.
#[derive(Debug, Default)]
struct Calibration {
    costs: Vec<(HashScheme, std::time::Duration)>,
    slowest: std::time::Duration,
    /// Moving average of (observed hashing time / measured cost), as `f64` bits: the machine's
    /// current load factor, learnt from every verification.
    slowdown: std::sync::atomic::AtomicU64,
}

impl Calibration {
    fn slowdown(&self) -> f64 {
        f64::from_bits(self.slowdown.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Learns from one verification under `scheme` that took `took` on its hashing thread, and
    /// returns how long it must take in all: what the slowest scheme costs at the current load.
    fn target(&self, scheme: Option<HashScheme>, took: std::time::Duration) -> std::time::Duration {
        let cost = scheme.and_then(|s| self.costs.iter().find(|(c, _)| *c == s).map(|c| c.1));
        let mut slowdown = self.slowdown();
        if let Some(cost) = cost.filter(|c| !c.is_zero()) {
            // One sample moves the average a little, and a single preempted hash cannot move it
            // far: a load factor is learnt, not one request's bad luck.
            let sample = (took.as_secs_f64() / cost.as_secs_f64()).clamp(0.5, 8.0);
            slowdown = 0.95f64.mul_add(slowdown, 0.05 * sample);
            self.slowdown
                .store(slowdown.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
        self.slowest.mul_f64(slowdown.max(1.0))
    }
}

/// The hash unknown accounts are verified against, made once with the configured scheme.
struct DummyHash {
    scheme: HashScheme,
    value: OnceLock<Option<String>>,
}

impl DummyHash {
    /// The hash, making it first if no thread has (others wait meanwhile). Blocking.
    fn get(&self) -> Option<&str> {
        self.value
            .get_or_init(|| {
                let password = crate::crypto::random_token::<16>();
                self.scheme.hash_blocking(password.as_bytes()).ok()
            })
            .as_deref()
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the service: `workers` concurrent hashes, up to `queue` more waiting, and starts
    /// making the dummy hash on a short-lived thread (its Argon2 memory is freed when it ends).
    ///
    /// # Errors
    /// When the scheme's parameters are invalid.
    pub fn new(scheme: HashScheme, workers: usize, queue: usize) -> Result<Self, Error> {
        scheme
            .validate()
            .map_err(|e| Error::Internal(anyhow::anyhow!("password hashing parameters: {e}")))?;
        let workers = workers.max(1);
        let pool = HashPool::new(workers, queue)?;
        let dummy = Arc::new(DummyHash {
            scheme,
            value: OnceLock::new(),
        });
        let making = Arc::clone(&dummy);
        std::thread::Builder::new()
            .name("porteiro-hash-dummy".to_owned())
            .spawn(move || {
                making.get();
            })
            .map_err(|e| anyhow::anyhow!("cannot start a hashing thread: {e}"))?;
        Ok(Self {
            scheme,
            pool: Arc::new(pool),
            dummy,
            costs: Arc::new(std::sync::RwLock::new(Arc::new(Calibration::default()))),
        })
    }

    /// Sets the verification padding from the schemes other than the configured one that stored
    /// hashes still use: a verification under each (and under the configured scheme) is timed —
    /// the median of three, on a thread of its own. From then on every verification lasts, by
    /// waiting after its hashing, at least what the slowest scheme costs times the machine's
    /// current load factor, a moving average of observed hashing time over measured cost, so the
    /// padding follows load as the slow scheme's real hashing does. With no other scheme in use
    /// the padding is removed; with the same schemes as last time nothing is measured again.
    /// Returns the slowest cost (zero: no padding).
    ///
    /// # Errors
    /// When the measuring thread cannot run.
    pub async fn calibrate(&self, stale: &[HashScheme]) -> Result<std::time::Duration, Error> {
        let mut schemes: Vec<HashScheme> = stale
            .iter()
            .copied()
            .filter(|s| *s != self.scheme)
            .filter(|s| {
                // Parameters no deployment uses would make the floor (and the measurement) a
                // denial of service; such hashes are reported by rehash-status, not padded to.
                let plausible = match *s {
                    HashScheme::Bcrypt { cost } => cost <= 16,
                    HashScheme::Argon2id { m_kib, t, p } => m_kib <= 262_144 && t <= 16 && p <= 16,
                };
                if !plausible {
                    tracing::warn!(scheme = ?s, "stored password hashes with implausible parameters are not padded to");
                }
                plausible
            })
            .collect();
        schemes.sort_unstable();
        schemes.dedup();
        let current = self.calibration();
        let measured: Vec<HashScheme> = current
            .costs
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s != self.scheme)
            .collect();
        if measured == schemes {
            // The same schemes as last time: their costs stand, and the load factor learnt
            // since then keeps following the machine. Nothing to measure again.
            return Ok(current.slowest);
        }
        let calibration = if schemes.is_empty() {
            Calibration::default()
        } else {
            schemes.push(self.scheme);
            let (done, result) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("porteiro-hash-calibrate".to_owned())
                .spawn(move || {
                    let costs: Vec<_> = schemes
                        .iter()
                        .map(|s| (*s, s.verification_cost()))
                        .collect();
                    release_blocks();
                    let _ = done.send(costs);
                })
                .map_err(|e| anyhow::anyhow!("cannot start a hashing thread: {e}"))?;
            let costs = result
                .await
                .map_err(|_| anyhow::anyhow!("hash calibration thread failed"))?;
            let slowest = costs.iter().map(|(_, c)| *c).max().unwrap_or_default();
            Calibration {
                costs,
                slowest,
                slowdown: std::sync::atomic::AtomicU64::new(1.0f64.to_bits()),
            }
        };
        let slowest = calibration.slowest;
        *self
            .costs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(calibration);
        Ok(slowest)
    }

    /// The slowest verification cost in use that others are padded to (zero when every stored
    /// hash uses the configured scheme: no padding).
    #[must_use]
    pub fn floor(&self) -> std::time::Duration {
        self.calibration().slowest
    }

    fn calibration(&self) -> Arc<Calibration> {
        self.costs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How busy the hashing threads are (two relaxed loads: cheap enough for every scrape).
    #[must_use]
    pub fn stats(&self) -> HashPoolStats {
        HashPoolStats {
            workers: self.pool.workers,
            busy: self.pool.busy.load(Ordering::Relaxed),
            queued: self.pool.jobs.len(),
        }
    }

    /// The configured scheme.
    #[must_use]
    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (done, result) = tokio::sync::oneshot::channel();
        let boxed: Job = Box::new(move || {
            let _ = done.send(job());
        });
        match self.pool.jobs.try_send(boxed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Overloaded),
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::Internal(anyhow::anyhow!("hashing threads stopped")));
            }
        }
        result
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("hash job was dropped")))
    }

    /// Hashes a new password with the configured scheme.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full.
    pub async fn hash(&self, password: &SecretString) -> Result<String, Error> {
        let scheme = self.scheme;
        let pw = password.clone();
        self.run(move || scheme.hash_blocking(pw.expose_secret().as_bytes()))
            .await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no account,
    /// so both paths cost the same.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<&str>,
    ) -> Result<Verification, Error> {
        let scheme = self.scheme;
        let pw = password.clone();
        let stored = stored.map(str::to_owned);
        let real = stored.is_some();
        let dummy = Arc::clone(&self.dummy);
        let calibration = self.calibration();
        let padding = !calibration.costs.is_empty();
        let (outcome, hashing, used) = self
            .run(move || {
                let target = match &stored {
                    Some(h) => h.as_str(),
                    None => dummy.get().ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!(
                            "the dummy password hash could not be made"
                        ))
                    })?,
                };
                let started = std::time::Instant::now();
                let outcome = scheme.verify_blocking(pw.expose_secret().as_bytes(), target);
                let used = if padding {
                    HashScheme::of_stored(target)
                } else {
                    None
                };
                Ok::<_, Error>((outcome, started.elapsed(), used))
            })
            .await??;
        if padding {
            // Wait until this verification has cost what one under the slowest scheme in use
            // costs at the machine's current load (a real one of those waits only if it was
            // unusually quick).
            if let Some(rest) = calibration.target(used, hashing).checked_sub(hashing) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(if real {
            outcome
        } else {
            Verification::default()
        })
    }
}

/// Security answers (see `flows::security_questions`) are hashed with Argon2id whatever the
/// password scheme: the configured parameters when the passwords use Argon2id, the defaults
/// otherwise. They run on the same bounded pool as passwords.
impl PasswordHasher {
    fn answer_scheme(&self) -> HashScheme {
        match self.scheme {
            s @ HashScheme::Argon2id { .. } => s,
            HashScheme::Bcrypt { .. } => HashScheme::default(),
        }
    }

    /// Hashes a normalised security answer with Argon2id.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full.
    pub async fn hash_answer(&self, answer: &SecretString) -> Result<String, Error> {
        let scheme = self.answer_scheme();
        let answer = answer.clone();
        self.run(move || scheme.hash_blocking(answer.expose_secret().as_bytes()))
            .await?
    }

    /// Checks normalised answers against their hashes, one after another on one hashing thread.
    /// A `None` hash (a decoy question, an unknown address) costs one hash as well and never
    /// matches, so every answer costs the same whatever it is checked against.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full.
    pub async fn verify_answers(
        &self,
        pairs: Vec<(SecretString, Option<String>)>,
    ) -> Result<Vec<bool>, Error> {
        let scheme = self.answer_scheme();
        self.run(move || {
            pairs
                .iter()
                .map(|(answer, stored)| {
                    let bytes = answer.expose_secret().as_bytes();
                    match stored {
                        Some(h) => scheme.verify_blocking(bytes, h).matches,
                        None => {
                            // As costly as a verification (Argon2 verifies by hashing again).
                            let _ = scheme.hash_blocking(bytes);
                            false
                        }
                    }
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashScheme = HashScheme::Argon2id {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn argon2_hash_verifies_and_wrong_password_does_not() {
        let hasher = PasswordHasher::new(CHEAP, 1, 4).expect("valid");
        let hash = hasher
            .hash(&secret("MinhaS3nha!Forte"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            hasher
                .verify(&secret("MinhaS3nha!Forte"), Some(&hash))
                .await
                .expect("verify"),
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(
            !hasher
                .verify(&secret("wrong"), Some(&hash))
                .await
                .expect("verify")
                .matches
        );
    }

    #[test]
    fn hashes_interoperate_with_the_standard_argon2_api() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let argon2 = HashScheme::argon2(64, 1, 1).expect("params");
        let ours = argon2_hash(&argon2, b"abc12345xyz").expect("hash");
        assert!(
            argon2
                .verify_password(b"abc12345xyz", &PasswordHash::new(&ours).expect("phc"))
                .is_ok()
        );
        let theirs = argon2
            .hash_password(b"abc12345xyz")
            .expect("hash")
            .to_string();
        assert!(argon2_verify(
            &argon2,
            b"abc12345xyz",
            &PasswordHash::new(&theirs).expect("phc")
        ));
        assert!(!argon2_verify(
            &argon2,
            b"abc12345xyZ",
            &PasswordHash::new(&theirs).expect("phc")
        ));
    }

    #[tokio::test]
    async fn weaker_argon2_parameters_ask_for_a_rehash() {
        let weak = PasswordHasher::new(
            HashScheme::Argon2id {
                m_kib: 32,
                t: 1,
                p: 1,
            },
            1,
            4,
        )
        .expect("valid");
        let hash = weak.hash(&secret("abc12345xyz")).await.expect("hash");
        let current = PasswordHasher::new(CHEAP, 1, 4).expect("valid");
        let v = current
            .verify(&secret("abc12345xyz"), Some(&hash))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify_under_argon2_and_are_upgraded() {
        let bcrypt_hasher =
            PasswordHasher::new(HashScheme::Bcrypt { cost: 4 }, 1, 4).expect("valid");
        let hash = bcrypt_hasher
            .hash(&secret("abc12345xyz"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$2b$04$"));
        let v = PasswordHasher::new(CHEAP, 1, 4)
            .expect("valid")
            .verify(&secret("abc12345xyz"), Some(&hash))
            .await
            .expect("verify");
        assert!(v.matches && v.needs_rehash);
        let same = bcrypt_hasher
            .verify(&secret("abc12345xyz"), Some(&hash))
            .await
            .expect("verify");
        assert_eq!(
            same,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn bcrypt_never_matches_on_a_72_byte_prefix() {
        let long = "a1".repeat(40); // 80 bytes
        let truncated = bcrypt::hash(&long, 4).expect("legacy truncating hash");
        let hasher = PasswordHasher::new(HashScheme::Bcrypt { cost: 4 }, 1, 4).expect("valid");
        assert!(
            !hasher
                .verify(&secret(&long), Some(&truncated))
                .await
                .expect("verify")
                .matches
        );
        assert!(hasher.hash(&secret(&long)).await.is_err());
    }

    #[tokio::test]
    async fn unknown_users_never_match_the_dummy_hash() {
        let hasher = PasswordHasher::new(CHEAP, 1, 4).expect("valid");
        assert_eq!(
            hasher
                .verify(&secret("anything1"), None)
                .await
                .expect("verify"),
            Verification::default()
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded_at_once() {
        // One thread, no queue: while a slow hash runs, the next request is refused at once.
        let slow = HashScheme::Argon2id {
            m_kib: 65_536,
            t: 6,
            p: 1,
        };
        let hasher = PasswordHasher::new(slow, 1, 0).expect("valid");
        // Let the thread reach its receive loop: with no queue, only a waiting thread accepts.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let busy = {
            let h = hasher.clone();
            tokio::spawn(async move { h.hash(&secret("abc12345xyz")).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let started = std::time::Instant::now();
        assert!(matches!(
            hasher.hash(&secret("abc12345xyz")).await,
            Err(Error::Overloaded)
        ));
        assert!(
            started.elapsed() < std::time::Duration::from_millis(20),
            "refused without waiting"
        );
        busy.await.expect("join").expect("first hash succeeds");
    }
}
