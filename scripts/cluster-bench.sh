#!/usr/bin/env bash
# Redis Cluster: nearcache with `--cluster` against redis-benchmark --cluster talking to the
# cluster directly, one machine, one run; then a master killed, and how long the proxy's
# clients see errors. Prints a markdown table (requests/s, p50, p99 in ms, ratio to direct)
# and the recovery figures.
#
# Starts 6 `redis-server --cluster-enabled yes` (3 masters, a replica each; cluster-node-timeout
# CLUSTER_NODE_TIMEOUT ms, default 2000, so that a failover takes seconds, not Redis's default
# 15 s), joins them with `redis-cli --cluster create`, and two nearcache instances on them:
#   nearcache        --max-memory 256mb: the hot set fits (GET hits, SET, MGET);
#   nearcache-small  --max-memory 4mb: GETs over 1M keys, nearly all misses.
# Release build first unless SKIP_BUILD=1. Everything started is stopped on exit.
#
# Tests (50 clients, 64-byte values, pipeline 1 and 16, each target in turn):
#   get-hit   GET over 1,000 preloaded keys (through the proxy: warmed first, so cache hits)
#   get-miss  GET over 1,000,000 keys that do not exist (null replies; through the small cache)
#   set       SET over the 1,000 keys
#   mget10    MGET of 10 random keys: through the proxy spread over every master (split per
#             slot, sent in parallel, merged); direct, 10 keys of one hash tag on the client's
#             node, which is what a client that does not split (redis-benchmark) can send
# Direct runs use keys with redis-benchmark's `{tag}`, which it replaces with a tag of the
# node each client talks to; proxied runs use plain keys, spread over the slots by CRC16.
#
# Environment: CLUSTER_BENCH_N (requests per run at pipeline 1, default 50000; 4x at 16),
# CLUSTER_BENCH_PIPELINES (default "1 16"), CLUSTER_NODE_TIMEOUT, SKIP_BUILD=1,
# NEARCACHE_BIN.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init cluster-bench
N=${CLUSTER_BENCH_N:-50000}
PIPELINES=${CLUSTER_BENCH_PIPELINES:-"1 16"}
NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT:-2000}
"$root/scripts/deps.sh"
nearcache_bin

# --- the cluster -------------------------------------------------------------------------
ports=() node_pids=()
for _ in 1 2 3 4 5 6; do
    port=$(free_port) bus=$(free_port)
    redis-server --port "$port" --cluster-port "$bus" --cluster-enabled yes \
        --cluster-config-file "$work/nodes-$port.conf" --cluster-node-timeout "$NODE_TIMEOUT" \
        --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$work" \
        --logfile "$work/redis-$port.log" &
    track $!
    ports+=("$port") node_pids+=($!)
done
for port in "${ports[@]}"; do
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
    done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 \
    --cluster-yes >"$work/create.log" 2>&1 || die "cluster create failed: $(tail "$work/create.log")"
cluster_ok() {
    local port
    for port in "$@"; do
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
    done
}
for _ in $(seq 1 600); do
    cluster_ok "${ports[@]}" && break
    sleep 0.05
done
cluster_ok "${ports[@]}" || die "the cluster did not reach cluster_state:ok"
seed=127.0.0.1:${ports[0]}
seeds=$(printf '127.0.0.1:%s,' "${ports[@]}")
seeds=${seeds%,}

nc_upstream=$seeds
spawn_nearcache nearcache "$bin" --cluster --client-auth none --max-memory 256mb
big=$nc_port big_pid=$nc_pid
spawn_nearcache nearcache-small "$bin" --cluster --client-auth none --max-memory 4mb
small=$nc_port

value=$(head -c 64 /dev/zero | tr '\0' v)
# Preload: the proxied runs' keys through the proxy, the direct runs' with --cluster.
redis-benchmark -p "$big" -n 20000 -r 1000 -c 20 -q SET 'key:__rand_int__' "$value" >/dev/null
redis-benchmark --cluster -p "${ports[0]}" -n 60000 -r 1000 -c 20 -q \
    SET 'key:{tag}:__rand_int__' "$value" >/dev/null

