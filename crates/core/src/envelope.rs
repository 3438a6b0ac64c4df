//! Envelope encryption of secrets at rest (seed 001, "secure storage").
//!
//! ```text
//! master key (file or MASTER_KEY, never in the database)
//!   └─ seals ─▶ key-encryption key, RSA-3072 (OAEP, SHA-256), one row per version
//!                 └─ wraps ─▶ data keys, AES-256-GCM: the deployment's own + one per account
//!                               └─ encrypt ─▶ signing keys, TOTP secrets, queued mail,
//!                                             webhook secrets, messages
//! ```
//!
//! The seed asks for AES to encrypt and RSA to protect the AES keys; it names CBC, but CBC has
//! no integrity (a modified ciphertext decrypts to modified data, and padding errors become an
//! oracle), so every layer here is an AEAD: AES-256-GCM, whose tag rejects any change.
//!
//! Every ciphertext is `PE1 ‖ data-key id (16) ‖ nonce (12) ‖ ciphertext ‖ tag (16)` and binds,
//! as associated data, the table, column and row it belongs to, its owner and the data-key id:
//! a value copied to another row or account fails to decrypt rather than yielding someone
//! else's secret. A data key's RSA wrapping binds its id and owner the same way (the OAEP label).
//!
//! Rotating the key-encryption key (`porteiro keys rotate-kek`) adds a version that wraps new
//! data keys at once; [`Envelope::rewrap_batch`] re-wraps the existing ones in batches while the
//! server runs and retires a version once nothing refers to it (its private half is erased).
//! Data keys themselves never change, so no data is re-encrypted by a rotation.
//!
//! Deleting an account destroys its data key and records the key's id (crypto-shredding): what
//! was encrypted for the account cannot be read any more, and a restore applies the record.
//!
//! Values sealed directly under the master key (before this hierarchy) still open, and
//! [`Envelope::reseal_legacy_batch`] moves them onto data keys online.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{AeadKey, MasterKey, framed};
use crate::domain::audit::{Outcome, kind};
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::store::{EnvelopeStore, SealedColumn, StoredDataKey, StoredKek};

/// The algorithm of every key-encryption key.
pub const KEK_ALGORITHM: &str = "RSA-3072-OAEP-SHA256";
/// How every envelope ciphertext begins (format version 1).
pub const MAGIC: &[u8; 3] = b"PE1";
const HEADER_LEN: usize = MAGIC.len() + 16;
/// The id of the deployment's own data key (there is exactly one).
pub const DEPLOYMENT_KEY_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);
/// How long an unwrapped account data key stays in memory unused.
const KEY_IDLE: Duration = Duration::from_secs(600);
/// Most account data keys held unwrapped in memory.
const KEY_CACHE: u64 = 10_000;

/// Whose data key encrypts a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// The deployment's own key: signing keys, queued mail, webhook secrets.
    Deployment,
    /// An account's key, destroyed with the account.
    User(Uuid),
}

impl KeyOwner {
    /// The owning account, if any.
    #[must_use]
    pub const fn user_id(self) -> Option<Uuid> {
        match self {
            Self::Deployment => None,
            Self::User(id) => Some(id),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Deployment => "deployment".to_owned(),
            Self::User(id) => id.to_string(),
        }
    }
}

/// Where a ciphertext lives: bound to it as associated data.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    /// Table.
    pub table: &'static str,
    /// Column.
    pub column: &'static str,
    /// The row's key, as text.
    pub record: &'a str,
    /// Whose data key encrypts it.
    pub owner: KeyOwner,
}

impl Aad<'_> {
    fn bytes(&self, key_id: Uuid) -> Vec<u8> {
        framed(&[
            b"porteiro-envelope-v1",
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.record.as_bytes(),
            self.owner.label().as_bytes(),
            key_id.as_bytes(),
        ])
    }
}

