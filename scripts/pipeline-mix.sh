#!/usr/bin/env bash
# Hits and offload under pipelined mixed traffic: redis-py clients send pipelines of GET, MGET,
# SET and DEL over a Zipf-skewed keyspace through a small LRU cache, and the proxy's own
# metrics say how many reads its cache served. Run on two builds to compare them.
#
#   scripts/pipeline-mix.sh [BIN...]   default: the release build (built unless SKIP_BUILD=1)
#
# For each binary: a fresh Redis and proxy (--max-memory 1mb --eviction lru), one warm-up run,
# then the measured run pipelined (50 commands a pipeline) and one sent a command at a time.
# A binary built before bypasses were counted shows 0 bypasses: its reads are then
# hits + misses of the same run's command counts. Environment: MIX_ARGS (more arguments for
# pipeline_mix.py, e.g. "--clients 8 --zipf 0.8").
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init pipeline-mix
need_tools "" redis-server redis-cli python3
python3 -c 'import redis' 2>/dev/null || die "redis-py not found (pip install redis)"
if [ $# -eq 0 ]; then
    nearcache_bin
    set -- "$bin"
fi
drive="$root/scripts/pipeline_mix.py"
read -r -a extra <<<"${MIX_ARGS:-}"
for exe in "$@"; do
    start_redis
    spawn_nearcache mix "$exe" --max-memory 1mb --eviction lru
    python3 "$drive" "$nc_port" "$nc_admin" --seed 7 "${extra[@]}" >/dev/null
    echo "$exe pipelined: $(python3 "$drive" "$nc_port" "$nc_admin" "${extra[@]}")"
    echo "$exe one at a time: $(python3 "$drive" "$nc_port" "$nc_admin" --size 1 "${extra[@]}")"
    kill "$nc_pid" "$redis_pid" 2>/dev/null || true
    wait "$nc_pid" "$redis_pid" 2>/dev/null || true
done
