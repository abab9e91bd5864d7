#!/usr/bin/env bash
# What a byte budget buys with each eviction policy: the proxy in front of Redis with a small
# cache, GETs spread uniformly over far more keys than fit (64-byte values), so the hit ratio is
# about the share of keys the cache holds and the policies differ mainly by the bytes an entry
# costs them (its metadata, and the structures they keep beyond it). For each policy it prints
# the entries resident, the bytes charged per entry and the hit ratio of the measured run.
#
#   scripts/budget.sh [POLICY...]    default: every policy
#
# Environment: SKIP_BUILD=1 uses the existing release build, NEARCACHE_BIN another binary;
# MAX_MEMORY (16mb), KEYS (200000), WARM (400000) and N (100000) GETs at pipeline 16 from 50
# clients.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init budget
need_tools "apt-get install redis-server redis-tools curl" redis-server redis-benchmark redis-cli curl
[ $# -gt 0 ] || set -- adaptive w-tinylfu s3fifo sieve lru lfu
MAX_MEMORY=${MAX_MEMORY:-16mb}
KEYS=${KEYS:-200000}
nearcache_bin
start_redis
populate m "$KEYS" "$(head -c 64 /dev/zero | tr '\0' v)"

# metric NAME: the value of an unlabelled metric on the proxy's /metrics.
metric() {
    curl -s "http://$nc_admin/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}
bench() {
    redis-benchmark -p "$nc_port" -c 50 -P 16 -r "$KEYS" -n "$1" GET 'm:__rand_int__' >/dev/null
}

printf '| policy | entries | bytes charged per entry | hit ratio |\n|---|---:|---:|---:|\n'
for policy in "$@"; do
    start_nearcache --max-memory "$MAX_MEMORY" --eviction "$policy"
    bench "${WARM:-400000}"
    h0=$(metric nearcache_cache_hits_total) m0=$(metric nearcache_cache_misses_total)
    bench "${N:-100000}"
    h1=$(metric nearcache_cache_hits_total) m1=$(metric nearcache_cache_misses_total)
    entries=$(metric nearcache_cache_entries) bytes=$(metric nearcache_cache_bytes)
    awk -v p="$policy" -v e="$entries" -v b="$bytes" -v h=$((h1 - h0)) -v m=$((m1 - m0)) \
        'BEGIN { printf "| %s | %d | %.0f | %.3f |\n", p, e, b / e, h / (h + m) }'
done