/// The associated data of a [`SealedColumn`]'s value on row `key`.
#[must_use]
pub fn column_aad(column: SealedColumn, key: &str) -> Aad<'_> {
    let (table, _, name) = column.names();
    // A rotation moves an endpoint's secret to `previous_secret_enc` as it is: both slots are
    // bound to the endpoint's secret, not to the slot.
    let name = match column {
        SealedColumn::WebhookPreviousSecret => SealedColumn::WebhookSecret.names().2,
        _ => name,
    };
    let owner = match column {
        // A key that is not a UUID names no account: such a value cannot be opened.
        SealedColumn::TotpSecret => KeyOwner::User(Uuid::parse_str(key).unwrap_or_default()),
        _ => KeyOwner::Deployment,
    };
    Aad {
        table,
        column: name,
        record: key,
        owner,
    }
}

/// The context a [`SealedColumn`]'s value was sealed with under the master key, before data
/// keys existed.
fn legacy_context(column: SealedColumn, key: &str) -> Vec<u8> {
    match column {
        SealedColumn::SigningKey => key.as_bytes().to_vec(),
        SealedColumn::TotpSecret => format!("totp-secret:{key}").into_bytes(),
        SealedColumn::QueuedMail => b"porteiro-outbox-v1".to_vec(),
        SealedColumn::WebhookSecret | SealedColumn::WebhookPreviousSecret => {
            format!("porteiro-webhook-secret-v1:{key}").into_bytes()
        }
    }
}

/// The OAEP label of a data key's wrapping.
fn wrap_label(id: Uuid, owner: KeyOwner) -> Vec<u8> {
    framed(&[
        b"porteiro-data-key-v1",
        id.as_bytes(),
        owner.label().as_bytes(),
    ])
}

fn kek_context(version: i32) -> Vec<u8> {
    framed(&[b"porteiro-kek-v1", version.to_string().as_bytes()])
}

/// One key-encryption key version, loaded.
struct Kek {
    version: i32,
    /// Derived from the private half (never taken from the stored public key on trust).
    public: OaepPublicEncryptingKey,
    private: OaepPrivateDecryptingKey,
}

impl Kek {
    fn wrap(&self, id: Uuid, owner: KeyOwner, key: &AeadKey) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; self.public.ciphertext_size()];
        let len = self
            .public
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                key.expose(),
                &mut out,
                Some(&wrap_label(id, owner)),
            )
            .map_err(|_| anyhow::anyhow!("RSA-OAEP wrapping failed"))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    fn unwrap(&self, stored: &StoredDataKey) -> Option<AeadKey> {
        let private = &self.private;
        let owner = stored.owner_id.map_or(KeyOwner::Deployment, KeyOwner::User);
        let mut out = Zeroizing::new(vec![0u8; private.min_output_size()]);
        let plain = private
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                &stored.wrapped_key,
                &mut out,
                Some(&wrap_label(stored.id, owner)),
            )
            .ok()?;
        AeadKey::from_bytes(plain).ok()
    }
}

/// A data key, unwrapped.
struct DataKey {
    id: Uuid,
    key: AeadKey,
}

/// What one [`Envelope::rewrap_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewrapReport {
    /// Data keys now wrapped by the newest version.
    pub rewrapped: usize,
    /// Data keys whose wrapping could not be opened (logged): they stay as they are.
    pub failed: usize,
    /// Data keys still wrapped by an older version.
    pub remaining: u64,
    /// Versions retired by this batch.
    pub retired: Vec<i32>,
}

/// One key-encryption key version as `porteiro keys status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekStatus {
    /// Version.
    pub version: i32,
    /// Algorithm.
    pub algorithm: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// Data keys it wraps.
    pub data_keys: u64,
    /// Whether it wraps new data keys.
    pub current: bool,
}

/// The key hierarchy: seals and opens values with data keys.
pub struct Envelope {
    master: Arc<MasterKey>,
    store: Arc<dyn EnvelopeStore>,
    deployment: Arc<DataKey>,
    keks: RwLock<HashMap<i32, Arc<Kek>>>,
    /// Account data keys by account.
    keys: moka::future::Cache<Uuid, Arc<DataKey>>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope(..)")
    }
}

