#!/usr/bin/env bash
# A Redis Cluster (3 masters, 3 replicas) read and written two ways side by side in one run:
# redis-benchmark --cluster straight at the nodes (a cluster-aware client) and redis-benchmark
# at nearcache --cluster (one endpoint). Prints a markdown table of requests/s and p50/p99 (ms)
# and the ratio of nearcache to direct, per command: GET hits (64-byte values, primed), GET with
# the cache off (a second nearcache with max_memory 0: routing alone), GET misses (a third
# nearcache with a small cache, keys random over a key space far larger than it holds, so nearly
# every GET is forwarded and filled; its hit ratio is printed), SET, MGET of 10 keys of
# one slot ({t} hash tag, which the direct client can send), and MGET of 10 keys over every
# node through nearcache only (a cluster-aware client cannot send it as one command). Then the
# master of one key is SIGKILLed, and a client of nearcache writes that key every 10 ms: the
# script prints how long writes failed (the cluster's failover, cluster-node-timeout 5 s, plus
# the proxy's refresh) and checks the value read back is the last one written.
#
# Environment:
#   CB_N           requests per run (default 100000)
#   CB_CLIENTS     connections (default 50)
#   CB_ROUNDS      rounds, alternating direct and nearcache (default 3; the median is printed)
#   CB_MISS_KEYS   key space of the GET miss row (default 1000000)
#   CB_MISS_MEMORY max_memory of the nearcache of that row (default 4mb)
#   SKIP_BUILD=1   use the existing release binary
# Numbers from a shared 2-core machine are noisy: compare the ratios, not the absolute rates.
set -euo pipefail

N=${CB_N:-100000}
CLIENTS=${CB_CLIENTS:-50}
ROUNDS=${CB_ROUNDS:-3}
KEYS=1000
MISS_KEYS=${CB_MISS_KEYS:-1000000}
MISS_MEMORY=${CB_MISS_MEMORY:-4mb}

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init cluster-bench
need_tools "scripts/deps.sh installs it" redis-server redis-benchmark redis-cli python3
nearcache_bin

# --- the cluster -------------------------------------------------------------------------
ports=() node_pids=()
for i in 1 2 3 4 5 6; do
    start_redis --cluster-enabled yes --cluster-port "$(free_port)" \
        --cluster-config-file "$work/nodes-$i.conf" --cluster-node-timeout 5000
    ports+=("$redis_port") node_pids+=("$redis_pid")
done
addrs=()
for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$work/create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $(tail -n 5 "$work/create.log")"
for _ in $(seq 1 300); do
    ok=1
    for p in "${ports[@]}"; do
        redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
done
[ "$ok" = 1 ] || die "the cluster did not reach cluster_state:ok"
# Every node must describe the same slots before redis-benchmark reads the map from one.
for _ in $(seq 1 300); do
    redis-cli --cluster check "${addrs[0]}" 2>/dev/null | grep -q 'All nodes agree' &&
        redis-cli -p "${ports[0]}" cluster slots | grep -c '^127' | grep -q . && break
    sleep 0.1
done
sleep 1

nc_upstream="${addrs[0]},${addrs[1]}"
spawn_nearcache nocache "$bin" --cluster --client-auth none --max-memory 0
nocache_port=$nc_port
spawn_nearcache small "$bin" --cluster --client-auth none --max-memory "$MISS_MEMORY"
small_port=$nc_port
spawn_nearcache nc "$bin" --cluster --client-auth none --max-memory 256mb

# Keys written through nearcache (it routes each to its node), spelled as redis-benchmark
# expands __rand_int__ (12 digits, zero-padded); then read twice so the cache holds them.
value=$(head -c 64 /dev/zero | tr '\0' x)
awk -v n="$KEYS" -v v="$value" 'BEGIN { for (i = 0; i < n; i++) {
        printf "SET m:%012d %s\r\nSET {t}:%012d %s\r\n", i, v, i, v } }' |
    redis-cli -p "$nc_port" --pipe >/dev/null
prime "$nc_port" m "$KEYS"
# The miss row's key space, x:0 .. x:MISS_KEYS-1, each written to its own master (split by
# slot here: through nearcache it would take a minute).
python3 - "$MISS_KEYS" "$value" "${ports[@]}" <<'PY' || die "writing the miss key space failed"
import binascii, subprocess, sys
n, value, ports = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

owner = {}
for port in ports:
    out = subprocess.run(["redis-cli", "-p", port, "cluster", "nodes"], capture_output=True,
                         text=True, check=True).stdout
    me = next(l.split() for l in out.splitlines() if "myself" in l)
    if "master" in me[2]:
        for r in me[8:]:
            if not r.startswith("["):
                lo, _, hi = r.partition("-")
                for slot in range(int(lo), int(hi or lo) + 1):
                    owner[slot] = port
per = {}
for i in range(n):
    key = "x:%012d" % i
    per.setdefault(owner[binascii.crc_hqx(key.encode(), 0) % 16384], []).append(
        "SET %s %s\r\n" % (key, value))
for port, cmds in per.items():
    subprocess.run(["redis-cli", "-p", port, "--pipe"], input="".join(cmds), text=True,
                   check=True, capture_output=True)
PY

