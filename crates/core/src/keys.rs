//! Token-signing keys and access-token JWTs.
//!
//! Keys are Ed25519 (JOSE `EdDSA`), generated with aws-lc-rs and stored with the private half
//! sealed under the master key. The newest key signs; older keys keep verifying, so tokens signed
//! before `porteiro keys rotate` stay valid until they expire — but only that long: once a newer
//! key has existed for an access-token lifetime plus [`SUCCESSION_GRACE`], nothing signed by the
//! old key can still be alive, so it stops verifying and leaves the JWKS at once, and maintenance
//! marks it retired and erases its private half ([`KeyRing::retire_superseded`]).
//! `porteiro keys retire KID` retires a key immediately. Public keys are published as a JWKS.
//!
//! Verification is strict: the header must name `EdDSA` and one of our `kid`s and carry no key
//! references (`jku`, `jwk`, `x5u`, `x5c`, `x5t`) or `crit`; `alg: none`, HMAC and RSA tokens are
//! refused before any signature work. `exp`/`nbf` are checked against the injected clock.

use crate::domain::audit::{Outcome, kind};
use crate::flows::audit::{committed, new_event};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::error::Error;
use crate::store::{SealedColumn, Store, StoredKey};

/// `typ` claim of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "access";
/// Clock skew tolerated between instances, in seconds.
const LEEWAY_SECS: i64 = 5;
/// Minimum interval between key reloads triggered by an unknown `kid`.
const RELOAD_INTERVAL: StdDuration = StdDuration::from_secs(5);
/// How long after a newer key appears an instance may still sign with the older one: the
/// SQLite key reload interval (60 s) plus clock skew, with margin.
pub const SUCCESSION_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// Claims of an access token (PRODUCT.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Session id.
    pub sid: String,
    /// Token type, always `access`.
    pub typ: String,
    /// How the session was authenticated (RFC 8176 values: `pwd`, `otp`, …), kept across
    /// refreshes. Absent from tokens issued before sessions recorded it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Names of the user's roles when the token was issued, for third-party services. Checks
    /// made by Porteiro itself never trust it: they read the live grants.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// One JSON Web Key of the published set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type (`OKP`).
    pub kty: String,
    /// Curve (`Ed25519`).
    pub crv: String,
    /// Public key, base64url.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Intended use (`sig`).
    #[serde(rename = "use")]
    pub use_: String,
    /// Algorithm (`EdDSA`).
    pub alg: String,
}

/// The published key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// Keys, newest first.
    pub keys: Vec<Jwk>,
}

struct KeySet {
    signing_kid: String,
    signing: EncodingKey,
    /// Each verifying key, and the time after which it no longer verifies (superseded keys).
    verifying: HashMap<String, (DecodingKey, Option<DateTime<Utc>>)>,
    /// Published keys, with the same end of validity.
    jwks: Vec<(Jwk, Option<DateTime<Utc>>)>,
}

/// The in-memory key ring, reloadable from the store.
pub struct KeyRing {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
    issuer: String,
    audience: String,
    /// Access-token lifetime plus [`SUCCESSION_GRACE`]: how long a superseded key verifies.
    superseded_validity: chrono::Duration,
    /// Set by a reload that found a key gone (retired elsewhere); see [`KeyRing::take_key_lost`].
    key_lost: std::sync::atomic::AtomicBool,
    set: RwLock<Arc<KeySet>>,
    last_reload: std::sync::Mutex<Instant>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Generates a new Ed25519 key, seals it and stores it with its `signing_key.rotated` event
/// (`details.via` says who asked). Returns its `kid`.
///
/// # Errors
/// On store failure.
pub async fn generate_key(
    store: &dyn Store,
    envelope: &Envelope,
    now: DateTime<Utc>,
    via: &'static str,
) -> Result<String, Error> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("Ed25519 key: {e}"))?;
    let public = pair.public_key().as_ref().to_vec();
    // The kid is derived from the public key, so it never reveals anything else.
    let kid = URL_SAFE_NO_PAD
        .encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public).as_ref()[..12]);
    let sealed = envelope.seal_deployment_column(SealedColumn::SigningKey, &kid, pkcs8.as_ref());
    let rotated = [key_event(now, kind::SIGNING_KEY_ROTATED, &kid, via)];
    store
        .insert_signing_key(
            &StoredKey {
                kid: kid.clone(),
                algorithm: "EdDSA".to_owned(),
                public_key: public,
                private_key_enc: sealed,
                created_at: crate::clock::to_millis_precision(now),
                retired_at: None,
            },
            &rotated,
        )
        .await?;
    committed(&rotated);
    Ok(kid)
}

fn key_event(
    now: DateTime<Utc>,
    event_type: &'static str,
    kid: &str,
    via: &'static str,
) -> crate::domain::NewAuditEvent {
    new_event(
        now,
        event_type,
        Outcome::Success,
        None,
        None,
        serde_json::json!({"kid": kid, "via": via}),
    )
}

