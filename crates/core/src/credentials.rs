//! Password hashing: Argon2id (default) or bcrypt, verified both ways, upgraded on sign-in.
//!
//! Hashing is deliberately slow, so it never runs on the async workers. [`PasswordHasher`] runs it
//! on tokio's blocking pool behind two semaphores: `workers` bounds how many hashes run at once
//! (about one per core), `admission` bounds how many may wait. When the queue is full the caller
//! gets [`Error::Overloaded`] at once (HTTP 503) instead of piling up latency for everyone.
//!
//! Unknown users are verified against a dummy hash made with the same parameters, so an unknown
//! identifier costs the same time as a wrong password.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, Version};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Semaphore;

use crate::error::Error;

/// The configured hashing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            Self::Argon2id { m_kib, t, p } => Ok(Self::argon2(m_kib, t, p)?
                .hash_password(password)
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?
                .to_string()),
            Self::Bcrypt { cost } => {
                // The policy already refuses > 72 bytes under bcrypt; this is the backstop.
                bcrypt::non_truncating_hash(password, cost)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("bcrypt: {e}")))
            }
        }
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
        let matches = verifier.verify_password(password, &parsed).is_ok();
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

fn bcrypt_cost(stored: &str) -> Option<u32> {
    stored.split('$').nth(2)?.parse().ok()
}

/// Outcome of a verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verification {
    /// The password matches.
    pub matches: bool,
    /// It matched, but the stored hash uses another scheme or weaker parameters.
    pub needs_rehash: bool,
}

/// Hashing service with a bounded queue.
#[derive(Clone)]
pub struct PasswordHasher {
    scheme: HashScheme,
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the service: `workers` concurrent hashes, up to `queue` more waiting.
    /// Computes the dummy hash once, on the calling thread.
    ///
    /// # Errors
    /// When the scheme's parameters are invalid.
    pub fn new(scheme: HashScheme, workers: usize, queue: usize) -> Result<Self, Error> {
        let workers = workers.max(1);
        let dummy_hash = scheme.hash_blocking(crate::crypto::random_token::<16>().as_bytes())?;
        Ok(Self {
            scheme,
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
            dummy_hash: dummy_hash.into(),
        })
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
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let _running = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Overloaded)?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("hash task failed: {e}")))
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
        let (target, real) = match stored {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let outcome = self
            .run(move || scheme.verify_blocking(pw.expose_secret().as_bytes(), &target))
            .await?;
        Ok(if real {
            outcome
        } else {
            Verification::default()
        })
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
        let hasher = PasswordHasher::new(
            HashScheme::Argon2id {
                m_kib: 8192,
                t: 3,
                p: 1,
            },
            1,
            0,
        )
        .expect("valid");
        let busy = {
            let h = hasher.clone();
            tokio::spawn(async move { h.hash(&secret("abc12345xyz")).await })
        };
        tokio::task::yield_now().await;
        // Wait until the only slot is taken, then a second request must be refused.
        while hasher.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.hash(&secret("abc12345xyz")).await,
            Err(Error::Overloaded)
        ));
        busy.await.expect("join").expect("first hash succeeds");
    }
}
