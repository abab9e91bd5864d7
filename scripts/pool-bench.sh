#!/usr/bin/env bash
# Measurements behind the pool's defaults (docs/pool.md):
#   A. forwarded SET throughput with 1, 2 and 4 shared connections per protocol (--upstream-conns)
#   B. a transaction on a fresh client session: reused idle connection vs a new one each time
#      (--max-idle-conns 8 vs 0)
#   C. GET latency across shared-connection rotations (--conn-max-lifetime 1s vs never)
# Everything runs against its own redis-server; nearcache is started afresh for each setting.
#
# Environment: POOL_N (requests per redis-benchmark run, default 200000), SKIP_BUILD=1.
set -euo pipefail

N=${POOL_N:-200000}
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init pool-bench
"$root/scripts/deps.sh"
nearcache_bin
start_redis

# bench ARGS...: prints "rps p50 p99 max" of one redis-benchmark test.
bench() {
    redis-benchmark -p "$nc_port" -n "$N" -r 1000 -d 64 --csv "$@" 2>/dev/null |
        tr -d '"' | awk -F, '$1 != "test" && NF >= 8 { printf "%s %s %s %s\n", $2, $5, $7, $8 }'
}

echo "## A. forwarded SET, 50 clients: shared connections per protocol"
printf "%-14s %-9s %12s %9s %9s\n" "upstream-conns" pipeline "requests/s" "p50 ms" "p99 ms"
for conns in 1 2 4; do
    start_nearcache --upstream-conns "$conns"
    for p in 1 16; do
        read -r rps p50 p99 _ < <(bench -t set -c 50 -P "$p")
        printf "%-14s %-9s %12s %9s %9s\n" "$conns" "$p" "$rps" "$p50" "$p99"
    done
done

echo
echo "## B. MULTI + EXEC on a new client connection, one after another (500 times)"
printf "%-15s %12s %12s\n" "max-idle-conns" "mean ms" "p99 ms"
for idle in 0 8; do
    start_nearcache --max-idle-conns "$idle"
    python3 - "$nc_port" <<'PY' | { read -r mean p99; printf "%-15s %12s %12s\n" "$idle" "$mean" "$p99"; }
import socket, sys, time
port = int(sys.argv[1])
def tx():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"MULTI\r\n")
    assert s.recv(64) == b"+OK\r\n"
    s.sendall(b"EXEC\r\n")
    assert s.recv(64) == b"*0\r\n"
    s.sendall(b"PING\r\n")  # gives the connection back
    assert s.recv(64) == b"+PONG\r\n"
    s.close()
for _ in range(20):
    tx()
times = []
for _ in range(500):
    t = time.perf_counter()
    tx()
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"{sum(times) / len(times):.3f} {times[int(len(times) * 0.99)]:.3f}")
PY
done

echo
echo "## C. GET (cache hits and misses, 50 clients) across rotations of the shared connections"
printf "%-18s %12s %9s %9s %9s\n" "conn-max-lifetime" "requests/s" "p50 ms" "p99 ms" "max ms"
for life in 0 1s; do
    start_nearcache --conn-max-lifetime "$life"
    read -r rps p50 p99 max < <(bench -t get -c 50 -P 1)
    printf "%-18s %12s %9s %9s %9s\n" "$life" "$rps" "$p50" "$p99" "$max"
done
