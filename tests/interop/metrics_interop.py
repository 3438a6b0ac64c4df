#!/usr/bin/env python3
"""Metrics interop check: Prometheus' own Python client parses a live Porteiro's /metrics.

Usage: metrics_interop.py BASE_URL        e.g. http://127.0.0.1:8080

The server must run with the default metrics access (no METRICS_TOKEN, no METRICS_ADDR), so
this loopback client may scrape it. The Rust tests parse the text with a strict parser of our
own; here `prometheus_client.parser.text_string_to_metric_families`, the reference
implementation's parser, must accept every line, find the families we document with their
types, and no label may carry user data (an address, an email, an id, a raw path).

Prints one PASS/FAIL line per check; exits 1 on any failure. Needs requests and
prometheus-client.
"""

from __future__ import annotations

import re
import sys
import uuid
from typing import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT = 15

# Families (as the parser names them: counters without `_total`) and their types.
EXPECTED = {
    "porteiro_http_requests": "counter",
    "porteiro_http_request_duration_seconds": "histogram",
    "porteiro_refresh_rotations": "counter",
    "porteiro_hash_pool_workers": "gauge",
    "porteiro_hash_pool_busy": "gauge",
    "porteiro_hash_pool_queued": "gauge",
    "porteiro_mail_outbox_backlog": "gauge",
    "porteiro_session_cache_entries": "gauge",
    "porteiro_session_cache_hits": "counter",
    "porteiro_session_cache_misses": "counter",
    "porteiro_session_cache_hit_ratio": "gauge",
    "porteiro_db_pool_connections": "gauge",
    "porteiro_db_pool_max_connections": "gauge",
    # Present once a webhook was delivered (scripts/test.sh runs the webhook check first).
    "porteiro_webhook_deliveries": "counter",
    "porteiro_webhook_delivery_seconds": "histogram",
    "porteiro_webhook_backlog": "gauge",
}

FIXED = {
    "method": {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"},
    "status": {"1xx", "2xx", "3xx", "4xx", "5xx"},
    "pool": {"main", "writer", "reader"},
    "state": {"in_use", "idle"},
}

# core/src/metrics.rs SIGN_IN_METHODS, and "other" for anything else.
SIGN_IN_METHODS = {"password", "passkey", "totp", "recovery_code", "oidc", "magic_link", "other"}

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
IPV4_RE = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")


class CheckFailed(Exception):
    pass


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def scrape(base: str, **headers: str) -> requests.Response:
    return requests.get(f"{base}/metrics", headers=headers, timeout=TIMEOUT)


def families(base: str) -> dict:
    r = scrape(base)
    require(r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:200]}")
    ctype = r.headers.get("content-type", "")
    require(ctype.startswith("text/plain; version=0.0.4"), f"content-type {ctype!r}")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def check_parses_with_types(base: str) -> None:
    # Traffic first, so the HTTP families have samples: a 200, a 401 and an unmatched 404.
    requests.get(f"{base}/api/health", timeout=TIMEOUT)
    requests.get(f"{base}/api/auth/me", timeout=TIMEOUT)
    requests.get(f"{base}/nowhere-{uuid.uuid4()}", timeout=TIMEOUT)
    found = families(base)
    for name, kind in EXPECTED.items():
        require(name in found, f"family {name} missing")
        require(found[name].type == kind, f"{name} is a {found[name].type}, not a {kind}")
    routes = {s.labels.get("route") for s in found["porteiro_http_requests"].samples}
    require("/api/health" in routes, f"no /api/health route label in {sorted(routes)}")
    require("unmatched" in routes, f"no unmatched route label in {sorted(routes)}")
    buckets = {
        float(s.labels["le"])
        for s in found["porteiro_http_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    for bound in (0.0005, 10.0, float("inf")):
        require(bound in buckets, f"latency bucket {bound} missing from {sorted(buckets)}")


def check_labels_are_fixed(base: str) -> None:
    found = families(base)
    for family in found.values():
        for sample in family.samples:
            for key, value in sample.labels.items():
                where = f"{sample.name}{{{key}={value!r}}}"
                require(not UUID_RE.search(value), f"{where}: an id in a label")
                require(not IPV4_RE.search(value), f"{where}: an address in a label")
                require("@" not in value, f"{where}: an email in a label")
                require("nowhere-" not in value, f"{where}: a raw path in a label")
                # `method` is the HTTP method on the HTTP families and the sign-in method on
                # porteiro_sign_ins: each from its own fixed list.
                allowed = FIXED.get(key)
                if key == "method" and family.name.startswith("porteiro_sign_ins"):
                    allowed = SIGN_IN_METHODS
                if allowed is not None and family.name.startswith("porteiro_"):
                    require(value in allowed, f"{where}: not one of {sorted(allowed)}")


def check_forwarded_scrape_is_refused(base: str) -> None:
    # No TRUSTED_PROXIES: a loopback peer relaying someone else is not a local scraper.
    r = scrape(base, **{"X-Forwarded-For": "203.0.113.7"})
    require(r.status_code == 404, f"a forwarded scrape answered {r.status_code}")
    require(r.json().get("code") == "not_found", f"body {r.text[:200]}")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    checks: list[tuple[str, Callable[[str], None]]] = [
        ("/metrics parses with prometheus_client, families typed as documented", check_parses_with_types),
        ("every label is a fixed value or a route template", check_labels_are_fixed),
        ("a forwarded scrape from an undeclared proxy is refused", check_forwarded_scrape_is_refused),
    ]
    failed = 0
    for title, check in checks:
        try:
            check(base)
            print(f"PASS {title}")
        except (CheckFailed, requests.RequestException, ValueError, KeyError) as e:
            failed += 1
            print(f"FAIL {title}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
