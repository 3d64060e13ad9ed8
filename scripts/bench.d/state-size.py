#!/usr/bin/env python3
"""Bytes a tandem state_dir holds, for the database-growth figure of scripts/bench.

usage: state-size.py DIR

A SQLite database (a file starting with "SQLite format 3") counts as the pages in use,
(page_count - freelist_count) * page_size, read through a read-only connection while the
daemon runs: that is what the data takes, whatever the WAL file's size or the last
checkpoint. Its -wal, -shm and -journal files are not counted. Every other file counts
with its size (e.g. output stored outside the database). Prints one number.
Standard library only.
"""
import os
import sqlite3
import sys

MAGIC = b"SQLite format 3\0"
SIDE = ("-wal", "-shm", "-journal")


def sqlite_bytes(path):
    uri = "file:" + path + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size
    finally:
        conn.close()


def main():
    if len(sys.argv) != 2:
        print("usage: state-size.py DIR", file=sys.stderr)
        return 2
    files = []
    for root, _, names in os.walk(sys.argv[1]):
        files += [os.path.join(root, n) for n in names]
    dbs = set()
    for f in files:
        try:
            with open(f, "rb") as fh:
                if fh.read(len(MAGIC)) == MAGIC:
                    dbs.add(f)
        except OSError:
            pass
    total = 0
    for f in files:
        if f in dbs:
            total += sqlite_bytes(f)
        elif any(f.endswith(s) and f[: -len(s)] in dbs for s in SIDE):
            continue
        else:
            try:
                total += os.path.getsize(f)
            except OSError:
                pass  # removed while walking
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