# bench PORT DIRECT(0|1) ARGS...: one redis-benchmark run; prints "rps p50 p99".
bench() {
    local port=$1 direct=$2 cluster=()
    shift 2
    [ "$direct" = 1 ] && cluster=(--cluster)
    redis-benchmark "${cluster[@]}" -h 127.0.0.1 -p "$port" --csv -c 50 "$@" \
        >"$work/bench.csv" 2>"$work/bench.err" || die "redis-benchmark $*: $(cat "$work/bench.err")"
    tr -d '"' <"$work/bench.csv" | awk -F, '$1 != "test" && NF >= 7 { print $2, $5, $7; exit }'
}

# args TEST DIRECT: the command of a test, with the key spelling of its target.
args() {
    local tag='' k
    [ "$2" = 1 ] && tag='{tag}:'
    case $1 in
        get-hit) echo "-r 1000 GET key:${tag}__rand_int__" ;;
        get-miss) echo "-r 1000000 GET miss:${tag}__rand_int__" ;;
        set) echo "-r 1000 SET key:${tag}__rand_int__ $value" ;;
        mget10)
            k="MGET"
            for _ in $(seq 1 10); do k="$k key:${tag}__rand_int__"; done
            echo "-r 1000 $k"
            ;;
    esac
}

echo "redis-benchmark, 50 clients, 64-byte values, $(nproc) cores; direct = redis-benchmark --cluster"
echo
echo "| test | pipeline | direct rps | nearcache rps | ratio | direct p50/p99 ms | nearcache p50/p99 ms |"
echo "|---|---:|---:|---:|---:|---|---|"
for test in get-hit get-miss set mget10; do
    for p in $PIPELINES; do
        n=$N
        [ "$p" -gt 1 ] && n=$((N * 4))
        proxy=$big
        [ "$test" = get-miss ] && proxy=$small
        # shellcheck disable=SC2046 # args prints a word list
        [ "$test" = get-hit ] || [ "$test" = mget10 ] &&
            bench "$proxy" 0 -n 5000 -P 16 $(args "$test" 0) >/dev/null # warm the cache
        # shellcheck disable=SC2046
        read -r drps dp50 dp99 <<<"$(bench "${ports[0]}" 1 -n "$n" -P "$p" $(args "$test" 1))"
        # shellcheck disable=SC2046
        read -r nrps np50 np99 <<<"$(bench "$proxy" 0 -n "$n" -P "$p" $(args "$test" 0))"
        ratio=$(awk -v a="$nrps" -v b="$drps" 'BEGIN { printf "%.2fx", a / b }')
        echo "| $test | $p | $drps | $nrps | $ratio | $dp50 / $dp99 | $np50 / $np99 |"
    done
done

# --- a master killed ---------------------------------------------------------------------
# The master of key:000000000000's slot is SIGKILLed. A client of the proxy then writes that
# key every 10 ms until a write succeeds: the time between is what clients see. Writes always
# reach a node; a cached read could be served from memory across the kill.
key=key:000000000000
slot=$(redis-cli -p "${ports[0]}" cluster keyslot "$key")
victim=""
for i in "${!ports[@]}"; do
    if redis-cli -p "${ports[$i]}" cluster nodes | grep -q 'myself,master' &&
        [ "$(redis-cli -p "${ports[$i]}" cluster countkeysinslot "$slot")" != 0 ]; then
        victim=$i
    fi
done
[ -n "$victim" ] || die "no master found for slot $slot"
echo
echo "Killing the master on port ${ports[$victim]} (slot $slot); cluster-node-timeout ${NODE_TIMEOUT} ms"
start=$(date +%s%N)
kill -9 "${node_pids[$victim]}"
failed=0
while :; do
    got=$(redis-cli -p "$big" SET "$key" "after-$failed" 2>&1 || true)
    [ "$got" = OK ] && break
    failed=$((failed + 1))
    [ $(($(date +%s%N) - start)) -gt 60000000000 ] && die "no write succeeded in 60 s (last: $got)"
    sleep 0.01
done
recovered=$((($(date +%s%N) - start) / 1000000))
got=$(redis-cli -p "$big" GET "$key")
echo "first write through the proxy to succeed: ${recovered} ms after the kill ($failed failed before it)"
echo "read back through the proxy: $got (expected after-$failed)"
[ "$got" = "after-$failed" ] || die "the proxy served a value older than the last write"
