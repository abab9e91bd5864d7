#!/usr/bin/env python3
"""Drives pipelined mixed traffic through a nearcache and prints what its cache served.

Each client sends pipelines (redis-py, no MULTI) of mixed commands over a Zipf-skewed keyspace:
GET, MGET of 3 keys, SET and DEL. Before and after, it reads the proxy's /metrics and prints
one JSON line: the reads sent (a key of an MGET counting as one, as the proxy counts them),
the proxy's hits, misses and bypasses by reason, the hit ratio (hits / lookups) and the offload
(hits / reads sent, which also holds for a build that does not count bypasses).

    pipeline_mix.py PORT ADMIN_HOST:PORT [--clients 4] [--pipelines 500] [--size 50]
                    [--keys 5000] [--zipf 1.0] [--seed 1]

--size 1 sends the same commands one at a time.
"""

import argparse
import bisect
import itertools
import json
import random
import threading
import urllib.request

import redis

# The mix: (command, share). Reads are GET and MGET.
MIX = [("GET", 0.60), ("MGET", 0.10), ("SET", 0.25), ("DEL", 0.05)]
REASONS = ["write_in_flight", "transaction", "dedicated", "too_large", "not_cacheable"]


def metrics(admin):
    body = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def figures(m):
    f = {
        "hits": m.get("nearcache_cache_hits_total", 0),
        "misses": m.get("nearcache_cache_misses_total", 0),
    }
    for r in REASONS:
        f[r] = m.get(f'nearcache_cache_bypass_total{{reason="{r}"}}', 0)
    return f


def client(port, n_pipelines, size, cum, seed, sent):
    rng = random.Random(seed)
    reads = 0
    r = redis.Redis(port=port)
    names, shares = zip(*MIX)
    cmd_cum = list(itertools.accumulate(shares))

    def key():
        return f"k:{bisect.bisect_left(cum, rng.random() * cum[-1])}"

    for _ in range(n_pipelines):
        p = r.pipeline(transaction=False)
        for _ in range(size):
            cmd = names[bisect.bisect_left(cmd_cum, rng.random() * cmd_cum[-1])]
            if cmd == "GET":
                p.get(key())
                reads += 1
            elif cmd == "MGET":
                p.mget([key(), key(), key()])
                reads += 3
            elif cmd == "SET":
                p.set(key(), "v" * rng.randint(8, 64))
            else:
                p.delete(key())
        p.execute()
    sent.append(reads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("admin")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--pipelines", type=int, default=500)
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--keys", type=int, default=5000)
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    weights = [1 / (i + 1) ** a.zipf for i in range(a.keys)]
    cum = list(itertools.accumulate(weights))
    # Each client sends the same number of commands whatever the pipeline size.
    n_pipelines = a.pipelines * 50 // a.size
    before = figures(metrics(a.admin))
    sent = []
    threads = [
        threading.Thread(target=client, args=(a.port, n_pipelines, a.size, cum, a.seed * 100 + i, sent))
        for i in range(a.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = figures(metrics(a.admin))
    d = {k: int(after[k] - before[k]) for k in after}
    reads = sum(sent)
    lookups = d["hits"] + d["misses"]
    d.update(
        reads=reads,
        bypassed=sum(d[r] for r in REASONS),
        hit_ratio=round(d["hits"] / lookups, 3) if lookups else None,
        offload=round(d["hits"] / reads, 3) if reads else None,
    )
    print(json.dumps(d))


if __name__ == "__main__":
    main()
