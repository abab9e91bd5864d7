#!/usr/bin/env bash
# GET hits over TLS: redis-benchmark --tls against Redis's own TLS port and against nearcache's
# TLS listener (tls_listen), side by side in one run, with the plain-TCP pair for reference.
# Prints a markdown table of requests/s, p50 and p99 (ms) and the ratio of nearcache to direct
# Redis over the same transport. Certificates are made here with openssl (a CA, a server
# certificate for 127.0.0.1, a client certificate: both sides ask for one, as Redis does by
# default). nearcache talks plain TCP to Redis (a hit never reaches it).
#
# Environment:
#   TLS_N          requests per run (default 100000)
#   TLS_CLIENTS    connections (default 50)
#   TLS_PIPELINES  pipeline depths (default "1 16")
#   TLS_ROUNDS     rounds, alternating direct and nearcache (default 3; the median is printed)
#   SKIP_BUILD=1   use the existing release binary
# Numbers from a shared 2-core machine are noisy: compare the ratios, not the absolute rates.
set -euo pipefail

N=${TLS_N:-100000}
CLIENTS=${TLS_CLIENTS:-50}
PIPELINES=${TLS_PIPELINES:-"1 16"}
ROUNDS=${TLS_ROUNDS:-3}
KEYS=1000

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init tls-bench
need_tools "scripts/deps.sh installs it" redis-server redis-benchmark redis-cli openssl python3
redis-benchmark --help 2>&1 | grep -q -- --tls || die "redis-benchmark is built without TLS"
nearcache_bin

# --- certificates ------------------------------------------------------------------------
pki="$work/tls"
make_pki "$pki"
tls_files=(--tls-cert-file "$pki/server.crt" --tls-key-file "$pki/server.key"
    --tls-ca-cert-file "$pki/ca.crt")

# --- servers -----------------------------------------------------------------------------
redis_tls_port=$(free_port)
start_redis --tls-port "$redis_tls_port" "${tls_files[@]}"
start_nearcache --max-memory 256mb --tls-listen 127.0.0.1:0 "${tls_files[@]}"
nc_tls=$(grep -o 'tls=127\.0\.0\.1:[0-9]*' "$work/nc.out" | head -n 1 | cut -d: -f2)
[ -n "$nc_tls" ] || die "nearcache printed no tls= address: $(head -n 1 "$work/nc.out")"

value=$(head -c 64 /dev/zero | tr '\0' x)
populate m "$KEYS" "$value"
prime "$nc_port" m "$KEYS"

# bench PORT PIPELINE TLS(0|1): prints "rps p50 p99".
bench() {
    local tls_args=()
    if [ "$3" = 1 ]; then
        tls_args=(--tls --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key")
    fi
    redis-benchmark "${tls_args[@]}" -h 127.0.0.1 -p "$1" -c "$CLIENTS" -P "$2" -n "$N" \
        -r "$KEYS" --csv GET 'm:__rand_int__' 2>/dev/null |
        python3 -c '
import csv, sys
rows = list(csv.DictReader(sys.stdin))
r = rows[-1]
print(r["rps"], r["p50_latency_ms"], r["p99_latency_ms"])'
}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "GET hits, $CLIENTS clients, 64-byte values, $KEYS keys, median of $ROUNDS rounds"
echo
printf '| transport | pipeline | direct rps | nearcache rps | ratio | direct p50/p99 ms | nearcache p50/p99 ms |\n'
printf '|---|---|---|---|---|---|---|\n'
for transport in tls plain; do
    for p in $PIPELINES; do
        d_rps=() n_rps=() d_p50=() n_p50=() d_p99=() n_p99=()
        for _ in $(seq 1 "$ROUNDS"); do
            if [ "$transport" = tls ]; then
                read -r r a b < <(bench "$redis_tls_port" "$p" 1)
                d_rps+=("$r") d_p50+=("$a") d_p99+=("$b")
                read -r r a b < <(bench "$nc_tls" "$p" 1)
                n_rps+=("$r") n_p50+=("$a") n_p99+=("$b")
            else
                read -r r a b < <(bench "$redis_port" "$p" 0)
                d_rps+=("$r") d_p50+=("$a") d_p99+=("$b")
                read -r r a b < <(bench "$nc_port" "$p" 0)
                n_rps+=("$r") n_p50+=("$a") n_p99+=("$b")
            fi
        done
        dr=$(printf '%s\n' "${d_rps[@]}" | median)
        nr=$(printf '%s\n' "${n_rps[@]}" | median)
        ratio=$(awk -v n="$nr" -v d="$dr" 'BEGIN { printf "%.2f", n / d }')
        printf '| %s | %s | %.0f | %.0f | %s | %s/%s | %s/%s |\n' "$transport" "$p" "$dr" "$nr" \
            "$ratio" "$(printf '%s\n' "${d_p50[@]}" | median)" \
            "$(printf '%s\n' "${d_p99[@]}" | median)" \
            "$(printf '%s\n' "${n_p50[@]}" | median)" "$(printf '%s\n' "${n_p99[@]}" | median)"
    done
done
