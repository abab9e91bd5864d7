#!/usr/bin/env bash
# How busy redis-benchmark itself is: at pipeline 1 it may be what limits the requests per
# second, for Redis alone and through the proxy alike. For GET hits on 1,000 hot keys (64-byte
# values, 50 clients), direct and through nearcache in turns, it prints the requests/s, the
# benchmark's CPU time per request and its share of one core over the run, and the server's
# CPU per request (Redis for direct, the proxy otherwise).
#
#   scripts/client-cpu.sh [NEARCACHE ARGS...]    e.g. --threads 1
#
# Environment: SKIP_BUILD=1 uses the existing release build; ROUNDS (3), N (500000), P (1).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init client-cpu
need_tools "apt-get install redis-server redis-tools" redis-server redis-benchmark redis-cli
nearcache_bin
start_redis
start_nearcache --max-memory 256mb "$@"
value=$(head -c 64 /dev/zero | tr '\0' v)
populate h 1000 "$value"
prime "$nc_port" h 1000
N=${N:-500000}
ticks=$(getconf CLK_TCK)
# User + system CPU of a process, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
printf '%-7s %10s %16s %12s %17s\n' target requests/s "bench µs/req" "bench share" "server µs/req"
for _ in $(seq 1 "${ROUNDS:-3}"); do
    for target in direct proxy; do
        if [ "$target" = direct ]; then port=$redis_port server=$redis_pid; else port=$nc_port server=$nc_pid; fi
        s0=$(cpu "$server")
        t0=$(date +%s%N)
        # Bash's `time` gives the benchmark's own user and system CPU seconds.
        TIMEFORMAT='%U %S'
        { time redis-benchmark -p "$port" -c 50 -P "${P:-1}" -r 1000 -n "$N" --csv \
            GET 'h:__rand_int__' >"$work/bench.csv" 2>/dev/null; } 2>"$work/time"
        t1=$(date +%s%N)
        s1=$(cpu "$server")
        read -r user sys <"$work/time"
        rps=$(tail -1 "$work/bench.csv" | cut -d, -f2 | tr -d '"')
        python3 - "$target" "$rps" "$user" "$sys" "$ticks" "$N" "$t0" "$t1" "$s0" "$s1" <<'EOF'
import sys
target, rps, user, sys_s, ticks, n, t0, t1, s0, s1 = sys.argv[1:]
ticks, n = int(ticks), int(n)
bench_s = float(user) + float(sys_s)
elapsed = (int(t1) - int(t0)) / 1e9
server_s = (int(s1) - int(s0)) / ticks
print("%-7s %10.0f %16.2f %11.1f%% %17.2f" % (
    target, float(rps), bench_s * 1e6 / n, 100 * bench_s / elapsed, server_s * 1e6 / n))
EOF
    done
done
