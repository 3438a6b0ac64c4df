#!/usr/bin/env python3
"""JWT interop check: an independent client (PyJWT) against a live Porteiro server.

Usage: jwt_interop.py BASE_URL        e.g. http://127.0.0.1:8080

The Rust tests sign and verify with the same library, so they cannot catch a token that only
our own code accepts. Here a third-party verifier must accept our access tokens using nothing
but the published JWKS, and the server must refuse the classic forgeries (alg "none", and
HS256 keyed with the public key, the algorithm-confusion attack).

Prints one PASS/FAIL line per check; exits 1 on any failure. Needs requests and PyJWT[crypto].
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from typing import Any, Callable

import jwt
import requests

TIMEOUT = 15  # seconds per HTTP request; Argon2 is cheap in the test config but CI is slow
AUDIENCE = "porteiro"


class CheckFailed(Exception):
    pass


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def body_of(resp: requests.Response) -> str:
    return resp.text[:500]


class Interop:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.passed = 0
        self.failed = 0

    # -- bookkeeping -----------------------------------------------------------------------

    def check(self, name: str, fn: Callable[[], None], fatal: bool = False) -> None:
        """Runs one check; later checks that need its result pass fatal=True to stop early."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any error in a check is that check's failure
            self.failed += 1
            print(f"FAIL: {name}: {type(e).__name__}: {e}", flush=True)
            if fatal:
                raise SystemExit(1)
        else:
            self.passed += 1
            print(f"PASS: {name}", flush=True)

    def url(self, path: str) -> str:
        return self.base + path

    def me_status(self, token: str) -> int:
        r = self.http.get(self.url("/api/auth/me"), headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
        return r.status_code

    # -- setup -----------------------------------------------------------------------------

    def register(self) -> None:
        # Fresh random identity so reruns against the same database never collide.
        suffix = secrets.token_hex(5)
        self.username = f"interop_{suffix}"
        self.email = f"interop.{suffix}@example.com"
        self.password = f"Interop-Pass-{secrets.token_hex(4)}9"
        r = self.http.post(
            self.url("/api/auth/register"),
            json={"username": self.username, "email": self.email, "password": self.password},
            timeout=TIMEOUT,
        )
        require(r.status_code == 201, f"expected 201, got {r.status_code}: {body_of(r)}")
        body = r.json()
        require(body.get("status") == "success", f"status is not success: {body}")
        self.user_id = str(body["data"]["id"])

    def login(self) -> None:
        r = self.http.post(
            self.url("/api/auth/login"),
            json={"username_or_email": self.email, "password": self.password},
            timeout=TIMEOUT,
        )
        require(r.status_code == 200, f"expected 200, got {r.status_code}: {body_of(r)}")
        data = r.json()["data"]
        require(data.get("token_type") == "Bearer", f"token_type is {data.get('token_type')!r}")
        require(str(data["user"]["id"]) == self.user_id, "login returned a different user id")
        require(isinstance(data.get("refresh_token"), str) and data["refresh_token"], "no refresh_token")
        self.access = data["access_token"]
        self.expires_in = data.get("expires_in")

    def fetch_jwks(self) -> None:
        r = self.http.get(self.url("/.well-known/jwks.json"), timeout=TIMEOUT)
        require(r.status_code == 200, f"expected 200, got {r.status_code}: {body_of(r)}")
        keys = r.json()["keys"]
        require(isinstance(keys, list) and keys, "JWKS has no keys")
        kids = [k.get("kid") for k in keys]
        require(all(kids) and len(set(kids)) == len(kids), f"kids missing or not unique: {kids}")
        for k in keys:
            require(
                (k.get("kty"), k.get("crv"), k.get("alg"), k.get("use")) == ("OKP", "Ed25519", "EdDSA", "sig"),
                f"unexpected key shape: {k}",
            )
            require("d" not in k, "JWKS leaks a private key component")
            require(len(b64url_decode(k["x"])) == 32, "x is not a 32-byte Ed25519 public key")
        self.jwks = keys

    # -- checks ----------------------------------------------------------------------------

    def verify_with_pyjwt(self) -> None:
        header = jwt.get_unverified_header(self.access)
        require(header.get("alg") == "EdDSA", f"header alg is {header.get('alg')!r}")
        kid = header.get("kid")
        require(bool(kid), "header has no kid")
        self.kid = kid

        # PyJWKClient fetches the JWKS itself and picks the key by kid, as a real relying
        # party would; no key material from this script is involved.
        client = jwt.PyJWKClient(self.url("/.well-known/jwks.json"), cache_keys=False, timeout=TIMEOUT)
        signing_key = client.get_signing_key_from_jwt(self.access)
        require(signing_key.key_id == kid, "PyJWKClient picked a different key")

        claims = jwt.decode(
            self.access,
            signing_key.key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=self.base,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
        require(claims["sub"] == self.user_id, f"sub {claims['sub']!r} != user id {self.user_id!r}")
        require(claims.get("typ") == "access", f"typ is {claims.get('typ')!r}")
        require(bool(claims.get("sid")), "sid missing")
        require(bool(claims.get("jti")), "jti empty")
        now = time.time()
        require(claims["exp"] > now, "token already expired")
        require(claims["iat"] <= now + 5 and claims["nbf"] <= now + 5, "iat/nbf in the future")
        if isinstance(self.expires_in, int):
            ttl = claims["exp"] - claims["iat"]
            require(abs(ttl - self.expires_in) <= 5, f"exp - iat = {ttl} but expires_in = {self.expires_in}")
        self.claims = claims

    def genuine_token_accepted(self) -> None:
        r = self.http.get(self.url("/api/auth/me"), headers={"Authorization": f"Bearer {self.access}"}, timeout=TIMEOUT)
        require(r.status_code == 200, f"expected 200, got {r.status_code}: {body_of(r)}")
        require(str(r.json()["data"]["id"]) == self.user_id, "/me answered for another user")

    def tampered(self) -> str:
        h, p, sig = self.access.split(".")
        # Flip a bit in the decoded bytes: editing the last base64url character may only touch
        # padding bits and leave the signature unchanged.
        raw = bytearray(b64url_decode(sig))
        raw[0] ^= 0x01
        return f"{h}.{p}.{b64url(bytes(raw))}"

    def tampered_rejected_by_pyjwt(self) -> None:
        key = jwt.PyJWK(next(k for k in self.jwks if k["kid"] == self.kid))
        try:
            jwt.decode(self.tampered(), key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=self.base)
        except jwt.InvalidSignatureError:
            return
        raise CheckFailed("PyJWT accepted a token with a modified signature")

    def tampered_rejected_by_server(self) -> None:
        status = self.me_status(self.tampered())
        require(status == 401, f"expected 401, got {status}")

    def forged(self, header: dict[str, Any], secret: bytes | None) -> str:
        # Same claims as the genuine token, so only the algorithm can explain a rejection.
        signing_input = f"{b64url(compact_json(header))}.{b64url(compact_json(self.claims))}"
        sig = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(sig)}"

    def alg_none_rejected(self) -> None:
        for alg in ("none", "None", "NONE"):
            token = self.forged({"alg": alg, "typ": "JWT", "kid": self.kid}, None)
            status = self.me_status(token)
            require(status == 401, f"alg {alg!r}: expected 401, got {status}")

    def hs256_confusion_rejected(self) -> None:
        x = next(k for k in self.jwks if k["kid"] == self.kid)["x"]
        # Both readings of "the public key as HMAC secret": the JWK text and the raw key bytes.
        for label, secret in (("x as text", x.encode()), ("x decoded", b64url_decode(x))):
            token = self.forged({"alg": "HS256", "typ": "JWT", "kid": self.kid}, secret)
            status = self.me_status(token)
            require(status == 401, f"HS256 keyed with {label}: expected 401, got {status}")

    # -- driver ----------------------------------------------------------------------------

    def run(self) -> int:
        self.check("register a fresh user", self.register, fatal=True)
        self.check("log in", self.login, fatal=True)
        self.check("JWKS is a set of Ed25519 public keys", self.fetch_jwks, fatal=True)
        self.check("PyJWT verifies the access token through the JWKS (iss, aud, sub, typ, sid)",
                   self.verify_with_pyjwt, fatal=True)
        self.check("server accepts the genuine token on /api/auth/me", self.genuine_token_accepted)
        self.check("PyJWT rejects a token with a tampered signature", self.tampered_rejected_by_pyjwt)
        self.check("server answers 401 to a tampered signature", self.tampered_rejected_by_server)
        self.check("server answers 401 to an alg=none token", self.alg_none_rejected)
        self.check("server answers 401 to an HS256 token keyed with the JWKS x", self.hs256_confusion_rejected)
        if self.failed:
            print(f"jwt interop: {self.failed} of {self.passed + self.failed} checks FAILED", flush=True)
            return 1
        print(f"jwt interop: all {self.passed} checks passed", flush=True)
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} BASE_URL", file=sys.stderr)
        return 2
    return Interop(argv[1]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
