#!/usr/bin/env python3
"""Webhook interop check: an independent Standard Webhooks implementation against a live server.

Usage: webhook_interop.py BASE_URL ADMIN_PASSWORD     e.g. http://127.0.0.1:8080 s3cret

The Rust tests verify signatures with the same HMAC library that makes them. Here the
reference Python library (`standardwebhooks` from PyPI) must accept what Porteiro sends, with
nothing but the `whsec_` secret the API showed once: a tiny receiver on 127.0.0.1 captures a
real delivery (the server needs WEBHOOK_ALLOW_PRIVATE=true to call it), and the library's
`Webhook.verify` checks headers, timestamp tolerance and signature. A rotation must give a
delivery that verifies with both the old and the new secret, and a tampered body must not.

Prints one PASS/FAIL line per check; exits 1 on any failure. Needs requests and standardwebhooks.
"""

from __future__ import annotations

import base64
import http.server
import secrets
import sys
import threading
import time
from typing import Any, Callable

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TIMEOUT = 15  # seconds per HTTP request
DELIVERY_DEADLINE = 30  # seconds to wait for a delivery


class CheckFailed(Exception):
    pass


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


class Capture:
    """Requests the receiver got: (headers, body bytes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[dict[str, str], bytes]] = []

    def add(self, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.items.append((headers, body))

    def wait_for(self, n: int) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= n:
                    return list(self.items)
            time.sleep(0.05)
        raise CheckFailed(f"expected {n} deliveries within {DELIVERY_DEADLINE} s, got {len(self.items)}")


def start_receiver(capture: Capture) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            capture.add({k: v for k, v in self.headers.items()}, body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Interop:
    def __init__(self, base_url: str, admin_password: str) -> None:
        self.base = base_url.rstrip("/")
        self.admin_password = admin_password
        self.http = requests.Session()
        self.passed = 0
        self.failed = 0
        self.capture = Capture()
        self.receiver = start_receiver(self.capture)
        self.admin = ""
        self.endpoint = ""
        self.secret = ""
        self.old_secret = ""

    def check(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (report every failure the same way)
            self.failed += 1
            print(f"FAIL: {name}: {type(e).__name__}: {e}", flush=True)
        else:
            self.passed += 1
            print(f"PASS: {name}", flush=True)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin}"} if self.admin else {}
        return self.http.request(method, self.base + path, headers=headers, timeout=TIMEOUT, **kwargs)

    def register(self) -> None:
        name = "wh" + secrets.token_hex(4)
        r = self.http.post(
            self.base + "/api/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": "Interop-Passw0rd!"},
            timeout=TIMEOUT,
        )
        require(r.status_code == 201, f"register: {r.status_code} {r.text[:300]}")

    def setup(self) -> None:
        r = self.http.post(
            self.base + "/auth", json={"login": "admin", "password": self.admin_password}, timeout=TIMEOUT
        )
        require(r.status_code == 200, f"admin sign-in: {r.status_code} {r.text[:300]}")
        self.admin = r.json()["auth"]
        port = self.receiver.server_address[1]
        r = self.api(
            "POST",
            "/api/admin/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook", "event_types": ["user.registered"]},
        )
        require(r.status_code == 201, f"create endpoint: {r.status_code} {r.text[:300]}")
        self.endpoint = r.json()["data"]["id"]
        self.secret = r.json()["data"]["secret"]
        require(self.secret.startswith("whsec_"), "secret is not whsec_…")

    def delivery_verifies(self) -> None:
        self.register()
        headers, body = self.capture.wait_for(1)[0]
        payload = Webhook(self.secret).verify(body, headers)
        require(payload["type"] == "user.registered", f"type: {payload.get('type')}")
        require(payload["version"] == 1, "version")
        require(headers.get("webhook-id") == payload["id"], "webhook-id equals the payload id")

    def wrong_secret_or_tampering_fails(self) -> None:
        headers, body = self.capture.wait_for(1)[0]
        other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        for secret, data, what in (
            (other, body, "another secret"),
            (self.secret, body.replace(b"user.registered", b"user.deleted"), "a tampered body"),
        ):
            try:
                Webhook(secret).verify(data, headers)
            except WebhookVerificationError:
                continue
            raise CheckFailed(f"verified with {what}")

    def rotation_overlap_verifies_with_both(self) -> None:
        r = self.api("POST", f"/api/admin/webhooks/{self.endpoint}/rotate-secret", json={"overlap_seconds": 3600})
        require(r.status_code == 200, f"rotate: {r.status_code} {r.text[:300]}")
        self.old_secret, self.secret = self.secret, r.json()["data"]["secret"]
        self.register()
        headers, body = self.capture.wait_for(2)[1]
        require(len(headers.get("webhook-signature", "").split(" ")) == 2, "two signatures during the overlap")
        Webhook(self.secret).verify(body, headers)
        Webhook(self.old_secret).verify(body, headers)

    def run(self) -> int:
        self.check("setup: admin sign-in and endpoint creation", self.setup)
        if self.failed:
            return 1
        self.check("standardwebhooks verifies a real delivery", self.delivery_verifies)
        self.check("another secret or a tampered body is refused", self.wrong_secret_or_tampering_fails)
        self.check("during a rotation both secrets verify", self.rotation_overlap_verifies_with_both)
        self.receiver.shutdown()
        if self.failed:
            print(f"webhook interop: {self.failed} of {self.passed + self.failed} checks FAILED", flush=True)
            return 1
        print(f"webhook interop: all {self.passed} checks passed", flush=True)
        return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} BASE_URL ADMIN_PASSWORD", file=sys.stderr)
        return 2
    return Interop(argv[1], argv[2]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
