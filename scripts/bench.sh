#!/usr/bin/env bash
# Throughput comparison: Redis direct vs nearcache vs twemproxy (nutcracker), all on this box.
#
# Starts its own redis-server (free port), a release build of nearcache in front of it and
# nutcracker in front of it, then runs redis-benchmark -t get,set (-c 50, -r 1000 keys,
# -d 64 byte values) with -P 1 and -P 16 against each and prints requests/s and the ratio to
# direct. Everything it starts is stopped on exit.
#
# Environment:
#   BENCH_N        requests per redis-benchmark run (default 100000)
#   BENCH_CLIENTS  parallel connections (default 50)
#   BENCH_PIPELINES  pipeline depths to try (default "1 16")
#   BENCH_TARGETS  subset of "direct nearcache twemproxy" (default all three)
#   NEARCACHE_ARGS extra flags for nearcache (e.g. "--threads 1")
#   SKIP_BUILD=1   use the existing target/release/nearcache
#
# Numbers from a shared 2-core machine are noisy: the benchmark client, Redis and the proxy
# compete for the same cores. Compare ratios from the same run, not absolute rates.
set -euo pipefail

N=${BENCH_N:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINES=${BENCH_PIPELINES:-"1 16"}
TARGETS=${BENCH_TARGETS:-"direct nearcache twemproxy"}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nearcache-bench.XXXXXX")
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench.sh: $*" >&2
    exit 1
}

for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ping PORT NAME: polls PING until it answers PONG (bounded).
wait_ping() {
    local port=$1 name=$2 i
    for i in $(seq 1 200); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        sleep 0.05
    done
    die "$name on port $port did not answer PING"
}

# --- build -------------------------------------------------------------------------------
bin="${CARGO_TARGET_DIR:-$root/target}/release/nearcache"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "building nearcache (release)..." >&2
    (cd "$root" && cargo build --release -p nearcache >&2)
fi
[ -x "$bin" ] || die "no binary at $bin"

# --- redis -------------------------------------------------------------------------------
redis_port=""
for _ in 1 2 3 4 5; do
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$work" --logfile "$work/redis.log" &
    pid=$!
    pids+=("$pid")
    ok=0
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            ok=1
            break
        fi
        sleep 0.05
    done
    if [ "$ok" = 1 ]; then
        redis_port=$port
        break
    fi
done
[ -n "$redis_port" ] || die "could not start redis-server (see $work/redis.log)"

declare -A port_of
port_of[direct]=$redis_port

# --- nearcache -----------------------------------------------------------------------------
if [[ " $TARGETS " == *" nearcache "* ]]; then
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:0 --upstream "127.0.0.1:$redis_port" --no-admin \
        ${NEARCACHE_ARGS:-} >"$work/nearcache.out" 2>"$work/nearcache.err" &
    pids+=("$!")
    nc_port=""
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$work/nearcache.out" 2>/dev/null || true)
        if [[ "$line" =~ listen=127\.0\.0\.1:([0-9]+) ]]; then
            nc_port=${BASH_REMATCH[1]}
            break
        fi
        sleep 0.05
    done
    [ -n "$nc_port" ] || die "nearcache did not print its ready line: $(cat "$work/nearcache.err")"
    wait_ping "$nc_port" nearcache
    port_of[nearcache]=$nc_port
fi

# --- twemproxy -----------------------------------------------------------------------------
if [[ " $TARGETS " == *" twemproxy "* ]]; then
    if ! command -v nutcracker >/dev/null && [ -x "$root/scripts/deps.sh" ]; then
        "$root/scripts/deps.sh" nutcracker:nutcracker >&2 || true
    fi
    command -v nutcracker >/dev/null || die "nutcracker not found (apt-get install nutcracker)"
    tw_port=$(free_port)
    stats_port=$(free_port)
    cat >"$work/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$tw_port
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  timeout: 5000
  servers:
   - 127.0.0.1:$redis_port:1
EOF
    nutcracker -c "$work/nutcracker.yml" -a 127.0.0.1 -s "$stats_port" \
        -o "$work/nutcracker.log" &
    pids+=("$!")
    wait_ping "$tw_port" nutcracker
    port_of[twemproxy]=$tw_port
fi

# --- runs ----------------------------------------------------------------------------------
results="$work/results.csv"
: >"$results"
for p in $PIPELINES; do
    for target in $TARGETS; do
        port=${port_of[$target]:-}
        [ -n "$port" ] || continue
        echo "redis-benchmark -t get,set -n $N -c $CLIENTS -P $p -r 1000 -d 64 -> $target ($port)" >&2
        # In the background + wait, so a signal interrupts us (and the trap stops it) at once.
        redis-benchmark -h 127.0.0.1 -p "$port" -t get,set -n "$N" -c "$CLIENTS" \
            -P "$p" -r 1000 -d 64 --csv >"$work/bench.out" 2>"$work/bench.err" &
        bench_pid=$!
        pids+=("$bench_pid")
        wait "$bench_pid" ||
            die "redis-benchmark against $target failed: $(cat "$work/bench.err")"
        unset 'pids[-1]'
        out=$(cat "$work/bench.out")
        # "SET","123.45",... -> SET,P,target,123.45
        echo "$out" | tr -d '"' | awk -F, -v p="$p" -v t="$target" \
            '$1 != "test" && NF > 1 { print $1 "," p "," t "," $2 }' >>"$results"
    done
done

# --- table ---------------------------------------------------------------------------------
echo
echo "redis-benchmark: -n $N -c $CLIENTS -r 1000 -d 64 ($(nproc) cores, shared)"
awk -F, '
    { rps[$1 "," $2 "," $3] = $4; if (!seen[$1 "," $2]++) order[++n] = $1 "," $2; tg[$3] = 1 }
    END {
        printf "%-6s %8s %-10s %14s %9s\n", "test", "pipeline", "target", "requests/s", "vs direct"
        split("direct nearcache twemproxy", ts, " ")
        for (i = 1; i <= n; i++) {
            split(order[i], k, ",")
            base = rps[order[i] ",direct"]
            for (j = 1; j <= 3; j++) {
                key = order[i] "," ts[j]
                if (!(key in rps)) continue
                ratio = (base > 0) ? sprintf("%.2f", rps[key] / base) : "-"
                printf "%-6s %8s %-10s %14.0f %9s\n", k[1], k[2], ts[j], rps[key], ratio
            }
        }
    }' "$results"
