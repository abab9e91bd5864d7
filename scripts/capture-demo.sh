#!/usr/bin/env bash
# The whole capture-and-simulate path on loopback: starts a Redis on a free port, records
# redis-benchmark traffic to it with tcpdump, turns the capture into a trace and a summary
# (`nearcache capture`), simulates every policy at several sizes (`nearcache simulate`) and
# draws the miss-ratio curves. Prints where the SVG is.
#
#   scripts/capture-demo.sh [OUT_DIR]     (default ./capture-demo; needs the right to capture)
#
# The traffic: uniform GETs over 1,000 keys and GET/SET over 20,000 (redis-benchmark's keys
# are uniform over -r; the two mixed make a hot set). Uses the release binary (built unless
# SKIP_BUILD=1, or NEARCACHE_BIN=path). SIZES and N override the sizes and request counts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init capture-demo
out=$(mkdir -p "${1:-capture-demo}" && cd "${1:-capture-demo}" && pwd)
sizes=${SIZES:-64kb,128kb,256kb,512kb,1mb,2mb,4mb,8mb}
n=${N:-10000}
command -v tcpdump >/dev/null || die "tcpdump is needed (apt-get install tcpdump)"
command -v redis-benchmark >/dev/null || die "redis-benchmark is needed (apt-get install redis-tools)"
nearcache_bin
start_redis

pcap=$out/traffic.pcap
tcpdump -i lo -s 0 -B 32768 -U -w "$pcap" "tcp port $redis_port" 2>"$work/tcpdump.err" &
dump=$!
track "$dump"
# tcpdump says when it listens; traffic before that would be lost.
for _ in $(seq 1 200); do
    grep -q "listening on" "$work/tcpdump.err" 2>/dev/null && break
    kill -0 "$dump" 2>/dev/null || die "tcpdump failed: $(cat "$work/tcpdump.err")"
    sleep 0.05
done
grep -q "listening on" "$work/tcpdump.err" || die "tcpdump did not start"

bench() { redis-benchmark -p "$redis_port" -c 4 -q "$@" >/dev/null; }
bench -t set -r 20000 -n "$n" -d 200
bench -t get -r 1000 -n "$n"
bench -t get,set -r 20000 -n "$n" -d 200
bench -t get -r 1000 -n "$n"
# An end marker, so that everything before it is in the file when tcpdump stops.
redis-cli -p "$redis_port" echo capture-demo-end >/dev/null
for _ in $(seq 1 200); do
    grep -q capture-demo-end "$pcap" 2>/dev/null && break
    sleep 0.05
done
kill -INT "$dump"
wait "$dump" 2>/dev/null || true
echo "tcpdump: $(grep -E 'captured|dropped' "$work/tcpdump.err" | tr '\n' ' ')"

"$bin" capture --read "$pcap" --port "$redis_port" --out "$out/traffic.nctrace" \
    >"$out/summary.txt"
"$bin" simulate "$out/traffic.nctrace" --max-memory "$sizes" --eviction all \
    --plot "$out/mrc.svg" | tee "$out/simulate.txt"
echo
echo "summary: $out/summary.txt"
echo "miss-ratio curves: $out/mrc.svg"
