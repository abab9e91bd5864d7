#!/usr/bin/env bash
# The performance harness: Redis direct vs nearcache vs twemproxy (nutcracker), one machine,
# one run. Prints a markdown table of requests/s, p50 and p99 (ms) and the ratio to direct Redis.
#
# Starts its own redis-server, nutcracker and three nearcache instances (free ports):
#   nearcache      default threads, --max-memory 256mb: the hot set fits (hit tests, SET, mix);
#   nearcache-1t   the same with --threads 1 (only in the threads section);
#   nearcache-2t   the same with --threads 2 --thread-placement connection (only in the threads
#                  section; every client is on 127.0.0.1, which `host` placement keeps on one thread);
#   small cache    --max-memory 4mb: the key set of the miss test is far larger than the cache.
# Release build first unless SKIP_BUILD=1. Everything started is stopped on exit.
#
# Tests (each a redis-benchmark run, --csv; redis-benchmark's -r fills __rand_int__):
#   get-hot   GET of a preloaded hot set (1000 keys; 200 of 100 KB), warmed through the proxy
#             first, so nearcache serves it from its cache
#   get-miss  GET of a preloaded key set ~20x the small cache (see miss_keys below): mostly
#             misses, forwarded and filled (and evicted)
#   set       SET of random keys of the hot set (always forwarded; invalidates)
#   mget10    MGET of 10 random keys of the hot set (each key a cache entry)
#   mix90     90% GET / 10% SET of the hot set by request count: two redis-benchmark processes
#             run at once, GETs on 90% of the clients, SETs on 10%, with -n split 90/10.
#             requests/s = all requests / wall time until both finished; p50/p99 are the GET
#             side's (the writes' invalidations are what make this test differ from get-hot)
#
# Environment:
#   PERF_QUICK=1      quick subset: 50 clients, 64-byte values, pipeline 1 and 16
#   PERF_TESTS        subset of "get-hot get-miss set mget10 mix90" (default all)
#   PERF_CLIENTS      client counts (default "50 500"; quick "50")
#   PERF_PIPELINES    pipeline depths (default "1 16")
#   PERF_SIZES        value sizes in bytes (default "64 4096 102400"; quick "64")
#   PERF_TARGETS      subset of "direct nearcache twemproxy" (default all three)
#   PERF_THREADS=0    skip the 1-vs-2 worker threads section
#   PERF_N            requests per run for 64-byte values at pipeline 1 (default 100000, quick
#                     50000); scaled down for larger values, up for pipeline 16
#   NEARCACHE_ARGS    extra flags for every nearcache instance
#   SKIP_BUILD=1      use the existing release binary
#   PERF_BASELINE=BIN another nearcache binary (say, the build before a change) measured as the
#                     target "baseline" in the same run, for before/after figures
#
# Numbers from a shared 2-core machine are noisy: redis-benchmark, Redis and the proxy compete
# for the same cores. Compare ratios from the same run, not absolute rates. The CPU columns
# (microseconds of CPU the proxy process, and Redis, spent per request, from /proc/PID/stat)
# say what each request costs and move much less with the machine's load.
set -euo pipefail

quick=${PERF_QUICK:-0}
TESTS=${PERF_TESTS:-"get-hot get-miss set mget10 mix90"}
PIPELINES=${PERF_PIPELINES:-"1 16"}
TARGETS=${PERF_TARGETS:-"direct nearcache twemproxy"}
if [ "$quick" = 1 ]; then
    CLIENTS=${PERF_CLIENTS:-50}
    SIZES=${PERF_SIZES:-64}
    N=${PERF_N:-50000}
else
    CLIENTS=${PERF_CLIENTS:-"50 500"}
    SIZES=${PERF_SIZES:-"64 4096 102400"}
    N=${PERF_N:-100000}
fi
THREADS=${PERF_THREADS:-1}

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init perf
log() { echo "perf.sh: $*" >&2; }

