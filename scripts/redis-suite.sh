#!/usr/bin/env bash
# Runs Redis 7.0.15's own test suite (../shared/redis-tests, external mode) unit by unit, once
# against Redis directly and once through nearcache, each run against a fresh redis-server, and
# prints a table of passes per unit. Slow (about half an hour for every unit); not part of CI.
#   scripts/redis-suite.sh                       # every unit of the suite's README
#   UNITS="type/string tracking" scripts/redis-suite.sh
#   ONLY=proxy UNITS=protocol scripts/redis-suite.sh   # skip the direct runs
#   TLS=1 scripts/redis-suite.sh                 # every connection over TLS (needs tcl-tls):
#       the suite's client to Redis's tls-port, or to nearcache's tls_listen, and nearcache
#       to Redis's tls-port with a client certificate (rediss://)
# Logs of each run stay in $OUT (default target/redis-suite): UNIT.{direct,proxy}.log, and
# nearcache's own log as UNIT.proxy.err.
# Extra arguments go to nearcache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_init redis-suite

suite_src=${REDIS_TESTS:-$root/../shared/redis-tests}
[ -x "$suite_src/runtest" ] || die "no Redis test suite at $suite_src (set REDIS_TESTS)"
units=${UNITS:-"type/string type/incr type/hash type/list type/zset type/stream keyspace expire
    multi sort pubsub scripting functions tracking protocol info-command bitops introspection
    introspection-2 geo"}
only=${ONLY:-both}
per_unit_timeout=${UNIT_TIMEOUT:-900}
out=${OUT:-$root/target/redis-suite}
mkdir -p "$out"
nearcache_bin
tls=${TLS:-0}
if [ "$tls" = 1 ]; then
    echo 'package require tls' | tclsh >/dev/null 2>&1 ||
        die "TLS=1 needs Tcl's TLS package (Debian: apt-get install tcl-tls)"
fi

# The suite writes under tests/tmp and runs src/redis-*: a writable copy with Debian's binaries.
suite="$work/suite"
cp -r "$suite_src/." "$suite"
mkdir -p "$suite/src"
for b in cli benchmark check-aof check-rdb server; do
    ln -sf "$(command -v redis-$b || command -v redis-server)" "$suite/src/redis-$b"
done

# The suite's client reads its certificates from tests/tls; the servers use the same CA.
tls_redis=() tls_nc=() tls_suite=()
if [ "$tls" = 1 ]; then
    pki="$suite/tests/tls"
    make_pki "$pki"
    tls_redis=(--tls-cert-file "$pki/server.crt" --tls-key-file "$pki/server.key"
        --tls-ca-cert-file "$pki/ca.crt")
    tls_nc=(--tls-listen 127.0.0.1:0 "${tls_redis[@]}"
        --upstream-tls-ca-cert-file "$pki/ca.crt" --upstream-tls-cert-file "$pki/client.crt"
        --upstream-tls-key-file "$pki/client.key")
    tls_suite=(--tls)
fi

# run_unit UNIT TARGET LOG: fresh Redis (and nearcache when TARGET is proxy), one unit.
run_unit() {
    local unit=$1 target=$2 log=$3 port redis_dir tls_port
    redis_dir=$(mktemp -d "$work/redis.XXXXXX")
    if [ "$tls" = 1 ]; then
        tls_port=$(free_port)
        start_redis --dir "$redis_dir" --enable-debug-command local \
            --tls-port "$tls_port" "${tls_redis[@]}"
        port=$tls_port
    else
        start_redis --dir "$redis_dir" --enable-debug-command local
        port=$redis_port
    fi
    if [ "$target" = proxy ]; then
        if [ "$tls" = 1 ]; then
            nc_upstream="rediss://127.0.0.1:$tls_port" start_nearcache "${tls_nc[@]}" "${extra[@]}"
            port=$(grep -o 'tls=127\.0\.0\.1:[0-9]*' "$work/nc.out" | head -n 1 | cut -d: -f2)
            [ -n "$port" ] || die "nearcache printed no tls= address: $(head -n 1 "$work/nc.out")"
        else
            start_nearcache "${extra[@]}"
            port=$nc_port
        fi
    fi
    (cd "$suite" && timeout --kill-after=10 "$per_unit_timeout" \
        ./runtest "${tls_suite[@]}" --host 127.0.0.1 --port "$port" --clients 1 \
        --single "unit/$unit" --timeout 120) >"$log" 2>&1 || true
    if [ "$target" = proxy ]; then
        kill "$nc_pid" 2>/dev/null || true
        wait "$nc_pid" 2>/dev/null || true
        nc_pid=""
        cp "$work/nc.err" "${log%.log}.err" 2>/dev/null || true
    fi
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
}

# counts LOG: "ok err exception", exception 1 when the unit was cut short.
counts() {
    local plain ok err exc
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$1")
    ok=$(grep -c '^\[ok\]' <<<"$plain" || true)
    err=$(grep -c '^\[err\]' <<<"$plain" || true)
    exc=0
    if grep -q '^\[exception\]\|^\[TIMEOUT\]' <<<"$plain" ||
        ! grep -q 'All tests passed\|tests failed' <<<"$plain"; then
        exc=1
    fi
    echo "$ok $err $exc"
}

extra=("$@")
printf '%-16s %8s %8s %8s %8s %s\n' unit direct proxy ratio failed aborted
total_d=0 total_p=0
for unit in $units; do
    name=${unit//\//-}
    d_ok=- p_ok=- p_err=- p_exc=-
    if [ "$only" != proxy ]; then
        run_unit "$unit" direct "$out/$name.direct.log"
        read -r d_ok _ _ < <(counts "$out/$name.direct.log")
        total_d=$((total_d + d_ok))
    fi
    if [ "$only" != direct ]; then
        run_unit "$unit" proxy "$out/$name.proxy.log"
        read -r p_ok p_err p_exc < <(counts "$out/$name.proxy.log")
        total_p=$((total_p + p_ok))
    fi
    ratio=-
    if [ "$d_ok" != - ] && [ "$p_ok" != - ] && [ "$d_ok" -gt 0 ]; then
        ratio=$(awk -v p="$p_ok" -v d="$d_ok" 'BEGIN { printf "%.1f%%", 100 * p / d }')
    fi
    aborted=no
    [ "$p_exc" = 1 ] && aborted=yes
    printf '%-16s %8s %8s %8s %8s %s\n' "$unit" "$d_ok" "$p_ok" "$ratio" "$p_err" "$aborted"
done
printf '%-16s %8s %8s\n' total "$total_d" "$total_p"
