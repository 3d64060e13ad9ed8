#!/usr/bin/env python3
"""Clones the runs of a tandem database into N runs, for scripts/bench-console.

usage: console-seed.py DB N

Each clone copies one of the existing runs (its plan, initiator, hosts) under a new id,
created at a time spread over the 90 days before now; 1 in 10 is `failed`. Clones carry no
log: the page of a run with a long log is the original's. Standard library only.
"""
import datetime as dt
import random
import sqlite3
import sys


def main():
    if len(sys.argv) != 3:
        print("usage: console-seed.py DB N", file=sys.stderr)
        return 2
    db, n = sys.argv[1], int(sys.argv[2])
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    templates = conn.execute("SELECT * FROM runs").fetchall()
    hosts = {
        t[0]: conn.execute(
            "SELECT host, position FROM host_results WHERE run_id = ?", (t[0],)
        ).fetchall()
        for t in templates
    }
    rng = random.Random(15)
    now = dt.datetime.now(dt.timezone.utc)
    span = 90 * 24 * 3600
    runs, results = [], []
    for i in range(n):
        t = list(templates[i % len(templates)])
        row = dict(zip(cols, t))
        new_id = "%016x" % rng.getrandbits(64)
        created = now - dt.timedelta(seconds=rng.random() * span)
        ts = created.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (created.microsecond // 1000)
        row.update(id=new_id, created_at=ts, started_at=ts, finished_at=ts, slot=None)
        row["status"] = "failed" if i % 10 == 0 else "succeeded"
        row["error"] = "exit code 1 on a host" if i % 10 == 0 else None
        runs.append(tuple(row[c] for c in cols))
        for host, pos in hosts[t[0]]:
            status = "failed" if i % 10 == 0 else "succeeded"
            results.append((new_id, host, pos, status, 0, ts, ts))
    marks = ",".join("?" * len(cols))
    with conn:
        conn.executemany(f"INSERT INTO runs ({','.join(cols)}) VALUES ({marks})", runs)
        conn.executemany(
            "INSERT INTO host_results (run_id, host, position, status, exit_code, started_at, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            results,
        )
    # No ANALYZE: tandem never runs it, so its query plans are those of a store without
    # statistics.
    conn.close()
    print(f"seeded {n} runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