/// One stored key as `porteiro keys status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// Key id.
    pub kid: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// `signing`, `verifying` (superseded, until `verifies_until`) or `retired`.
    pub state: &'static str,
    /// For a superseded key: when it stops verifying.
    pub verifies_until: Option<DateTime<Utc>>,
    /// For a retired key: when.
    pub retired_at: Option<DateTime<Utc>>,
}

/// Every stored key and its state at `now`, newest first.
///
/// # Errors
/// On store failure.
pub async fn key_status(
    store: &dyn Store,
    access_ttl: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<KeyStatus>, Error> {
    let stored = store.signing_keys().await?;
    let live = KeyRing::live_keys(&stored, access_ttl + SUCCESSION_GRACE);
    Ok(stored
        .iter()
        .map(|k| {
            let until = live.iter().find(|(l, _)| l.kid == k.kid).map(|(_, u)| *u);
            let state = match until {
                None => "retired",
                Some(None) => "signing",
                Some(Some(t)) if t > now => "verifying",
                Some(Some(_)) => "expired",
            };
            KeyStatus {
                kid: k.kid.clone(),
                created_at: k.created_at,
                state,
                verifies_until: until.flatten(),
                retired_at: k.retired_at,
            }
        })
        .collect())
}

/// Retires one key at once (`porteiro keys retire KID`): it stops verifying — on every instance
/// at its next key reload — leaves the JWKS, and its private half is erased. The signing key
/// cannot be retired; rotate first.
///
/// # Errors
/// `NotFound` for an unknown or already retired key; `Validation` for the signing key.
pub async fn retire_key(
    store: &dyn Store,
    kid: &str,
    now: DateTime<Utc>,
    via: &'static str,
) -> Result<(), Error> {
    let stored = store.signing_keys().await?;
    let signing = stored.iter().find(|k| k.retired_at.is_none());
    if signing.is_some_and(|k| k.kid == kid) {
        return Err(Error::validation(
            "kid",
            "signing_key_in_use",
            "This key signs new tokens; run `porteiro keys rotate` first, then retire it.",
        ));
    }
    let retired = [key_event(now, kind::SIGNING_KEY_RETIRED, kid, via)];
    if !store.retire_signing_key(kid, now, &retired).await? {
        return Err(Error::NotFound);
    }
    committed(&retired);
    Ok(())
}

impl KeyRing {
    /// Loads the keys, generating the first one if the store has none.
    ///
    /// # Errors
    /// When the store fails or the newest private key cannot be opened with this master key.
    pub async fn load(
        store: Arc<dyn Store>,
        envelope: Arc<Envelope>,
        issuer: String,
        audience: String,
        access_ttl: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        if !store
            .signing_keys()
            .await?
            .iter()
            .any(|k| k.retired_at.is_none())
        {
            generate_key(store.as_ref(), &envelope, now, "first_start").await?;
        }
        let superseded_validity = access_ttl + SUCCESSION_GRACE;
        let set = Self::build(store.as_ref(), &envelope, superseded_validity).await?;
        Ok(Self {
            store,
            envelope,
            issuer,
            audience,
            superseded_validity,
            key_lost: std::sync::atomic::AtomicBool::new(false),
            set: RwLock::new(Arc::new(set)),
            last_reload: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// The live keys, newest first, each with the time it stops verifying (`None`: the signing
    /// key). A key is superseded once a newer key exists; it verifies for `validity` after that.
    fn live_keys(
        stored: &[StoredKey],
        validity: chrono::Duration,
    ) -> Vec<(&StoredKey, Option<DateTime<Utc>>)> {
        let mut live: Vec<(&StoredKey, Option<DateTime<Utc>>)> = Vec::new();
        let mut successor: Option<DateTime<Utc>> = None;
        for key in stored {
            // A key is superseded by the next newer key, retired or not: retiring that one must
            // not give an older key a second life. The newest key that is not retired signs.
            if key.retired_at.is_none() {
                let until = if live.is_empty() {
                    None
                } else {
                    successor.map(|t| t + validity)
                };
                live.push((key, until));
            }
            successor = Some(key.created_at);
        }
        live
    }

    async fn build(
        store: &dyn Store,
        envelope: &Envelope,
        validity: chrono::Duration,
    ) -> Result<KeySet, Error> {
        let stored = store.signing_keys().await?;
        let live = Self::live_keys(&stored, validity);
        let newest = live
            .first()
            .map(|(k, _)| *k)
            .ok_or_else(|| anyhow::anyhow!("no signing key that is not retired"))?;
        let pkcs8 = envelope
            .open_deployment_column(SealedColumn::SigningKey, &newest.kid, &newest.private_key_enc)
            .map_err(|e| {
                anyhow::anyhow!("cannot open signing key {}: {e} (is MASTER_KEY the one the keys were made with?)", newest.kid)
            })?;
        let mut verifying = HashMap::new();
        let mut keys = Vec::new();
        for (key, until) in live.into_iter().filter(|(k, _)| k.algorithm == "EdDSA") {
            let x = URL_SAFE_NO_PAD.encode(&key.public_key);
            verifying.insert(
                key.kid.clone(),
                (DecodingKey::from_ed_der(&key.public_key), until),
            );
            keys.push((
                Jwk {
                    kty: "OKP".to_owned(),
                    crv: "Ed25519".to_owned(),
                    x,
                    kid: key.kid.clone(),
                    use_: "sig".to_owned(),
                    alg: "EdDSA".to_owned(),
                },
                until,
            ));
        }
        Ok(KeySet {
            signing_kid: newest.kid.clone(),
            signing: EncodingKey::from_ed_der(&pkcs8),
            verifying,
            jwks: keys,
        })
    }

    /// Marks retired (erasing the private half) every key superseded for longer than an access
    /// token can live, then reloads. Returns the retired `kid`s. Run by maintenance.
    ///
    /// # Errors
    /// On store failure.
    pub async fn retire_superseded(&self, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
        let stored = self.store.signing_keys().await?;
        let mut retired = Vec::new();
        for (key, until) in Self::live_keys(&stored, self.superseded_validity) {
            if until.is_none_or(|t| t > now) {
                continue;
            }
            let event = [key_event(
                now,
                kind::SIGNING_KEY_RETIRED,
                &key.kid,
                "automatic",
            )];
            if self.store.retire_signing_key(&key.kid, now, &event).await? {
                committed(&event);
                retired.push(key.kid.clone());
            }
        }
        if !retired.is_empty() {
            self.reload().await?;
        }
        Ok(retired)
    }

    /// True once after a reload found that a key which verified before no longer does (retired
    /// elsewhere): tokens verified earlier must then be checked again. A plain load when nothing
    /// happened, so it is cheap enough to ask on every request.
    pub fn take_key_lost(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.key_lost.load(Ordering::Relaxed) && self.key_lost.swap(false, Ordering::AcqRel)
    }

    /// Re-reads the keys from the store (after a rotation elsewhere).
    ///
    /// # Errors
    /// On store failure.
    pub async fn reload(&self) -> Result<(), Error> {
        let set = Self::build(
            self.store.as_ref(),
            &self.envelope,
            self.superseded_validity,
        )
        .await?;
        let before = self.current();
        let lost_key = before
            .verifying
            .keys()
            .any(|kid| !set.verifying.contains_key(kid));
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        if lost_key {
            self.key_lost
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The public key set at `now`: the signing key and superseded keys still within their
    /// validity.
    #[must_use]
    pub fn jwks(&self, now: DateTime<Utc>) -> Jwks {
        Jwks {
            keys: self
                .current()
                .jwks
                .iter()
                .filter(|(_, until)| until.is_none_or(|t| t > now))
                .map(|(jwk, _)| jwk.clone())
                .collect(),
        }
    }

    /// Mints an access token for `user_id` in session `session_id`.
    ///
    /// # Errors
    /// Only on an internal signing failure.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        amr: &[String],
        roles: &[String],
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, Error> {
        let set = self.current();
        let iat = now.timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            aud: self.audience.clone(),
            exp: iat + ttl.num_seconds(),
            iat,
            nbf: iat,
            jti: Uuid::new_v4().to_string(),
            sid: session_id.to_string(),
            typ: ACCESS_TOKEN_TYPE.to_owned(),
            amr: amr.to_vec(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(set.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &set.signing)
            .map_err(|e| Error::Internal(anyhow::anyhow!("signing: {e}")))
    }

    /// Verifies an access token's header, signature and claims. Also returns when its signing key
    /// stops verifying (`None`: the current signing key), which bounds how long the verdict may
    /// be cached.
    ///
    /// # Errors
    /// `InvalidAccessToken` for anything but a valid, current token of ours.
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(AccessClaims, Option<DateTime<Utc>>), Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidAccessToken)?;
        let refuses_key_references = header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.x5t.is_some()
            || header.x5t_s256.is_some()
            || header.crit.is_some();
        if header.alg != Algorithm::EdDSA || refuses_key_references {
            return Err(Error::InvalidAccessToken);
        }
        let kid = header.kid.ok_or(Error::InvalidAccessToken)?;
        let mut set = self.current();
        if !set.verifying.contains_key(&kid) && self.may_reload() {
            // Another instance may have rotated keys; look once, at a bounded rate. A failed
            // reload leaves the token unverifiable, which is a 401, not a server error.
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "reloading signing keys failed");
            }
            set = self.current();
        }
        let (key, key_until) = match set.verifying.get(&kid) {
            Some((key, until)) if until.is_none_or(|t| t > now) => (key, *until),
            _ => return Err(Error::InvalidAccessToken),
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false; // checked below against the injected clock
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "aud", "iss"]);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| Error::InvalidAccessToken)?;
        let claims = data.claims;
        let t = now.timestamp();
        if claims.typ != ACCESS_TOKEN_TYPE
            || claims.exp + LEEWAY_SECS <= t
            || claims.nbf - LEEWAY_SECS > t
        {
            return Err(Error::InvalidAccessToken);
        }
        Ok((claims, key_until))
    }

    /// Claims the right to reload now: true at most once per [`RELOAD_INTERVAL`], however many
    /// requests with unknown `kid`s arrive at once.
    fn may_reload(&self) -> bool {
        let mut last = self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < RELOAD_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }
}
