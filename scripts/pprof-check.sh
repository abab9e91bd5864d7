#!/usr/bin/env bash
# End-to-end check of nearcache's profiles with Go's pprof: builds the release binary, starts
# Redis and nearcache, takes a heap profile, fills the cache with reads of distinct keys, takes
# a second heap profile and (under load) a CPU profile, then runs `go tool pprof -top` on each,
# `go tool pprof -diff_base`, and `nearcache heap-diff`. Installs golang-go when `go` is missing.
# Profiles and reports stay in $OUT (default: a new temp dir), printed at the end.
# Run by hand; not part of CI. Stops everything it started on exit.
set -euo pipefail
KEYS=${KEYS:-200000}
VALUE=${VALUE:-400}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init pprof
"$root/scripts/deps.sh" go:golang-go
nearcache_bin
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/nearcache-pprof.XXXXXX")}
mkdir -p "$out"
get() { curl --noproxy 127.0.0.1 -sf -o "$2" "http://$nc_admin$1"; }

start_redis
start_nearcache --max-memory 256mb
rport=$redis_port pport=$nc_port admin=$nc_admin
echo "== redis :$rport, nearcache :$pport, admin $admin" >&2

echo "== loading $KEYS keys of $VALUE bytes into Redis" >&2
redis-benchmark -p "$rport" -t set -n "$KEYS" -r "$KEYS" -d "$VALUE" -q >/dev/null 2>&1
get /debug/pprof/heap "$out/heap-1.pb.gz"
echo "== reading them through nearcache (the cache grows), CPU profile meanwhile" >&2
redis-benchmark -p "$pport" -t get -n $((KEYS * 2)) -r "$KEYS" -c 20 -q >/dev/null 2>&1 &
bench=$!
get "/debug/pprof/profile?seconds=5" "$out/cpu.pb.gz"
get "/debug/pprof/profile?seconds=2&format=svg" "$out/cpu.svg"
wait "$bench"
get /debug/pprof/heap "$out/heap-2.pb.gz"
curl --noproxy 127.0.0.1 -sf "http://$admin/metrics" |
    grep -E '^nearcache_(cache_bytes|process_resident_memory_bytes|max_memory_bytes) ' >&2

# The profiles carry their symbols (resolved in the process): -symbolize=none keeps pprof from
# re-resolving addresses against the binary.
pprof() { go tool pprof -symbolize=none "$@" 2>&1; }
{
    echo "== go tool pprof -top heap-1"; pprof -top -nodecount=15 "$out/heap-1.pb.gz"
    echo "== go tool pprof -top heap-2"; pprof -top -nodecount=15 "$out/heap-2.pb.gz"
    echo "== go tool pprof -top -diff_base heap-1 heap-2"
    pprof -top -nodecount=15 -diff_base "$out/heap-1.pb.gz" "$out/heap-2.pb.gz"
    echo "== go tool pprof -top cpu"; pprof -top -nodecount=20 "$out/cpu.pb.gz"
    echo "== nearcache heap-diff heap-1 heap-2"; "$bin" heap-diff --top 12 "$out/heap-1.pb.gz" "$out/heap-2.pb.gz"
} | tee "$out/report.txt"
# Each pprof run must have produced a table: fail if any said it could not read a profile.
if grep -qE 'failed to fetch|parsing profile|unrecognized profile format' "$out/report.txt"; then
    echo "pprof could not read a profile; see $out/report.txt" >&2
    exit 1
fi
echo "profiles and report in $out"
