#!/usr/bin/env python3
"""Live-follow latency of a tandem run's log (issue 11, item 4).

usage: follow-latency.py URL TOKEN RUNBOOK OUT.json

Starts a run of RUNBOOK (POST /api/v1/runs), follows its log over server-sent events
(GET /api/v1/runs/{id}/log?follow=1&batch=1, one event per batch of lines, as
`tandem logs --follow` asks) until the `end` event, and for every stamp it sees
computes the receive time minus the stamp. A stamp is the output of `date +STAMP%s.%N` on
a host: `STAMP` followed by the host's clock in seconds; the host is this machine, so both
times come from one clock. Stamps are looked for anywhere in an event's data, so the
measurement does not depend on how the daemon frames lines (one event per line or per chunk).

A stamp printed before the stream was open would measure the wait for the client, not the
daemon: those are counted as `early` and left out. Writes a JSON summary to OUT.json and
prints one line. Standard library only.
"""
import http.client
import json
import re
import resource
import sys
import time
import urllib.parse

STAMP = re.compile(rb"STAMP([0-9]+\.[0-9]+)")


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, -(-p * len(v) // 100) - 1))
    return v[int(k)]


def main():
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    url, token, runbook, out = sys.argv[1:]
    u = urllib.parse.urlsplit(url)
    auth = {"Authorization": f"Bearer {token}"}

    t_start = time.time()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"runbook": runbook, "params": {}})
    conn.request("POST", "/api/v1/runs", body, {**auth, "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        print(f"POST /api/v1/runs: {resp.status} {data[:300]!r}", file=sys.stderr)
        return 1
    run_id = json.loads(data)["id"]

    follow = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    follow.request(
        "GET",
        f"/api/v1/runs/{run_id}/log?follow=1&batch=1",
        headers={**auth, "Accept": "text/event-stream"},
    )
    stream = follow.getresponse()
    t_open = time.time()
    if stream.status != 200:
        print(f"GET log?follow=1: {stream.status} {stream.read()[:300]!r}", file=sys.stderr)
        return 1

    latencies = []  # seconds, receive - stamp
    early = 0
    events = 0
    data_bytes = 0
    final = None
    buf = b""
    # Read whatever has arrived (read1: no waiting for a full buffer), time it, then take the
    # complete events out of it; a stamp's receive time is when its bytes reached the client.
    while final is None:
        block = stream.read1(1 << 16)
        if not block:
            break
        now = time.time()
        buf = (buf + block).replace(b"\r\n", b"\n")
        *complete, buf = buf.split(b"\n\n")
        for event in complete:
            if final is not None:
                break
            kind, payload = b"", []
            for line in event.split(b"\n"):
                if line.startswith(b"event:"):
                    kind = line[6:].strip()
                elif line.startswith(b"data:"):
                    payload.append(line[5:])
            if not kind and not payload:
                continue  # a keep-alive comment
            events += 1
            d = b"\n".join(payload)
            data_bytes += len(d)
            if kind == b"end":
                try:
                    final = json.loads(d)
                except ValueError:
                    final = {}
            elif b"STAMP" in d:
                for m in STAMP.finditer(d):
                    stamp = float(m.group(1))
                    if stamp < t_open:
                        early += 1
                    else:
                        latencies.append(now - stamp)
    t_end = time.time()

    ms = [x * 1000 for x in latencies]
    summary = {
        "run": run_id,
        "status": (final or {}).get("status"),
        "wall_s": round(t_end - t_start, 3),
        "stream_open_ms": round((t_open - t_start) * 1000, 1),
        "events": events,
        "data_bytes": data_bytes,
        "stamps": len(ms),
        "early_stamps": early,
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else None,
        "min_ms": min(ms) if ms else None,
        # This client's own CPU: it parses every event, so a busy client would add latency.
        "client_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 3),
    }
    with open(out, "w") as f:
        json.dump(summary, f)
    fmt = lambda v: "-" if v is None else f"{v:.0f}"
    print(
        f"run {run_id} {summary['status']}: {len(ms)} stamps ({early} before the stream opened), "
        f"p50 {fmt(summary['p50_ms'])} ms, p99 {fmt(summary['p99_ms'])} ms, "
        f"max {fmt(summary['max_ms'])} ms, wall {summary['wall_s']} s"
    )
    if final is None:
        print("the stream ended without an `end` event", file=sys.stderr)
        return 1
    return 0 if summary["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
