#!/usr/bin/env python3
"""Requests console pages and prints p50/p99 per page, for scripts/bench-console.

usage: console-pages.py URL REQUESTS

Signs in as alice (internal), paula (provider) and oscar (a party that sees no run), then
requests each page REQUESTS times (oscar's: at most 20) over one keep-alive connection and times each to its
last byte. Standard library only.
"""
import http.client
import re
import statistics
import sys
import time
import urllib.parse


def sign_in(host, port, user):
    c = http.client.HTTPConnection(host, port)
    body = urllib.parse.urlencode({"token": "tok-" + user, "next": "/runs"})
    c.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie").split(";")[0]
    c.close()
    return cookie


def timed(conn, path, cookie, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": cookie})
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status}\n{body[:500]!r}")
    return times, body.decode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    print(f"{'page':58} {'p50 ms':>8} {'p99 ms':>8}")
    for user in ["alice", "paula", "oscar"]:
        cookie = sign_in(u.hostname, u.port, user)
        _, first = timed(conn, "/runs", cookie, 1)
        ids = re.findall(r'class="run" href="/runs/([0-9a-f]+)"', first)
        older = re.search(r'id="older" href="([^"]+)"', first)
        pages = ["/runs", "/runs?status=failed", "/runs?until=2000-01-01", "/"]
        if user != "oscar":
            # The newest run is one of the two originals, with its 2,000-line log.
            pages += [f"/runs/{ids[0]}", "/runs?host=web1&status=failed"]
            if older:
                pages.append(older.group(1).replace("&amp;", "&"))
        for path in pages:
            # A party that sees none of the runs makes every listing scan them all: fewer
            # rounds of it.
            times, _ = timed(conn, path, cookie, n if user != "oscar" else min(n, 20))
            label = f"{user}: {path}"[:58]
            print(f"{label:58} {pct(times, 50):8.1f} {pct(times, 99):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
