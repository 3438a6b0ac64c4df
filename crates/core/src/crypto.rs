//! Small, well-reviewed primitives from aws-lc-rs: CSPRNG, SHA-256, AES-256-GCM, constant-time
//! comparison. Nothing here is hand-rolled cryptography; it only gives the rest of the crate one
//! place to get randomness and sealing from.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills a buffer from the operating system's CSPRNG (`getrandom(2)`).
///
/// The OS generator, rather than aws-lc's user-space DRBG: the latter seeds itself per thread
/// from CPU jitter, which cost about 90 ms of every start-up and a pause on each thread's first
/// token.
///
/// # Panics
/// Only if the OS randomness source fails, in which case no secret can be made safely.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("invariant: the OS CSPRNG is available");
    buf
}

/// `N` random bytes, base64url without padding.
#[must_use]
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// SHA-256 of a token, hex-encoded: how tokens and codes are stored and looked up.
///
/// Tokens carry ≥ 144 bits of entropy, so a fast hash suffices; only a slow hash protects
/// low-entropy secrets such as passwords.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Lower-case hex of `bytes` (how hashes and MACs are stored).
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Constant-time equality of two byte strings.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A 256-bit key that seals data at rest with AES-256-GCM, and from which an HMAC-SHA256 key is
/// derived (HKDF) for tokens the server signs, such as CSRF tokens.
pub struct MasterKey {
    aead: LessSafeKey,
    mac: hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Sealing or opening failed (wrong key, or tampered data).
#[derive(Debug, thiserror::Error)]
#[error("sealed data could not be opened: wrong master key or corrupted data")]
pub struct SealError;

impl MasterKey {
    /// Wraps 32 key bytes.
    ///
    /// # Errors
    /// When the slice is not 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError)?;
        let mac: hmac::Key = hkdf::Salt::new(hkdf::HKDF_SHA256, b"porteiro")
            .extract(bytes)
            .expand(&[b"hmac-sha256 v1"], hmac::HMAC_SHA256)
            .map_err(|_| SealError)?
            .into();
        Ok(Self {
            aead: LessSafeKey::new(key),
            mac,
        })
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed, so part boundaries are unambiguous).
    #[must_use]
    pub fn sign(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.mac);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.sign()
    }

    /// Checks a tag made by [`MasterKey::sign`], possibly truncated to its first bytes (at least
    /// 16), in constant time.
    #[must_use]
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let full = self.sign(parts);
        tag.len() >= 16
            && tag.len() <= full.as_ref().len()
            && ct_eq(&full.as_ref()[..tag.len()], tag)
    }

    /// Encrypts `plaintext`, binding it to `context` (associated data). Output: nonce ‖ ciphertext ‖ tag.
    #[must_use]
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context),
                &mut out,
            )
            .expect("invariant: AES-GCM sealing of an in-memory buffer cannot fail");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&out);
        sealed
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `context`.
    ///
    /// # Errors
    /// When the key or context differ, or the data was altered.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
        let mut buf = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| SealError)?;
        Ok(plain.to_vec())
    }
}

/// A 256-bit AES-GCM key of its own (a data key, or the one-time key of a message), with
/// random 96-bit nonces. Output of [`AeadKey::seal`]: nonce ‖ ciphertext ‖ tag.
pub struct AeadKey {
    key: LessSafeKey,
    bytes: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

impl AeadKey {
    /// A fresh key from the CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        let bytes = zeroize::Zeroizing::new(random_bytes::<32>());
        Self::from_array(bytes)
    }

    /// Wraps 32 key bytes.
    ///
    /// # Errors
    /// When the slice is not 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| SealError)?;
        Ok(Self::from_array(zeroize::Zeroizing::new(array)))
    }

    fn from_array(bytes: zeroize::Zeroizing<[u8; 32]>) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
            .expect("invariant: 32 bytes make an AES-256 key");
        Self {
            key: LessSafeKey::new(key),
            bytes,
        }
    }

    /// The raw key, to be wrapped (never stored or logged as is).
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Encrypts `plaintext` bound to `aad`.
    #[must_use]
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .expect("invariant: AES-GCM sealing of an in-memory buffer cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypts what [`AeadKey::seal`] produced with the same `aad`.
    ///
    /// # Errors
    /// When the key or `aad` differ, or the data was altered or truncated.
    pub fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
        let mut buf = zeroize::Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| SealError)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Associated data made of `parts`, each length-prefixed so that boundaries are unambiguous.
#[must_use]
pub fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_context() {
        let key = MasterKey::from_bytes(&random_bytes::<32>()).expect("32 bytes");
        let sealed = key.seal(b"kid-1", b"secret");
        assert_eq!(key.open(b"kid-1", &sealed).expect("opens"), b"secret");
        assert!(key.open(b"kid-2", &sealed).is_err());
        let other = MasterKey::from_bytes(&random_bytes::<32>()).expect("32 bytes");
        assert!(other.open(b"kid-1", &sealed).is_err());
    }

    #[test]
    fn aead_keys_bind_their_associated_data_and_detect_tampering() {
        let key = AeadKey::generate();
        let sealed = key.seal(b"ctx", b"message");
        assert_eq!(
            key.open(b"ctx", &sealed).expect("opens").as_slice(),
            b"message"
        );
        assert!(key.open(b"other", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key.open(b"ctx", &bad).is_err(), "byte {i} flipped");
        }
        assert!(key.open(b"ctx", &sealed[..sealed.len() - 1]).is_err());
        let again = AeadKey::from_bytes(key.expose()).expect("32 bytes");
        assert_eq!(
            again.open(b"ctx", &sealed).expect("opens").as_slice(),
            b"message"
        );
        assert!(AeadKey::generate().open(b"ctx", &sealed).is_err());
        assert_ne!(framed(&[b"ab", b"c"]), framed(&[b"a", b"bc"]));
    }

    #[test]
    fn tokens_are_random_and_hash_deterministically() {
        let a = random_token::<32>();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token::<32>());
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash("abc").len(), 64);
    }
}
