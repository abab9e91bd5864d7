#!/usr/bin/env bash
# Soak test: a mixed read/write load with key churn against nearcache (64 MB cache cap by
# default) for a long time, sampling the proxy's resident memory, open descriptors, threads,
# tokio tasks and connections to a CSV; fails if any of them trends upward after warm-up.
#
#   scripts/soak.sh                         # 30 minutes
#   SOAK_SECONDS=120 scripts/soak.sh        # a quick run
#   scripts/soak.sh --check soak.csv [WARMUP] # the verdict on an earlier run's samples
#
# Environment:
#   SOAK_SECONDS    how long the load runs (default 1800)
#   SOAK_INTERVAL   seconds between samples (default 5)
#   SOAK_WARMUP     seconds ignored by the trend check (default: a fifth of the run, >= 30)
#   SOAK_MAX_MEMORY the cache cap (default 64mb)
#   SOAK_CSV        where the samples go (default soak-<date>.csv in the current directory)
#   SOAK_PROFILES   a directory for two heap profiles (/debug/pprof/heap), taken when warm-up
#                   ends and at the end, and `nearcache heap-diff` of them (default: none)
#   NEARCACHE_ARGS  extra flags for nearcache
#   SKIP_BUILD=1    use the existing target/release/nearcache
#
# The load: redis-benchmark GET/SET/INCR/LPUSH/LPOP/HSET/MGET over a million random keys with
# 512-byte values (~10x the cap, so the cache evicts all the time), one client set that
# reconnects for every request, and a loop of transactions and short blocking pops (dedicated
# upstream connections taken and given back).
set -euo pipefail

SECONDS_TOTAL=${SOAK_SECONDS:-1800}
INTERVAL=${SOAK_INTERVAL:-5}
WARMUP=${SOAK_WARMUP:-$((SECONDS_TOTAL / 5 > 30 ? SECONDS_TOTAL / 5 : 30))}
MAX_MEMORY=${SOAK_MAX_MEMORY:-64mb}
CSV=${SOAK_CSV:-$PWD/soak-$(date +%Y%m%d-%H%M%S).csv}

# verdict CSV WARMUP: compares each series' first and last third after warm-up.
verdict() {
    python3 - "$1" "$2" <<'PY'
import csv, sys

path, warmup = sys.argv[1], float(sys.argv[2])
rows = [r for r in csv.DictReader(open(path)) if float(r["elapsed_s"]) >= warmup]
if len(rows) < 8:
    sys.exit(f"too few samples after warm-up ({len(rows)}); run longer")
# What may grow, beyond noise, from the first third to the last third after warm-up.
tolerance = {
    "rss_kb": lambda base: max(0.10 * base, 8 * 1024),
    "fds": lambda base: 8,
    "threads": lambda base: 1,
    "tasks": lambda base: max(0.2 * base, 20),
    "upstream_open": lambda base: 4,
    "redis_clients": lambda base: 6,
}
third = len(rows) // 3
failed = False
print(f"{'series':<14} {'first third':>12} {'last third':>12} {'max':>10}  verdict")
for name, tol in tolerance.items():
    vals = [float(r[name]) for r in rows if r[name] not in ("", None)]
    if len(vals) < len(rows):
        print(f"{name:<14} {'-':>12} {'-':>12} {'-':>10}  not sampled")
        continue
    first = sum(vals[:third]) / third
    last = sum(vals[-third:]) / third
    grew = last - first > tol(first)
    failed |= grew
    print(f"{name:<14} {first:>12.1f} {last:>12.1f} {max(vals):>10.0f}  {'GROWS' if grew else 'flat'}")
sys.exit(1 if failed else 0)
PY
}

if [ "${1:-}" = "--check" ]; then
    # scripts/soak.sh --check FILE.csv [WARMUP]: only the verdict on earlier samples.
    verdict "$2" "${3:-$WARMUP}"
    exit
