"""The administrator's calls of the webhooks benchmark (bench/run.sh), with the standard library.

  hooks.py --url URL --admin-password PW create RECEIVER_URL   -> prints the endpoint id
  hooks.py ... enable ID true|false
  hooks.py ... drain                                         -> waits for an empty backlog
  hooks.py ... throughput ID FROM                            -> replays [FROM, now) and times it

The backlog is read from /metrics (`porteiro_webhook_backlog`), which answers loopback clients
when no METRICS_TOKEN is set.
"""

import argparse
import datetime
import json
import sys
import time
import urllib.request

DRAIN_LIMIT_SECS = 600


def call(url, method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data, headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def admin_token(url, password):
    return call(url, "POST", "/auth", body={"login": "admin", "password": password})["auth"]


def backlog(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("porteiro_webhook_backlog"):
                return float(line.rsplit(" ", 1)[1])
    sys.exit("hooks.py: /metrics has no porteiro_webhook_backlog")


def drain(url):
    started = time.monotonic()
    while backlog(url) > 0:
        if time.monotonic() - started > DRAIN_LIMIT_SECS:
            sys.exit("hooks.py: the webhook backlog did not drain")
        time.sleep(0.05)
    return time.monotonic() - started


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--admin-password", required=True)
    ap.add_argument("action", choices=["create", "enable", "drain", "throughput"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    if a.action == "drain":
        print(json.dumps({"drain_secs": round(drain(a.url), 2)}))
        return
    token = admin_token(a.url, a.admin_password)
    if a.action == "create":
        created = call(a.url, "POST", "/api/admin/webhooks", token,
                       {"url": a.args[0], "event_types": ["*"], "description": "benchmark receiver"})
        print(created["data"]["id"])
    elif a.action == "enable":
        call(a.url, "PUT", f"/api/admin/webhooks/{a.args[0]}", token,
             {"enabled": a.args[1] == "true"})
    else:
        drain(a.url)
        until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1))
        replayed = call(a.url, "POST", f"/api/admin/webhooks/{a.args[0]}/replay", token,
                        {"from": a.args[1], "to": until.strftime("%Y-%m-%dT%H:%M:%SZ")})
        queued = replayed["data"]["queued"]
        secs = drain(a.url)
        print(json.dumps({"deliveries": queued, "delivery_secs": round(secs, 2),
                          "deliveries_per_sec": round(queued / secs, 1) if secs else None}))


if __name__ == "__main__":
    main()
