//! The bundled list of breached passwords, as a Bloom filter (`data/breached-passwords.bloom`,
//! made by `scripts/breached-passwords.py`; source, version and licence in `data/README.md`).
//!
//! About 200,000 entries in 700 KB with a false-positive rate of one in a million: a password
//! that is not in the list is refused as `common` with that probability, and one that is in the
//! list is always refused. The filter is compiled into the binary's read-only data and used in
//! place: nothing is decompressed or parsed into memory, and its pages are only read in from the
//! binary as lookups touch them. The header is read once, at the first lookup.
//!
//! The layout and the hashing must stay in step with the script, which documents the format.

use std::sync::LazyLock;

use aws_lc_rs::digest;

static BYTES: &[u8] = include_bytes!("../../../data/breached-passwords.bloom");

/// Prefix of every hashed entry, so the filter's bits mean nothing outside this use.
const DOMAIN: &[u8] = b"porteiro-breached-v1\0";
const HEADER_LEN: usize = 24;

struct Filter {
    /// Hash functions per entry.
    k: u32,
    /// Bits in the filter.
    m: u64,
    bits: &'static [u8],
}

static FILTER: LazyLock<Filter> = LazyLock::new(|| {
    parse(BYTES)
        .expect("the bundled breached-password filter is well formed (checked by a unit test)")
});

fn parse(bytes: &'static [u8]) -> Option<Filter> {
    let (header, bits) = bytes.split_at_checked(HEADER_LEN)?;
    if &header[..4] != b"PBF1" {
        return None;
    }
    let k = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let m = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if k == 0 || m == 0 || m % 64 != 0 || u64::try_from(bits.len()).ok()? * 8 != m {
        return None;
    }
    Some(Filter { k, m, bits })
}

/// Entries in the bundled list (from the filter's header).
#[must_use]
pub fn entries() -> u64 {
    BYTES
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Whether `folded` (a lower-cased password) is in the list, or is one of its rare false
/// positives.
#[must_use]
pub fn contains(folded: &str) -> bool {
    let filter = &*FILTER;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(folded.as_bytes());
    let d = ctx.finish();
    let d = d.as_ref();
    let h1 = u64::from_le_bytes(d[..8].try_into().expect("SHA-256 has 32 bytes"));
    let h2 = u64::from_le_bytes(d[8..16].try_into().expect("SHA-256 has 32 bytes")) | 1;
    (0..u64::from(filter.k)).all(|j| {
        let bit = h1.wrapping_add(j.wrapping_mul(h2)) % filter.m;
        // `bit < m = 8 × bits.len()`, so the byte index fits.
        let byte = filter.bits[usize::try_from(bit / 8).expect("index below the slice length")];
        byte & (1 << (bit % 8)) != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_filter_is_well_formed_and_large_enough() {
        assert!(parse(BYTES).is_some());
        assert!(entries() >= 100_000, "{} entries", entries());
    }

    #[test]
    fn listed_passwords_are_found() {
        for listed in [
            "passw0rd",
            "welcome123",
            "qwerty123",
            "iloveyou1",
            "senha123",
        ] {
            assert!(contains(listed), "{listed}");
        }
    }

    #[test]
    fn random_passwords_are_not_found() {
        // 1,000 strings the list cannot hold: at a false-positive rate of 10⁻⁶ one hit here
        // would be a broken filter or hash, not bad luck.
        let hits = (0..1000)
            .filter(|i| contains(&format!("zq{i}-not-a-breached-password-{}", i * 7919)))
            .count();
        assert_eq!(hits, 0);
    }
}