fi

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init soak
"$root/scripts/deps.sh"
need_tools "" redis-server redis-benchmark redis-cli python3 curl
nearcache_bin
start_redis
# shellcheck disable=SC2086
start_nearcache --max-memory "$MAX_MEMORY" ${NEARCACHE_ARGS:-}
admin=$nc_admin

# --- load ------------------------------------------------------------------------------------
bench() {
    redis-benchmark -h 127.0.0.1 -p "$nc_port" -l -q "$@" >/dev/null 2>>"$work/bench.err" &
    track "$!"
}
bench -c 20 -r 1000000 -d 512 -t get,set,incr,lpush,lpop,hset,mset -n 1000000000
bench -c 10 -r 1000000 -d 512 -t get -n 1000000000 -P 8
# A client set that opens a new connection for every request.
bench -c 4 -r 1000000 -d 64 -k 0 -t get,set -n 1000000000
(
    while :; do
        printf 'MULTI\nINCR soak:tx\nSET soak:last %s\nEXEC\nBLPOP soak:empty 0.05\n' "$RANDOM" |
            redis-cli -p "$nc_port" >/dev/null 2>&1 || true
    done
) &
track "$!"

# --- samples ---------------------------------------------------------------------------------
metric() {
    awk -v n="$1" '$1 == n { print $2; exit }' "$work/metrics.txt"
}
echo "elapsed_s,rss_kb,fds,threads,tasks,clients,upstream_open,redis_clients,cache_bytes" >"$CSV"
echo "soaking for ${SECONDS_TOTAL}s (warm-up ${WARMUP}s), samples every ${INTERVAL}s -> $CSV" >&2
heap_profile() {
    [ -n "${SOAK_PROFILES:-}" ] || return 0
    mkdir -p "$SOAK_PROFILES"
    curl -fsS "http://$admin/debug/pprof/heap" -o "$SOAK_PROFILES/heap-$1.pb.gz" ||
        echo "soak.sh: no heap profile from /debug/pprof/heap" >&2
}
start=$(date +%s)
profiled=0
while :; do
    now=$(date +%s)
    elapsed=$((now - start))
    [ "$elapsed" -le "$SECONDS_TOTAL" ] || break
    kill -0 "$nc_pid" 2>/dev/null || die "nearcache exited: $(tail -n 20 "$work/nc.err")"
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$nc_pid/status")
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$nc_pid/status")
    fds=$(find "/proc/$nc_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    curl -fsS "http://$admin/metrics" >"$work/metrics.txt" 2>/dev/null || : >"$work/metrics.txt"
    tasks=$(metric nearcache_runtime_alive_tasks)
    clients=$(metric nearcache_connected_clients)
    upstream=$(metric nearcache_pool_open_connections)
    cache_bytes=$(metric nearcache_cache_bytes)
    redis_clients=$(redis-cli -p "$redis_port" info clients 2>/dev/null |
        awk -F: '/^connected_clients:/ { print $2 + 0 }')
    echo "$elapsed,$rss,$fds,$threads,${tasks:-},${clients:-},${upstream:-},${redis_clients:-},${cache_bytes:-}" >>"$CSV"
    if [ "$profiled" = 0 ] && [ "$elapsed" -ge "$WARMUP" ]; then
        heap_profile warm
        profiled=1
    fi
    sleep "$INTERVAL"
done
heap_profile end
if [ -s "${SOAK_PROFILES:-/nonexistent}/heap-warm.pb.gz" ] && [ -s "$SOAK_PROFILES/heap-end.pb.gz" ]; then
    "$bin" heap-diff "$SOAK_PROFILES/heap-warm.pb.gz" "$SOAK_PROFILES/heap-end.pb.gz" \
        >"$SOAK_PROFILES/heap-diff.txt" 2>&1 || true
    echo "heap diff (warm-up end -> end): $SOAK_PROFILES/heap-diff.txt" >&2
fi

# --- verdict ---------------------------------------------------------------------------------
verdict "$CSV" "$WARMUP"