"$root/scripts/deps.sh" nutcracker:nutcracker >&2 || true
need_tools "scripts/deps.sh installs it" redis-server redis-benchmark redis-cli python3 curl nutcracker

nearcache_bin

# --- servers -----------------------------------------------------------------------------
declare -A port_of admin_of pid_of

start_redis
port_of[direct]=$redis_port

# start_instance NAME ARGS...: a nearcache (binary $nc_bin) with its admin port, under NAME
# (lib.sh's start_nearcache would stop the previous instance; these run side by side).
nc_bin=$bin
start_instance() {
    local name=$1
    shift
    # shellcheck disable=SC2086
    spawn_nearcache "$name" "$nc_bin" "$@" ${NEARCACHE_ARGS:-}
    pid_of[$name]=$nc_pid
    port_of[$name]=$nc_port
    admin_of[$name]=${nc_admin##*:}
    wait_ping "$nc_port" "$name"
}

start_instance nearcache --max-memory 256mb
start_instance small --max-memory 4mb
if [ -n "${PERF_BASELINE:-}" ]; then
    nc_bin=$PERF_BASELINE
    start_instance baseline --max-memory 256mb
    start_instance baseline-small --max-memory 4mb
    nc_bin=$bin
    TARGETS="$TARGETS baseline"
fi
if [ "$THREADS" = 1 ]; then
    start_instance nearcache-1t --max-memory 256mb --threads 1
    start_instance nearcache-2t --max-memory 256mb --threads 2 --thread-placement connection
fi

tw_port=$(free_port)
cat >"$work/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$tw_port
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  timeout: 5000
  servers:
   - 127.0.0.1:$redis_port:1
EOF
nutcracker -c "$work/nutcracker.yml" -a 127.0.0.1 -s "$(free_port)" -o "$work/nutcracker.log" &
track "$!"
pid_of[twemproxy]=$!
wait_ping "$tw_port" nutcracker
port_of[twemproxy]=$tw_port

# --- data --------------------------------------------------------------------------------
# Keys as redis-benchmark writes __rand_int__: 12 digits, zero-padded.
hot_keys() { if [ "$1" -ge 100000 ]; then echo 200; else echo 1000; fi; }
# The miss key set: ~20x what the 4 MB small cache holds (80 MB over value + ~200 bytes of
# entry key and overhead each), at least 2000 keys.
miss_keys() { local n=$((80 * 1024 * 1024 / ($1 + 200))); [ "$n" -lt 2000 ] && n=2000; echo "$n"; }

# resp_cmds PREFIX COUNT [SIZE]: RESP for SET PREFIX:i <SIZE bytes> (or GET and single-key MGET
# without SIZE: each key's entries for both tests).
resp_cmds() {
    python3 - "$@" <<'EOF'
import sys
prefix, count = sys.argv[1], int(sys.argv[2])
size = int(sys.argv[3]) if len(sys.argv) > 3 else None
out = sys.stdout.buffer
value = b"x" * (size or 0)
for i in range(count):
    key = b"%s:%012d" % (prefix.encode(), i)
    if size is None:
        out.write(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
        out.write(b"*2\r\n$4\r\nMGET\r\n$%d\r\n%s\r\n" % (len(key), key))
    else:
        out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF
}

# load SIZE: Redis holds the hot set h:* and the miss set m:* with SIZE-byte values.
load() {
    redis-cli -p "$redis_port" flushall >/dev/null
    resp_cmds h "$(hot_keys "$1")" "$1" | redis-cli -p "$redis_port" --pipe >/dev/null
    resp_cmds m "$(miss_keys "$1")" "$1" | redis-cli -p "$redis_port" --pipe >/dev/null
}

# warm NAME SIZE: reads the hot set (GET and MGET entries) through a nearcache twice.
warm() {
    local i
    for i in 1 2; do
        resp_cmds h "$(hot_keys "$2")" | redis-cli -p "${port_of[$1]}" --pipe >/dev/null
    done
}

hits() { # NAME -> "hits misses"
    curl -s "http://127.0.0.1:${admin_of[$1]}/metrics" | awk '
        $1 == "nearcache_cache_hits_total" { h = $2 }
        $1 == "nearcache_cache_misses_total" { m = $2 }
        END { print h + 0, m + 0 }'
}

# bench OUT PORT ARGS...: one redis-benchmark run in the background (a signal stops it at once).
bench() {
    local out=$1 port=$2 pid
    shift 2
    redis-benchmark -h 127.0.0.1 -p "$port" --csv "$@" >"$out" 2>"$out.err" &
    pid=$!
    track "$pid"
    wait "$pid" || die "redis-benchmark -p $port $* failed: $(cat "$out.err")"
    unset 'pids[-1]'
}

# csv_row FILE -> "rps p50 p99" from redis-benchmark --csv (one test per file).
csv_row() {
    tr -d '"' <"$1" | awk -F, '$1 != "test" && NF >= 7 { print $2, $5, $7; exit }'
}

now_ns() { date +%s%N; }

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

results="$work/results.txt"
: >"$results"

# run TEST SIZE CLIENTS PIPELINE TARGET LABEL: runs one test, appends a result line.
run() {
    local test=$1 size=$2 c=$3 p=$4 target=$5 label=$6
    local port=${port_of[$target]} n hot miss value row before after keys
    # About the same bytes per run whatever the size: fewer requests for large values (and
    # for MGET, which moves 10 values), more at pipeline 16 for small ones.
    n=$N
    [ "$size" -ge 4096 ] && n=$((N / 4))
    [ "$size" -ge 100000 ] && n=$((N / 50))
    [ "$p" -gt 1 ] && [ "$size" -lt 4096 ] && n=$((n * 4))
    hot=$(hot_keys "$size")
    miss=$(miss_keys "$size")
    before=""
    [ -n "${admin_of[$target]:-}" ] && before=$(hits "$target")
    local proxy_pid=${pid_of[$target]:-} proxy0=0 redis0
    [ -n "$proxy_pid" ] && proxy0=$(cpu_ticks "$proxy_pid")
    redis0=$(cpu_ticks "$redis_pid")
    local out="$work/bench.csv"
    case $test in
        get-hot) bench "$out" "$port" -n "$n" -c "$c" -P "$p" -r "$hot" GET 'h:__rand_int__' ;;
        get-miss) bench "$out" "$port" -n "$n" -c "$c" -P "$p" -r "$miss" GET 'm:__rand_int__' ;;
        set)
            value=$(head -c "$size" /dev/zero | tr '\0' x)
            bench "$out" "$port" -n "$n" -c "$c" -P "$p" -r "$hot" SET 'h:__rand_int__' "$value"
            ;;
        mget10)
            keys=()
            for _ in $(seq 10); do keys+=('h:__rand_int__'); done
            [ "$size" -ge 4096 ] && n=$((n / 5))
            bench "$out" "$port" -n "$((n / 2))" -c "$c" -P "$p" -r "$hot" MGET "${keys[@]}"
            ;;
        mix90)
            local rc=$((c * 9 / 10)) wc=$((c - c * 9 / 10)) t0 t1 rn=$((n * 9 / 10)) wn=$((n / 10)) pid
            value=$(head -c "$size" /dev/zero | tr '\0' x)
            t0=$(now_ns)
            redis-benchmark -h 127.0.0.1 -p "$port" --csv -n "$wn" -c "$wc" -P "$p" -r "$hot" \
                SET 'h:__rand_int__' "$value" >"$work/mixw.csv" 2>"$work/mixw.err" &
            pid=$!
            track "$pid"
            bench "$out" "$port" -n "$rn" -c "$rc" -P "$p" -r "$hot" GET 'h:__rand_int__'
            wait "$pid" || die "redis-benchmark (mix writes) failed: $(cat "$work/mixw.err")"
            unset 'pids[-1]'
            t1=$(now_ns)
            row=$(csv_row "$out")
            # Total requests over wall time, the GET side's latencies.
            echo "$row" | awk -v n=$((rn + wn)) -v ns=$((t1 - t0)) '{ printf "%.0f %s %s\n", n / (ns / 1e9), $2, $3 }' >"$work/row"
            ;;
    esac
    [ "$test" = mix90 ] || csv_row "$out" >"$work/row"
    row=$(cat "$work/row")
    [ -n "$row" ] || die "no result from redis-benchmark for $test $label"
    local hitpct="-"
    if [ -n "$before" ]; then
        after=$(hits "$target")
        hitpct=$(echo "$before $after" | awk '{ d = ($3 - $1) + ($4 - $2); if (d > 0) printf "%.0f%%", 100 * ($3 - $1) / d; else print "-" }')
    fi
    local total=$n cpu
    [ "$test" = mget10 ] && total=$((n / 2))
    cpu=$(echo "$proxy0 $([ -n "$proxy_pid" ] && cpu_ticks "$proxy_pid" || echo 0) $redis0 $(cpu_ticks "$redis_pid")" |
        awk -v n="$total" -v hz="$hz" -v proxy="$proxy_pid" '{
            r = ($4 - $3) * 1e6 / hz / n
            if (proxy == "") printf "- %.1f\n", r; else printf "%.1f %.1f\n", ($2 - $1) * 1e6 / hz / n, r }')
    echo "$test $size $c $p $label $row $hitpct $cpu" >>"$results"
    log "$test size=$size c=$c P=$p $label: $row hit=$hitpct cpu(proxy redis)=$cpu"
}

