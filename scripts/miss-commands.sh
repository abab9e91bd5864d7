#!/usr/bin/env bash
# What a miss costs Redis: random GETs over more keys than the cache holds, through nearcache,
# counting the commands Redis ran (INFO commandstats) per client request. Each miss sends the
# read and, unless the key is known to have no expiry since an earlier read (docs/
# architecture.md, TTL), a PTTL. Counts, not timings: the same on a busy machine.
#   scripts/miss-commands.sh                     # this tree's release build
#   NEARCACHE_BIN=/path/to/old scripts/miss-commands.sh   # another build, to compare
# Environment: MISS_KEYS (default 50000), MISS_N requests (default 200000), MISS_MEMORY
# (default 2mb), MISS_VALUE bytes (default 64), SKIP_BUILD=1.
set -euo pipefail
KEYS=${MISS_KEYS:-50000}
N=${MISS_N:-200000}
MEMORY=${MISS_MEMORY:-2mb}
VALUE=${MISS_VALUE:-64}

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init miss-commands
need_tools "scripts/deps.sh installs it" redis-server redis-benchmark redis-cli python3
nearcache_bin
start_redis
populate k "$KEYS" "$(head -c "$VALUE" /dev/zero | tr '\0' v)"
start_nearcache --max-memory "$MEMORY"
calls() {
    redis-cli -p "$redis_port" info commandstats |
        sed -n "s/^cmdstat_$1:calls=\([0-9]*\).*/\1/p" | tr -d '\r' | grep . || echo 0
}
redis-cli -p "$redis_port" config resetstat >/dev/null
redis-benchmark -p "$nc_port" -c 50 -n "$N" -r "$KEYS" -t get -q \
    GET k:__rand_int__ >/dev/null
get=$(calls get)
pttl=$(calls pttl)
skipped=$(redis-cli -p "$nc_port" nearcache info | tr -d '\r' | sed -n 's/^pttl_skipped://p')
hits=$(redis-cli -p "$nc_port" nearcache info | tr -d '\r' | sed -n 's/^cache_hits://p')
awk -v n="$N" -v g="$get" -v p="$pttl" -v s="${skipped:-0}" -v h="$hits" 'BEGIN {
    printf "| requests | cache hits | GETs to Redis | PTTLs to Redis | PTTLs skipped | Redis commands per miss |\n"
    printf "|---:|---:|---:|---:|---:|---:|\n"
    printf "| %d | %d | %d | %d | %d | %.2f |\n", n, h, g, p, s, (g + p) / (g > 0 ? g : 1)
}'