impl Envelope {
    /// Opens the hierarchy over `store`, making the first key-encryption key and the
    /// deployment's data key on first use.
    ///
    /// # Errors
    /// On store failure, or when this master key does not open the stored keys.
    pub async fn load(
        master: Arc<MasterKey>,
        store: Arc<dyn EnvelopeStore>,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        if store.key_encryption_keys().await?.is_empty() {
            Self::add_kek(&master, store.as_ref(), 1, now, "first_start").await?;
        }
        let mut envelope = Self {
            master,
            store,
            deployment: Arc::new(DataKey {
                id: DEPLOYMENT_KEY_ID,
                key: AeadKey::generate(),
            }),
            keks: RwLock::new(HashMap::new()),
            keys: moka::future::Cache::builder()
                .max_capacity(KEY_CACHE)
                .time_to_idle(KEY_IDLE)
                .build(),
        };
        envelope.deployment = envelope.load_or_create(KeyOwner::Deployment, now).await?;
        Ok(envelope)
    }

    /// Generates an RSA-3072 key off the async runtime, seals its private half under the
    /// master key and stores it as `version`. Returns false when that version exists already.
    async fn add_kek(
        master: &MasterKey,
        store: &dyn EnvelopeStore,
        version: i32,
        now: DateTime<Utc>,
        via: &'static str,
    ) -> Result<bool, Error> {
        let (public, pkcs8) = tokio::task::spawn_blocking(|| {
            let private = PrivateDecryptingKey::generate(KeySize::Rsa3072)
                .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
            let pkcs8 = Zeroizing::new(
                AsDer::<Pkcs8V1Der<'_>>::as_der(&private)
                    .map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?
                    .as_ref()
                    .to_vec(),
            );
            let public = AsDer::<PublicKeyX509Der<'_>>::as_der(&private.public_key())
                .map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?
                .as_ref()
                .to_vec();
            Ok::<_, anyhow::Error>((public, pkcs8))
        })
        .await
        .map_err(|e| anyhow::anyhow!("RSA key generation task: {e}"))??;
        let event = [new_event(
            now,
            kind::KEY_ENCRYPTION_KEY_ROTATED,
            Outcome::Success,
            None,
            None,
            serde_json::json!({"version": version, "algorithm": KEK_ALGORITHM, "via": via}),
        )];
        let stored = StoredKek {
            version,
            algorithm: KEK_ALGORITHM.to_owned(),
            public_key: public,
            private_key_enc: Some(master.seal(&kek_context(version), &pkcs8)),
            created_at: crate::clock::to_millis_precision(now),
            retired_at: None,
        };
        let added = store.insert_key_encryption_key(&stored, &event).await?;
        if added {
            committed(&event);
        }
        Ok(added)
    }

