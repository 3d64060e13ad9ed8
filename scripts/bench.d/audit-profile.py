#!/usr/bin/env python3
"""Where a tandem run's wall time goes, read from its audit export (`tandem audit export`).

usage: audit-profile.py AUDIT.jsonl [RUNBOOK [--last]]

For each run (of RUNBOOK, when given) prints the phases between audit records:
request -> run_started -> first action_intent -> last action_result -> run_finished, the
spread of the hosts' first intents (how fast the rollout starts hosts), the actions' own
durations (`duration_ms`: the first action on a host includes connect + handshake + auth),
and the time each action spent between its intent and its result beyond its own duration
(store commits and waiting for the store lock). Timestamps have millisecond resolution.
Standard library only.
"""
import json
import statistics
import sys
from datetime import datetime


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def summary(values, unit="ms"):
    if not values:
        return "-"
    return (
        f"n={len(values)} median={statistics.median(values):.0f}{unit} "
        f"p90={pct(values, 90):.0f}{unit} max={max(values):.0f}{unit}"
    )


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    only = sys.argv[2] if len(sys.argv) > 2 else None
    last_only = "--last" in sys.argv[3:]
    runs = {}
    order = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            rid = r.get("run_id")
            if not rid:
                continue
            if rid not in runs:
                runs[rid] = []
                order.append(rid)
            runs[rid].append(r)
    def runbook_of(rid):
        req = next((r for r in runs[rid] if r["event"] == "run_requested"), None)
        return (req or {}).get("detail", {}).get("runbook", "?")

    chosen = [rid for rid in order if not only or runbook_of(rid) == only]
    if last_only:
        chosen = chosen[-1:]
    for rid in chosen:
        recs = runs[rid]
        req = next((r for r in recs if r["event"] == "run_requested"), None)
        name = runbook_of(rid)
        t = {}
        for r in recs:
            t.setdefault(r["event"], []).append(r)
        if "run_started" not in t or "run_finished" not in t:
            continue
        t_req = ts(req["ts"]) if req else ts(t["run_started"][0]["ts"])
        t_start = ts(t["run_started"][0]["ts"])
        t_end = ts(t["run_finished"][-1]["ts"])
        intents = t.get("action_intent", [])
        results = t.get("action_result", [])
        first_intent = {}
        for r in intents:
            h = r["detail"].get("host")
            first_intent.setdefault(h, ts(r["ts"]))
        # Pair intents and results per host in order.
        per_host_int, per_host_res = {}, {}
        for r in intents:
            per_host_int.setdefault(r["detail"].get("host"), []).append(r)
        for r in results:
            per_host_res.setdefault(r["detail"].get("host"), []).append(r)
        first_dur, later_dur, overhead, between = [], [], [], []
        for h, ins in per_host_int.items():
            res = per_host_res.get(h, [])
            prev_res = None
            for i, (a, b) in enumerate(zip(ins, res)):
                d = b["detail"].get("duration_ms")
                span = (ts(b["ts"]) - ts(a["ts"])) * 1000
                if d is not None:
                    (first_dur if i == 0 else later_dur).append(d)
                    overhead.append(span - d)
                if prev_res is not None:
                    between.append((ts(a["ts"]) - ts(prev_res["ts"])) * 1000)
                prev_res = b
        fi = sorted(first_intent.values())
        last_res = max((ts(r["ts"]) for r in results), default=t_end)
        wall = t_end - t_req
        audit_n = len(recs)
        print(f"run {rid} ({name}): {len(first_intent)} hosts, {len(intents)} actions, "
              f"{audit_n} audit records, {wall:.3f}s request->finished")
        print(f"  request -> run_started          {(t_start - t_req) * 1000:8.0f} ms")
        if fi:
            print(f"  run_started -> first intent     {(fi[0] - t_start) * 1000:8.0f} ms")
            print(f"  first -> last host's 1st intent {(fi[-1] - fi[0]) * 1000:8.0f} ms"
                  f"  (how long the rollout takes to start every host)")
            print(f"  first intent -> last result     {(last_res - fi[0]) * 1000:8.0f} ms")
        print(f"  last result -> run_finished     {(t_end - last_res) * 1000:8.0f} ms")
        print(f"  1st action per host (connect+auth+exec)  {summary(first_dur)}")
        print(f"  later actions (exec on open session)     {summary(later_dur)}")
        print(f"  intent->result beyond duration (store)   {summary(overhead)}")
        print(f"  result -> next intent on the same host   {summary(between)}")
        if wall > 0:
            print(f"  audit records per second over the run    {audit_n / wall:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