# --- runs --------------------------------------------------------------------------------
for size in $SIZES; do
    log "loading values of $size bytes ($(hot_keys "$size") hot keys, $(miss_keys "$size") miss keys)"
    load "$size"
    for c in $CLIENTS; do
        for p in $PIPELINES; do
            for test in $TESTS; do
                for target in $TARGETS; do
                    name=$target
                    case $target/$test in
                        nearcache/get-miss) name=small ;;
                        baseline/get-miss) name=baseline-small ;;
                        nearcache/* | baseline/*) warm "$name" "$size" ;;
                    esac
                    run "$test" "$size" "$c" "$p" "$name" "$target"
                done
                # Writes through the proxy change the values: restore them for the next test.
                case $test in set | mix90) load "$size" ;; esac
            done
        done
    done
done

if [ "$THREADS" = 1 ]; then
    log "threads: GET hot and SET, 64 bytes, 50 clients"
    load 64
    for p in $PIPELINES; do
        for t in 1t 2t; do
            warm "nearcache-$t" 64
            run get-hot 64 50 "$p" "nearcache-$t" "nearcache-$t"
            run set 64 50 "$p" "nearcache-$t" "nearcache-$t"
        done
    done
fi

# --- table -------------------------------------------------------------------------------
echo
echo "redis-benchmark --csv, $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), $(uname -sr); hit% from nearcache's metrics"
echo
awk '
    {
        key = $1 " " $2 " " $3 " " $4
        if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        rps[key, $5] = $6; p50[key, $5] = $7; p99[key, $5] = $8; hit[key, $5] = $9
        pcpu[key, $5] = $10; rcpu[key, $5] = $11
        if (!($5 in tseen)) { tseen[$5] = 1; targets[++nt] = $5 }
    }
    END {
        print "| test | value | clients | pipeline | target | requests/s | p50 ms | p99 ms | vs direct | hit% | proxy CPU µs/req | Redis CPU µs/req |"
        print "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= n; i++) {
            split(order[i], k, " ")
            base = rps[order[i], "direct"]
            for (j = 1; j <= nt; j++) {
                t = targets[j]
                if (!((order[i], t) in rps)) continue
                ratio = (base > 0) ? sprintf("%.2f", rps[order[i], t] / base) : "-"
                printf "| %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", k[1], k[2], k[3], k[4], t, rps[order[i], t], p50[order[i], t], p99[order[i], t], ratio, hit[order[i], t], pcpu[order[i], t], rcpu[order[i], t]
            }
        }
    }' "$results"
