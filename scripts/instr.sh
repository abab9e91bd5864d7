#!/usr/bin/env bash
# Instructions the proxy executes per request, counted by valgrind's callgrind: a figure that
# does not drift with the machine's load, for comparing builds (what perf.sh's CPU columns do
# with more noise). Counts user space only: the kernel's share (socket reads and writes, about
# 60% of a hit's time) is not in it.
#
#   scripts/instr.sh [BIN...]      default: the release build (built unless SKIP_BUILD=1)
#
# For each binary and case it starts Redis and the binary under callgrind (instrumentation
# off), warms the cache through the proxy, switches instrumentation on, drives N requests with
# redis-benchmark (50 clients), dumps, and prints instructions / N. The count includes the
# benchmark's 50 connections being accepted, a few percent of the smallest figures.
#
# Cases: get, mget (hits on 1,000 hot keys, 256 MB cache), set, miss (300k keys through a 4 MB
# cache: nearly all misses, shards too small for adaptive's shadows), full (uniform GETs over
# 200k keys through a 16 MB cache that holds about 40% of them: evicting, shadows running).
# Environment: INSTR_CASES (default "get:1 get:16 mget:1 set:1 miss:16"), INSTR_N (20000),
# INSTR_VALUE (bytes per value, default 64),
# INSTR_ARGS (more flags for every binary, e.g. "--eviction sieve"), INSTR_KEEP (a directory
# that receives each run's callgrind output as BIN-CASE-P.out, for callgrind_annotate).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init instr
need_tools "apt-get install valgrind redis-server redis-tools" valgrind callgrind_control redis-server redis-benchmark redis-cli
CASES=${INSTR_CASES:-"get:1 get:16 mget:1 set:1 miss:16"}
N=${INSTR_N:-20000}
if [ $# -eq 0 ]; then
    nearcache_bin
    set -- "$bin"
fi
for exe in "$@"; do
    [ -x "$exe" ] || die "no executable at $exe"
done

value=$(head -c "${INSTR_VALUE:-64}" /dev/zero | tr '\0' v)
hot_args() {
    case $1 in
        get) echo "GET h:__rand_int__" ;;
        set) echo "SET h:__rand_int__ $value" ;;
        mget) echo "MGET$(printf ' h:__rand_int__%.0s' $(seq 1 10))" ;;
        miss | full) echo "GET m:__rand_int__" ;;
    esac
}

# count BIN TEST PIPELINE: prints instructions per request
count() {
    local exe=$1 test=$2 p=$3 out="$work/cg.out" port admin vg max=256mb keys=1000 warm=2000 ir
    [ "$test" = miss ] && max=4mb keys=300000
    [ "$test" = full ] && max=16mb keys=200000 warm=400000
    start_redis
    port=$(free_port) admin=$(free_port)
    rm -f "$out"*
    # shellcheck disable=SC2086 # INSTR_ARGS is a list of flags
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$exe" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --upstream "127.0.0.1:$redis_port" --max-memory "$max" ${INSTR_ARGS:-} >"$work/vg.log" 2>&1 &
    vg=$!
    track "$vg"
    wait_ping "$port" "$(basename "$exe") under callgrind"
    if [ "$test" = miss ] || [ "$test" = full ]; then
        populate m "$keys" "$value"
    else
        populate h "$keys" "$value"
        prime "$port" h 1000
    fi
    # shellcheck disable=SC2046
    redis-benchmark -p "$port" -c 50 -P "$p" -r "$keys" -n "$warm" $(hot_args "$test") >/dev/null
    callgrind_control -i on "$vg" >/dev/null 2>&1
    # shellcheck disable=SC2046
    redis-benchmark -p "$port" -c 50 -P "$p" -r "$keys" -n "$N" $(hot_args "$test") >/dev/null
    callgrind_control -d "$vg" >/dev/null 2>&1
    for _ in $(seq 1 100); do
        ir=$(cat "$out".* 2>/dev/null | awk '/^(summary|totals):/ { if ($2 > m) m = $2 } END { print m + 0 }')
        [ "$ir" -gt 0 ] && break
        sleep 0.1
    done
    if [ -n "${INSTR_KEEP:-}" ]; then
        mkdir -p "$INSTR_KEEP"
        cat "$out".* >"$INSTR_KEEP/$(basename "$exe")-$test-$p.out"
    fi
    kill "$vg" "$redis_pid" 2>/dev/null || true
    wait "$vg" "$redis_pid" 2>/dev/null || true
    echo $((ir / N))
}

printf '| binary |'
for c in $CASES; do printf ' %s P=%s |' "${c%%:*}" "${c##*:}"; done
printf '\n|---|'
for _ in $CASES; do printf -- '---:|'; done
printf '\n'
for exe in "$@"; do
    printf '| %s |' "$(basename "$exe")"
    for c in $CASES; do printf ' %s |' "$(count "$exe" "${c%%:*}" "${c##*:}")"; done
    printf '\n'
done
