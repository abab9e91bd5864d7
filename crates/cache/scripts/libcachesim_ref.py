#!/usr/bin/env python3
"""Reference hit ratios from libCacheSim (pip install libcachesim==0.3.5).

Reads the traces exported by the replay example
(`cargo run --release -p nearcache-cache --example replay -- --export DIR`): DIR/manifest.txt
lists `name<TAB>path<TAB>cap,cap,...`, each path a plain-text trace of one id per line. Runs
LRU, LFU, ARC, W-TinyLFU, S3-FIFO and SIEVE with default parameters and unit object sizes, and
prints a markdown table shaped like the replay tool's.

Usage: python3 libcachesim_ref.py DIR
"""
import sys

import libcachesim as lcs

POLICIES = [
    ("lru", lcs.LRU),
    ("lfu", lcs.LFU),
    ("arc", lcs.ARC),
    ("w-tinylfu", lcs.WTinyLFU),
    ("s3fifo", lcs.S3FIFO),
    ("sieve", lcs.Sieve),
]


def hit_ratio(cls, cap, path):
    if cls is lcs.S3FIFO and cap < 10:
        # libCacheSim 0.3.5 aborts the process when the 10% small queue rounds to 0 objects.
        return float("nan")
    reader = lcs.TraceReader(path, lcs.TraceType.PLAIN_TXT_TRACE)
    try:
        cache = cls(cap)
    except Exception as e:  # e.g. W-TinyLFU window < 1 object
        print(f"# {cls.__name__} @ {cap}: {e}", file=sys.stderr)
        return float("nan")
    req_miss, _byte_miss = cache.process_trace(reader)
    return 100.0 * (1.0 - req_miss)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    manifest = f"{sys.argv[1]}/manifest.txt"
    print("| trace @ capacity | " + " | ".join(n for n, _ in POLICIES) + " |")
    print("|---|" + "---:|" * len(POLICIES))
    with open(manifest) as f:
        for line in f:
            name, path, caps = line.rstrip("\n").split("\t")
            for cap in (int(c) for c in caps.split(",")):
                cells = [f"{hit_ratio(cls, cap, path):.2f}" for _, cls in POLICIES]
                print(f"| {name} @ {cap} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
