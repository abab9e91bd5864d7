#!/usr/bin/env bash
# Compares the two tracking modes side by side, each with its own Redis and nearcache:
#   default: Redis remembers every key each proxy connection read (REDIRECT to one connection);
#   bcast:   the proxy subscribes to every change under a prefix ("key:").
# For each it prints: Redis's tracking-table size after the proxy read R distinct keys, the
# invalidation messages the proxy received while a writer (straight to Redis) set W random keys
# of a keyspace of K, and GET requests/s on a hot set of 1000 keys through the proxy.
# Uses the release binary (built if missing unless SKIP_BUILD=1). Stops everything on exit.
set -euo pipefail
R=${READS:-20000}
W=${WRITES:-100000}
K=${KEYSPACE:-1000000}
N=${BENCH_N:-100000}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/deps.sh"
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p nearcache --manifest-path "$root/Cargo.toml" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/nearcache-modes.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() { # sets $rport
    local port; port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
        --logfile "$work/redis-$port.log" >/dev/null &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    rport=$port
}

start_proxy() { # upstream port, extra args...; sets $listen and $admin
    local up=$1; shift
    local out="$work/nc-$up.out"
    "$root/target/release/nearcache" --listen 127.0.0.1:0 --upstream "127.0.0.1:$up" \
        --admin-listen 127.0.0.1:0 "$@" >"$out" 2>"$work/nc-$up.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q ready "$out" 2>/dev/null && break; sleep 0.05; done
    listen=$(sed -n 's/.*listen=\([^ ]*\) .*/\1/p' "$out")
    admin=$(sed -n 's/.* admin=\(.*\)/\1/p' "$out")
}

metric() { # admin addr, name
    curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

printf '%-8s %14s %14s %16s %12s\n' mode tracked_keys tracked_pfx invalidations get_rps
for mode in default bcast; do
    start_redis
    if [ "$mode" = bcast ]; then extra=(--tracking bcast --tracking-prefixes key:); else extra=(--tracking default); fi
    start_proxy "$rport" "${extra[@]}"
    pport=${listen##*:}
    redis-benchmark -p "$rport" -t set -n "$K" -r "$K" -d 16 -q >/dev/null 2>&1 || true
    # Let tracking come up, then read R distinct keys through the proxy.
    sleep 0.5
    redis-benchmark -p "$pport" -t get -n "$R" -r "$K" -c 20 -q >/dev/null 2>&1
    keys=$(redis-cli -p "$rport" info stats | awk -F: '/^tracking_total_keys/ { print $2 }' | tr -d '\r')
    pfx=$(redis-cli -p "$rport" info stats | awk -F: '/^tracking_total_prefixes/ { print $2 }' | tr -d '\r')
    before=$(metric "$admin" nearcache_invalidations_total)
    redis-benchmark -p "$rport" -t set -n "$W" -r "$K" -d 16 -q >/dev/null 2>&1
    sleep 0.5
    after=$(metric "$admin" nearcache_invalidations_total)
    rps=$(redis-benchmark -p "$pport" -t get -n "$N" -r 1000 -c 50 --csv 2>/dev/null | awk -F'"' '/"GET"/ { print $4 }')
    printf '%-8s %14s %14s %16s %12s\n' "$mode" "$keys" "$pfx" "$((${after%.*} - ${before%.*}))" "$rps"
done
