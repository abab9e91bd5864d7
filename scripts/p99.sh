#!/usr/bin/env bash
# Tail latency of cache hits against Redis direct, in paired rounds: GET on 1,000 hot keys
# (64-byte values, 50 clients, pipeline 1), direct, through nearcache with `--threads 1` and
# through nearcache with its default workers, one after the other in each round. Prints
# requests/s, p50, p99 and max (ms, from redis-benchmark) per target and round.
#
#   scripts/p99.sh [ROUNDS]    default 3
#
# Environment: SKIP_BUILD=1 uses the existing release build, NEARCACHE_BIN another binary;
# N (200000) requests per run; PIN=1 pins redis-benchmark to CPU 0 and the servers to CPU 1
# (taskset), so that the client never competes with the server it measures.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init p99
need_tools "apt-get install redis-server redis-tools" redis-server redis-benchmark redis-cli
nearcache_bin
start_redis
populate h 1000 "$(head -c 64 /dev/zero | tr '\0' v)"
spawn_nearcache one "$bin" --max-memory 256mb --threads 1
one_port=$nc_port one_pid=$nc_pid
spawn_nearcache default "$bin" --max-memory 256mb
default_port=$nc_port default_pid=$nc_pid
prime "$one_port" h 1000
prime "$default_port" h 1000
client=()
if [ "${PIN:-0}" = 1 ]; then
    command -v taskset >/dev/null || die "taskset not found (apt-get install util-linux)"
    for pid in "$redis_pid" "$one_pid" "$default_pid"; do taskset -apc 1 "$pid" >/dev/null; done
    client=(taskset -c 0)
fi

# run PORT: "rps p50 p99 max" of one redis-benchmark run.
run() {
    "${client[@]}" redis-benchmark -p "$1" -c 50 -P 1 -r 1000 -n "${N:-200000}" --csv \
        GET 'h:__rand_int__' 2>/dev/null | tail -n 1 | tr -d '"' |
        awk -F, '{ printf "%.0f %s %s %s\n", $2, $5, $7, $8 }'
}

printf '| round | target | requests/s | p50 ms | p99 ms | max ms |\n|---:|---|---:|---:|---:|---:|\n'
for round in $(seq 1 "${1:-3}"); do
    for target in direct threads-1 default; do
        case $target in
            direct) port=$redis_port ;;
            threads-1) port=$one_port ;;
            default) port=$default_port ;;
        esac
        read -r rps p50 p99 max < <(run "$port")
        printf '| %s | %s | %s | %s | %s | %s |\n' "$round" "$target" "$rps" "$p50" "$p99" "$max"
    done
done