    /// Loads a version from its sealed private half. The public half is derived from it and
    /// must equal the stored one: a row written by someone without the master key (a forged
    /// public key, a missing or copied private half) is refused, so no data key is ever wrapped
    /// for a key only an intruder holds.
    fn build_kek(&self, stored: &StoredKek) -> Result<Kek, Error> {
        let version = stored.version;
        let sealed = stored
            .private_key_enc
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("key-encryption key v{version} has no private half"))?;
        let pkcs8 = Zeroizing::new(self.master.open(&kek_context(version), sealed).map_err(
            |_| anyhow::anyhow!("key-encryption key v{version} does not open with this master key"),
        )?);
        let private = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("key-encryption key v{version}: bad key"))?;
        let public_der = AsDer::<PublicKeyX509Der<'_>>::as_der(&private.public_key())
            .map_err(|_| anyhow::anyhow!("key-encryption key v{version}: bad key"))?;
        if !crate::crypto::ct_eq(public_der.as_ref(), &stored.public_key) {
            return Err(anyhow::anyhow!(
                "key-encryption key v{version}: the stored public key is not its private key's"
            )
            .into());
        }
        let public = OaepPublicEncryptingKey::new(private.public_key())
            .map_err(|_| anyhow::anyhow!("key-encryption key v{version}: bad key"))?;
        let private = OaepPrivateDecryptingKey::new(private)
            .map_err(|_| anyhow::anyhow!("key-encryption key v{version}: bad key"))?;
        Ok(Kek {
            version,
            public,
            private,
        })
    }

    fn remember(&self, kek: Kek) -> Arc<Kek> {
        let kek = Arc::new(kek);
        self.keks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kek.version, kek.clone());
        kek
    }

    /// Version `version`, from memory or the store, to unwrap with.
    ///
    /// # Errors
    /// `DataUnreadable` when that version is unknown, retired or fails its checks (logged).
    async fn kek_version(&self, version: i32) -> Result<Arc<Kek>, Error> {
        if let Some(k) = self.cached_kek(version) {
            return Ok(k);
        }
        let stored = self.store.key_encryption_keys().await?;
        let Some(wanted) = stored.iter().find(|k| k.version == version) else {
            tracing::warn!(version, "no such key-encryption key version");
            return Err(Error::DataUnreadable);
        };
        match self.build_kek(wanted) {
            Ok(k) => Ok(self.remember(k)),
            Err(e) => {
                tracing::warn!(version, error = %e, "a key-encryption key version is unusable");
                Err(Error::DataUnreadable)
            }
        }
    }

    /// The newest version that passes its checks: what wraps new data keys. A newer row that
    /// fails them (not made with this master key) is logged and ignored.
    ///
    /// # Errors
    /// On store failure, or when no version is usable.
    async fn newest_kek(&self) -> Result<Arc<Kek>, Error> {
        for stored in self.store.key_encryption_keys().await? {
            if stored.retired_at.is_some() {
                continue;
            }
            if let Some(k) = self.cached_kek(stored.version) {
                return Ok(k);
            }
            match self.build_kek(&stored) {
                Ok(k) => return Ok(self.remember(k)),
                Err(e) => tracing::error!(version = stored.version, error = %e,
                    "a key-encryption key version fails its checks and is ignored: \
                     was it written by someone without the master key?"),
            }
        }
        Err(anyhow::anyhow!(
            "no usable key-encryption key (is MASTER_KEY the one the keys were made with?)"
        )
        .into())
    }

    fn cached_kek(&self, version: i32) -> Option<Arc<Kek>> {
        self.keks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&version)
            .cloned()
    }

    fn unwrap_stored(&self, kek: &Kek, stored: &StoredDataKey) -> Result<Arc<DataKey>, Error> {
        let key = kek.unwrap(stored).ok_or_else(|| {
            tracing::warn!(data_key = %stored.id, kek_version = stored.kek_version,
                "a data key could not be unwrapped");
            Error::DataUnreadable
        })?;
        Ok(Arc::new(DataKey { id: stored.id, key }))
    }

    async fn load_key(&self, owner: KeyOwner) -> Result<Option<Arc<DataKey>>, Error> {
        let Some(stored) = self.store.data_key_of(owner.user_id()).await? else {
            return Ok(None);
        };
        let kek = self.kek_version(stored.kek_version).await?;
        self.unwrap_stored(&kek, &stored).map(Some)
    }

    /// The owner's data key, made (wrapped by the newest version) if it has none.
    async fn load_or_create(
        &self,
        owner: KeyOwner,
        now: DateTime<Utc>,
    ) -> Result<Arc<DataKey>, Error> {
        // A second try covers a version retired between reading it and storing the key.
        for _ in 0..3 {
            if let Some(key) = self.load_key(owner).await? {
                return Ok(key);
            }
            let kek = self.newest_kek().await?;
            let id = match owner {
                KeyOwner::Deployment => DEPLOYMENT_KEY_ID,
                KeyOwner::User(_) => Uuid::new_v4(),
            };
            let key = AeadKey::generate();
            let stored = StoredDataKey {
                id,
                owner_id: owner.user_id(),
                kek_version: kek.version,
                wrapped_key: kek.wrap(id, owner, &key)?,
            };
            if self.store.insert_data_key(&stored, now).await? {
                return Ok(Arc::new(DataKey { id, key }));
            }
            // Another request (or instance) made one first — use theirs — or the version was
            // retired meanwhile: try again.
        }
        Err(anyhow::anyhow!("a data key could not be stored").into())
    }

    async fn key_of(&self, owner: KeyOwner, create: bool) -> Result<Arc<DataKey>, Error> {
        let KeyOwner::User(user) = owner else {
            return Ok(self.deployment.clone());
        };
        if let Some(key) = self.keys.get(&user).await {
            return Ok(key);
        }
        let key = if create {
            self.load_or_create(owner, chrono::Utc::now()).await?
        } else {
            self.load_key(owner).await?.ok_or(Error::DataUnreadable)?
        };
        self.keys.insert(user, key.clone()).await;
        Ok(key)
    }

    fn encode(key: &DataKey, aad: &Aad<'_>, plaintext: &[u8]) -> Vec<u8> {
        let body = key.key.seal(&aad.bytes(key.id), plaintext);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(key: &DataKey, aad: &Aad<'_>, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < HEADER_LEN || !sealed.starts_with(MAGIC) {
            return None;
        }
        let id = Uuid::from_slice(&sealed[MAGIC.len()..HEADER_LEN]).ok()?;
        if id != key.id {
            return None;
        }
        key.key.open(&aad.bytes(id), &sealed[HEADER_LEN..]).ok()
    }

    fn unreadable(aad: &Aad<'_>) -> Error {
        tracing::warn!(
            table = aad.table,
            column = aad.column,
            record = aad.record,
            "an encrypted value could not be decrypted (tampered, moved, or its key destroyed)"
        );
        Error::DataUnreadable
    }

    /// Encrypts `plaintext` for `aad` with its owner's data key (made on first use).
    ///
    /// # Errors
    /// On store failure.
    pub async fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self.key_of(aad.owner, true).await?;
        Ok(Self::encode(&key, aad, plaintext))
    }

    /// Decrypts what [`Envelope::seal`] made for the same `aad`.
    ///
    /// # Errors
    /// `DataUnreadable` (logged at warn with the record) when the value was altered, belongs to
    /// another row or owner, or its data key is destroyed.
    pub async fn open(&self, aad: &Aad<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let key = match self.key_of(aad.owner, false).await {
            Ok(key) => key,
            Err(Error::DataUnreadable) => return Err(Self::unreadable(aad)),
            Err(e) => return Err(e),
        };
        Self::decode(&key, aad, sealed).ok_or_else(|| Self::unreadable(aad))
    }

    /// [`Envelope::seal`] with the deployment's key, without waiting: `aad.owner` must be
    /// [`KeyOwner::Deployment`].
    #[must_use]
    pub fn seal_deployment(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Vec<u8> {
        debug_assert_eq!(aad.owner, KeyOwner::Deployment);
        Self::encode(&self.deployment, aad, plaintext)
    }

    /// Encrypts a [`SealedColumn`]'s value for row `key`.
    ///
    /// # Errors
    /// On store failure (an account's first data key is stored).
    pub async fn seal_column(
        &self,
        column: SealedColumn,
        key: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.seal(&column_aad(column, key), plaintext).await
    }

    /// Decrypts a [`SealedColumn`]'s value of row `key`, also when it was sealed the old way
    /// (directly under the master key).
    ///
    /// # Errors
    /// `DataUnreadable`, as [`Envelope::open`].
    pub async fn open_column(
        &self,
        column: SealedColumn,
        key: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.open_legacy(column, key, sealed) {
            Some(plain) => Ok(plain),
            None => self.open(&column_aad(column, key), sealed).await,
        }
    }

    /// [`Envelope::seal_column`] for a column the deployment's key encrypts, without waiting.
    #[must_use]
    pub fn seal_deployment_column(
        &self,
        column: SealedColumn,
        key: &str,
        plaintext: &[u8],
    ) -> Vec<u8> {
        self.seal_deployment(&column_aad(column, key), plaintext)
    }

    /// [`Envelope::open_column`] for a column the deployment's key encrypts, without waiting.
    ///
    /// # Errors
    /// `DataUnreadable`, as [`Envelope::open`].
    pub fn open_deployment_column(
        &self,
        column: SealedColumn,
        key: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let aad = column_aad(column, key);
        debug_assert_eq!(aad.owner, KeyOwner::Deployment);
        self.open_legacy(column, key, sealed)
            .or_else(|| Self::decode(&self.deployment, &aad, sealed))
            .ok_or_else(|| Self::unreadable(&aad))
    }

    /// A value sealed under the master key before data keys existed (it lacks the header).
    fn open_legacy(
        &self,
        column: SealedColumn,
        key: &str,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.starts_with(MAGIC) {
            return None;
        }
        self.master
            .open(&legacy_context(column, key), sealed)
            .ok()
            .map(Zeroizing::new)
    }

    /// Forgets an account's data key held in memory (the account was deleted).
    pub async fn forget(&self, user_id: Uuid) {
        self.keys.invalidate(&user_id).await;
    }

    /// Adds a key-encryption key version that wraps every data key made from now on, here and
    /// on every instance (they read the newest version when they make a key). Existing data
    /// keys are re-wrapped by [`Envelope::rewrap_batch`]. Returns the new version.
    ///
    /// # Errors
    /// On store failure.
    pub async fn rotate_kek(&self, now: DateTime<Utc>, via: &'static str) -> Result<i32, Error> {
        loop {
            let newest = self
                .store
                .key_encryption_keys()
                .await?
                .first()
                .map_or(0, |k| k.version);
            let version = newest + 1;
            if Self::add_kek(&self.master, self.store.as_ref(), version, now, via).await? {
                tracing::info!(version, "new key-encryption key version");
                return Ok(version);
            }
        }
    }

    /// Re-wraps up to `limit` data keys still wrapped by an older version with the newest one,
    /// then retires the older versions nothing refers to any more. Safe to run on several
    /// instances at once (each re-wrap only applies if the key is still as it was read).
    ///
    /// # Errors
    /// On store failure.
    pub async fn rewrap_batch(
        &self,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<RewrapReport, Error> {
        let newest = self.newest_kek().await?;
        let mut report = RewrapReport::default();
        let batch = self
            .store
            .data_keys_to_rewrap(newest.version, limit)
            .await?;
        let busy = !batch.is_empty();
        for stored in batch {
            let owner = stored.owner_id.map_or(KeyOwner::Deployment, KeyOwner::User);
            let Some(key) = self
                .kek_version(stored.kek_version)
                .await
                .ok()
                .and_then(|old| old.unwrap(&stored))
            else {
                tracing::warn!(data_key = %stored.id, kek_version = stored.kek_version,
                    "a data key could not be unwrapped for re-wrapping");
                report.failed += 1;
                continue;
            };
            let wrapped = newest.wrap(stored.id, owner, &key)?;
            if self
                .store
                .rewrap_data_key(stored.id, stored.kek_version, newest.version, &wrapped, now)
                .await?
            {
                report.rewrapped += 1;
            }
        }
        if busy {
            // Counting is a scan of the data keys: only while a re-wrap is under way.
            report.remaining = self
                .store
                .data_key_counts()
                .await?
                .iter()
                .filter(|(v, _)| *v != newest.version)
                .map(|(_, n)| n)
                .sum();
        }
        for kek in self.store.key_encryption_keys().await? {
            if kek.version == newest.version || kek.retired_at.is_some() {
                continue;
            }
            // The store retires it only if no data key refers to it any more.
            let event = [new_event(
                now,
                kind::KEY_ENCRYPTION_KEY_RETIRED,
                Outcome::Success,
                None,
                None,
                serde_json::json!({"version": kek.version}),
            )];
            if self
                .store
                .retire_key_encryption_key(kek.version, now, &event)
                .await?
            {
                committed(&event);
                self.keks
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&kek.version);
                tracing::info!(version = kek.version, "key-encryption key version retired");
                report.retired.push(kek.version);
            }
        }
        Ok(report)
    }

    /// Re-wraps every data key left on an older version, batch after batch, logging progress;
    /// then retires the versions nothing refers to. What the server runs in the background
    /// after `porteiro keys rotate-kek`, and `porteiro keys rewrap` in the foreground.
    ///
    /// # Errors
    /// On store failure (what was re-wrapped stays re-wrapped: the next run resumes).
    pub async fn rewrap_all(&self, batch: u32) -> Result<RewrapReport, Error> {
        let mut total = RewrapReport::default();
        loop {
            let report = self.rewrap_batch(batch, chrono::Utc::now()).await?;
            total.rewrapped += report.rewrapped;
            total.failed += report.failed;
            total.retired.extend(report.retired);
            total.remaining = report.remaining;
            if report.rewrapped > 0 {
                tracing::info!(
                    rewrapped = total.rewrapped,
                    remaining = report.remaining,
                    "re-wrapping data keys with the newest key-encryption key"
                );
            }
            if report.rewrapped == 0 || report.remaining == 0 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Moves every value still sealed the old way onto data keys, batch after batch.
    ///
    /// # Errors
    /// On store failure (what moved stays moved: the next run resumes).
    pub async fn reseal_legacy_all(&self, batch: u32) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let moved = self.reseal_legacy_batch(batch).await?;
            total += moved;
            if moved == 0 {
                if total > 0 {
                    tracing::info!(
                        moved = total,
                        "values sealed under the master key moved onto data keys"
                    );
                }
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Moves up to `limit` values per column that are still sealed the old way (directly under
    /// the master key) onto data keys. Returns how many moved.
    ///
    /// # Errors
    /// On store failure.
    pub async fn reseal_legacy_batch(&self, limit: u32) -> Result<usize, Error> {
        let mut moved = 0;
        for column in SealedColumn::ALL {
            let values = self
                .store
                .legacy_sealed_values(column, MAGIC, None, limit)
                .await?;
            for value in values {
                let Some(plain) = self.open_legacy(column, &value.key, &value.value) else {
                    tracing::warn!(table = column.names().0, record = %value.key,
                        "a value sealed under the master key does not open; left as is");
                    continue;
                };
                let new = self.seal_column(column, &value.key, &plain).await?;
                if self
                    .store
                    .replace_sealed_value(column, &value.key, &value.value, &new)
                    .await?
                {
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Every key-encryption key version and how many data keys it wraps, newest first, and
    /// how many data keys were destroyed.
    ///
    /// # Errors
    /// On store failure.
    pub async fn status(store: &dyn EnvelopeStore) -> Result<(Vec<KekStatus>, u64), Error> {
        let counts = store.data_key_counts().await?;
        let keks = store.key_encryption_keys().await?;
        let newest = keks.first().map(|k| k.version);
        let status = keks
            .into_iter()
            .map(|k| KekStatus {
                data_keys: counts
                    .iter()
                    .find(|(v, _)| *v == k.version)
                    .map_or(0, |(_, n)| *n),
                current: Some(k.version) == newest,
                version: k.version,
                algorithm: k.algorithm,
                created_at: k.created_at,
                retired_at: k.retired_at,
            })
            .collect();
        Ok((status, store.destroyed_data_key_count().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_separates_rows_columns_and_owners() {
        let key = Uuid::new_v4();
        let user = KeyOwner::User(Uuid::new_v4());
        let a = Aad {
            table: "messages",
            column: "content",
            record: "1",
            owner: user,
        };
        let variants = [
            Aad { record: "2", ..a },
            Aad {
                column: "sender_key",
                ..a
            },
            Aad {
                table: "other",
                ..a
            },
            Aad {
                owner: KeyOwner::User(Uuid::new_v4()),
                ..a
            },
            Aad {
                owner: KeyOwner::Deployment,
                ..a
            },
        ];
        for v in variants {
            assert_ne!(a.bytes(key), v.bytes(key));
        }
        assert_ne!(a.bytes(key), a.bytes(Uuid::new_v4()));
    }

    #[test]
    fn a_wrapped_data_key_opens_only_with_its_id_and_owner() {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa3072).expect("keygen");
        let public = OaepPublicEncryptingKey::new(private.public_key()).expect("public");
        let kek = Kek {
            version: 1,
            public,
            private: OaepPrivateDecryptingKey::new(private).expect("private"),
        };
        let key = AeadKey::generate();
        let id = Uuid::new_v4();
        let owner = Uuid::new_v4();
        let wrapped = kek.wrap(id, KeyOwner::User(owner), &key).expect("wraps");
        let stored = StoredDataKey {
            id,
            owner_id: Some(owner),
            kek_version: 1,
            wrapped_key: wrapped,
        };
        assert_eq!(kek.unwrap(&stored).expect("unwraps").expose(), key.expose());
        assert!(
            kek.unwrap(&StoredDataKey {
                owner_id: Some(Uuid::new_v4()),
                ..stored.clone()
            })
            .is_none()
        );
        assert!(
            kek.unwrap(&StoredDataKey {
                id: Uuid::new_v4(),
                ..stored.clone()
            })
            .is_none()
        );
        assert!(
            kek.unwrap(&StoredDataKey {
                owner_id: None,
                ..stored
            })
            .is_none()
        );
    }
}
