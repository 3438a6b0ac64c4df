#!/usr/bin/env python3
"""Two-factor interop check: an independent TOTP implementation (pyotp) against a live server.

Usage: mfa_interop.py BASE_URL        e.g. http://127.0.0.1:8080

The Rust tests make their codes with totp-rs, the library the server checks them with, so a
mistake shared by both (the base32 alphabet, the counter's byte order, dynamic truncation, the
URI's label) would go unnoticed there. Here pyotp, as an authenticator app would, reads the
`otpauth://` URI the server hands out and makes every code; PyJWT reads the `amr` claim of the
resulting access token through the published JWKS.

Prints one PASS/FAIL line per check; exits 1 on any failure. Needs requests, PyJWT[crypto], pyotp.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import time
from typing import Callable

import jwt
import pyotp
import requests

TIMEOUT = 15  # seconds per HTTP request
AUDIENCE = "porteiro"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class CheckFailed(Exception):
    pass


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def body_of(resp: requests.Response) -> str:
    return resp.text[:500]


class MfaInterop:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], None], fatal: bool = False) -> None:
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

    def post(self, path: str, body: dict, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Sign-in and code routes share a strict per-address bucket (10, refilled at 1/s by
        # default): like any well-behaved client, wait as told by Retry-After and try again. A
        # 429 is answered before the handler runs, so nothing was counted or spent.
        for _ in range(5):
            r = self.http.post(self.url(path), json=body, headers=headers, timeout=TIMEOUT)
            if r.status_code != 429:
                return r
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 5.0))
        return r

    def claims(self, access: str) -> dict:
        # The key comes from the published JWKS alone, as a relying party would get it.
        client = jwt.PyJWKClient(self.url("/.well-known/jwks.json"), cache_keys=False, timeout=TIMEOUT)
        key = client.get_signing_key_from_jwt(access)
        return jwt.decode(access, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=self.base)

    # -- steps -----------------------------------------------------------------------------

    def register_and_sign_in(self) -> None:
        suffix = secrets.token_hex(5)
        self.username = f"totp_{suffix}"
        self.email = f"totp.{suffix}@example.com"
        self.password = f"Totp-Interop-{secrets.token_hex(4)}9"
        r = self.post("/api/auth/register",
                      {"username": self.username, "email": self.email, "password": self.password})
        require(r.status_code == 201, f"register: expected 201, got {r.status_code}: {body_of(r)}")
        self.user_id = str(r.json()["data"]["id"])
        r = self.post("/api/auth/login", {"username_or_email": self.email, "password": self.password})
        require(r.status_code == 200, f"login: expected 200, got {r.status_code}: {body_of(r)}")
        data = r.json()["data"]
        require(data["requires_2fa"] is False and isinstance(data["access_token"], str),
                f"a one-step sign-in before 2FA: {data}")
        require(self.claims(data["access_token"]).get("amr") == ["pwd"], "amr of a password sign-in")
        self.access = data["access_token"]

    def setup(self) -> None:
        r = self.http.get(self.url(f"/api/users/{self.user_id}/2fa/setup"),
                          headers={"Authorization": f"Bearer {self.access}"}, timeout=TIMEOUT)
        require(r.status_code == 200, f"setup: expected 200, got {r.status_code}: {body_of(r)}")
        data = r.json()["data"]
        self.secret = data["secret"]
        self.uri = data["otpauth_uri"]
        self.backup_codes = data["backup_codes"]
        require(len(self.backup_codes) == 10 and len(set(self.backup_codes)) == 10,
                f"ten distinct backup codes: {self.backup_codes}")
        prefix = "data:image/png;base64,"
        require(data["qr_code"].startswith(prefix), "the QR code is a PNG data URL")
        require(base64.b64decode(data["qr_code"][len(prefix):]).startswith(PNG_MAGIC), "a PNG")

    def uri_is_what_apps_expect(self) -> None:
        app = pyotp.parse_uri(self.uri)
        require(isinstance(app, pyotp.TOTP), f"a TOTP URI: {self.uri}")
        require(app.issuer == "Porteiro", f"issuer {app.issuer!r}")
        require(app.name == self.email, f"account name {app.name!r}, expected {self.email!r}")
        require(app.digits == 6, f"digits {app.digits}")
        require(app.interval == 30, f"period {app.interval}")
        require(app.digest().name == hashlib.sha1().name, f"algorithm {app.digest().name}")
        require(app.secret == self.secret, "the URI's secret is the one shown for typing")
        raw = base64.b32decode(self.secret + "=" * (-len(self.secret) % 8))
        require(len(raw) * 8 >= 160, f"a secret of at least 160 bits, got {len(raw) * 8}")
        # The app a user types the secret into makes the same codes as the one scanning the QR.
        now = time.time()
        require(pyotp.TOTP(self.secret).at(now) == app.at(now), "typed and scanned apps disagree")
        self.app = app

    def enable(self) -> None:
        self.enable_code = pyotp.TOTP(self.secret).now()
        r = self.post(f"/api/users/{self.user_id}/2fa/enable", {"totp_code": self.enable_code}, self.access)
        require(r.status_code == 200, f"enable: expected 200, got {r.status_code}: {body_of(r)}")
        require(r.json()["data"]["enabled"] is True, f"enabled: {r.json()}")

    def password_step(self) -> str:
        r = self.post("/api/auth/login", {"username_or_email": self.email, "password": self.password})
        require(r.status_code == 200, f"login: expected 200, got {r.status_code}: {body_of(r)}")
        data = r.json()["data"]
        require(data["access_token"] is None and data["refresh_token"] is None, f"no tokens yet: {data}")
        require(data["requires_2fa"] is True, f"requires_2fa: {data}")
        require(data["methods"] == ["totp", "backup_code"], f"methods: {data['methods']}")
        require(data["expires_in"] == 300, f"expires_in: {data['expires_in']}")
        return data["mfa_token"]

    def sign_in_with_pyotp(self) -> None:
        mfa_token = self.password_step()
        # The code that enabled the app was spent: the same step cannot sign in.
        r = self.post("/api/auth/2fa/verify", {"mfa_token": mfa_token, "code": self.enable_code})
        require(r.status_code == 401 and r.json().get("code") == "invalid_code",
                f"a spent code: expected 401 invalid_code, got {r.status_code}: {body_of(r)}")
        # The next step's code (the server accepts one step either side), made by pyotp.
        code = pyotp.TOTP(self.secret).at(time.time() + 30)
        r = self.post("/api/auth/2fa/verify", {"mfa_token": mfa_token, "code": code})
        require(r.status_code == 200, f"verify: expected 200, got {r.status_code}: {body_of(r)}")
        data = r.json()["data"]
        claims = self.claims(data["access_token"])
        require(claims["sub"] == self.user_id, "another account's token")
        require(claims.get("amr") == ["pwd", "otp"], f"amr {claims.get('amr')!r}")
        # Used once: the same code on a new sign-in is refused.
        r = self.post("/api/auth/2fa/verify", {"mfa_token": self.password_step(), "code": code})
        require(r.status_code == 401 and r.json().get("code") == "invalid_code",
                f"a replayed code: expected 401 invalid_code, got {r.status_code}: {body_of(r)}")
        # amr survives a refresh.
        r = self.post("/api/auth/refresh", {"refresh_token": data["refresh_token"]})
        require(r.status_code == 200, f"refresh: expected 200, got {r.status_code}: {body_of(r)}")
        require(self.claims(r.json()["data"]["access_token"]).get("amr") == ["pwd", "otp"], "amr after refresh")

    def compact_with_backup_code(self) -> None:
        r = self.post("/auth", {"login": self.username, "password": self.password})
        require(r.status_code == 403 and r.json().get("code") == "mfa_required",
                f"no otp: expected 403 mfa_required, got {r.status_code}: {body_of(r)}")
        r = self.post("/auth", {"login": self.username, "password": self.password, "otp": self.backup_codes[0]})
        require(r.status_code == 200, f"backup code as otp: expected 200, got {r.status_code}: {body_of(r)}")
        require(self.claims(r.json()["auth"]).get("amr") == ["pwd", "otp"], "amr of a backup-code sign-in")

    def mfa_token_is_no_bearer(self) -> None:
        mfa_token = self.password_step()
        r = self.http.get(self.url("/api/auth/me"), headers={"Authorization": f"Bearer {mfa_token}"},
                          timeout=TIMEOUT)
        require(r.status_code == 401, f"mfa_token as bearer: expected 401, got {r.status_code}")

    def run(self) -> int:
        self.check("register and sign in with a password (amr pwd)", self.register_and_sign_in, fatal=True)
        self.check("set up an authenticator app", self.setup, fatal=True)
        self.check("pyotp.parse_uri reads issuer, account, digits, period, algorithm, secret",
                   self.uri_is_what_apps_expect)
        self.check("enable with a pyotp code", self.enable, fatal=True)
        self.check("sign in with password then a pyotp code (PyJWT: amr pwd, otp; replay refused)",
                   self.sign_in_with_pyotp)
        self.check("compact /auth: mfa_required without otp, a backup code as otp", self.compact_with_backup_code)
        self.check("the mfa_token is not a bearer token", self.mfa_token_is_no_bearer)
        if self.failed:
            print(f"mfa interop: {self.failed} of {self.passed + self.failed} checks FAILED", flush=True)
            return 1
        print(f"mfa interop: all {self.passed} checks passed", flush=True)
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} BASE_URL", file=sys.stderr)
        return 2
    return MfaInterop(argv[1]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