# bench PORT CLUSTER(0|1) ARGS...: prints "rps p50 p99". Keys over $range (default $KEYS).
bench() {
    local port=$1 cluster=()
    [ "$2" = 1 ] && cluster=(--cluster)
    shift 2
    timeout 120 redis-benchmark "${cluster[@]}" -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$N" \
        -r "${range:-$KEYS}" --csv "$@" >"$work/bench.csv" 2>"$work/bench.err" ||
        die "redis-benchmark $*: $(tail -n 3 "$work/bench.err")"
    grep -q '"rps"' "$work/bench.csv" ||
        die "redis-benchmark $*: no figures: $(head -c 300 "$work/bench.csv") $(tail -n 3 "$work/bench.err")"
    python3 -c '
import csv, sys
# --cluster prints the masters before the CSV.
lines = sys.stdin.read().splitlines()
at = next((i for i, l in enumerate(lines) if l.startswith(chr(34) + "test")), len(lines))
rows = [r for r in csv.DictReader(lines[at:]) if r.get("rps")]
if not rows:
    sys.exit("no figures in: " + open(sys.argv[1]).read()[:500])
r = rows[-1]
print(r["rps"], r["p50_latency_ms"], r["p99_latency_ms"])' "$work/bench.csv" <"$work/bench.csv"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Keys: redis-benchmark --cluster needs `{tag}` in a key, which it replaces, for each request,
# with the hash tag of a random slot of the node it sends to (so every node gets keys); through
# nearcache the keys are plain and spread over the nodes by their own slots. With ~5,461 tags per
# node, most direct GETs name a key never written and get a nil: the direct GET rows are no
# dearer for it (a 64-byte value is one small write more).
d_mget="MGET" n_mget="MGET" n_mget_all="MGET"
for _ in $(seq 1 10); do
    d_mget+=" {tag}:__rand_int__"
    n_mget+=" {t}:__rand_int__"
    n_mget_all+=" m:__rand_int__"
done
# The direct key space, written once before it is read (as far as the tags allow, above).
bench "${ports[0]}" 1 SET 'm:{tag}:__rand_int__' "$value" >/dev/null
bench "${ports[0]}" 1 SET '{tag}:__rand_int__' "$value" >/dev/null

# row NAME NEARCACHE_PORT DIRECT_CMD NEARCACHE_CMD: redis-benchmark --cluster straight at the
# nodes against redis-benchmark at nearcache (commands as words separated by spaces).
row() {
    local name=$1 ncp=$2 d_cmd n_cmd
    read -r -a d_cmd <<<"$3"
    read -r -a n_cmd <<<"$4"
    local d_rps=() n_rps=() d_lat="" n_lat="" r a b
    for _ in $(seq 1 "$ROUNDS"); do
        read -r r a b < <(bench "${ports[0]}" 1 "${d_cmd[@]}")
        d_rps+=("$r") d_lat="$a/$b"
        read -r r a b < <(bench "$ncp" 0 "${n_cmd[@]}")
        n_rps+=("$r") n_lat="$a/$b"
    done
    local d n
    d=$(printf '%s\n' "${d_rps[@]}" | median)
    n=$(printf '%s\n' "${n_rps[@]}" | median)
    printf '| %s | %s | %s | %.2f | %s | %s |\n' "$name" "$d" "$n" \
        "$(python3 -c "print($n / $d)")" "$d_lat" "$n_lat"
}

echo "3 masters + 3 replicas, $CLIENTS clients, no pipelining, 64-byte values, $KEYS keys," \
    "median of $ROUNDS rounds (p50/p99 of the last)"
echo
echo '| command | direct (--cluster) rps | nearcache rps | ratio | direct p50/p99 ms | nearcache p50/p99 ms |'
echo '|---|---|---|---|---|---|'
row "GET hit" "$nc_port" "GET m:{tag}:__rand_int__" "GET m:__rand_int__"
row "GET, cache off" "$nocache_port" "GET m:{tag}:__rand_int__" "GET m:__rand_int__"
range=$MISS_KEYS row "GET miss" "$small_port" "GET x:{tag}:__rand_int__" "GET x:__rand_int__"
row "SET" "$nc_port" "SET m:{tag}:__rand_int__ $value" "SET m:__rand_int__ $value"
row "MGET 10 keys, one slot" "$nc_port" "$d_mget" "$n_mget"
read -r -a cmd <<<"$n_mget_all"
n_rps=()
for _ in $(seq 1 "$ROUNDS"); do
    read -r r a b < <(bench "$nc_port" 0 "${cmd[@]}")
    n_rps+=("$r")
done
printf '| MGET 10 keys over every node | n/a | %s | | | %s/%s |\n' \
    "$(printf '%s\n' "${n_rps[@]}" | median)" "$a" "$b"
info=$(redis-cli -p "$small_port" nearcache info | tr -d '\r')
hits=$(sed -n 's/^cache_hits://p' <<<"$info")
misses=$(sed -n 's/^cache_misses://p' <<<"$info")
echo
echo "GET miss: keys random over $MISS_KEYS, nearcache with max_memory $MISS_MEMORY; its hit" \
    "ratio over the row's rounds: $(python3 -c "print(round($hits / max(1, $hits + $misses), 3))")" \
    "($hits hits, $misses misses)"

# --- a master killed ---------------------------------------------------------------------
# Writes, not reads: a cached read could be answered from memory across the kill.
key=m:000000000000
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
start=$(date +%s%N)
kill -9 "${node_pids[$victim]}"
failed=0
while :; do
    got=$(redis-cli -p "$nc_port" SET "$key" "after-$failed" 2>&1 || true)
    [ "$got" = OK ] && break
    failed=$((failed + 1))
    [ $(($(date +%s%N) - start)) -gt 60000000000 ] && die "no write succeeded in 60 s (last: $got)"
    sleep 0.01
done
recovered=$((($(date +%s%N) - start) / 1000000))
got=$(redis-cli -p "$nc_port" GET "$key")
echo "Master of slot $slot SIGKILLed (cluster-node-timeout 5000 ms): the first write through" \
    "nearcache succeeded ${recovered} ms after the kill ($failed failed before it); read back: $got"
[ "$got" = "after-$failed" ] || die "nearcache served a value older than the last write"
