# Shared by the scripts that start their own Redis and nearcache: source it, then call
# `lib_init NAME`. Every process started through it is stopped on exit, with the scratch dir.
#
#   lib_init NAME             scratch dir in $work, cleanup on exit, `die` prefixes NAME
#   free_port                 prints a free TCP port on 127.0.0.1
#   wait_ping PORT NAME       polls PING until PONG (bounded), or dies
#   start_redis [ARGS...]     redis-server on a free port: sets redis_port, redis_pid
#   nearcache_bin             builds the release binary unless SKIP_BUILD=1: sets bin
#   spawn_nearcache NAME EXE [ARGS...]
#                             EXE in front of $redis_port (admin on a free port), output in
#                             $work/NAME.{out,err}: sets nc_pid, nc_port, nc_admin (host:port)
#                             (upstream: $nc_upstream when set)
#   start_nearcache [ARGS...] spawn_nearcache of $bin as "nc", stopping the previous one
#   make_pki DIR              a CA and a server and a client certificate signed by it, for
#                             127.0.0.1/localhost: DIR/{ca,server,client}.{crt,key}
#   track PID                 stops PID on exit too

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pids=()
nc_pid=""

lib_init() {
    lib_name=$1
    work=$(mktemp -d "${TMPDIR:-/tmp}/nearcache-$lib_name.XXXXXX")
    trap lib_cleanup EXIT
    trap 'exit 130' INT TERM
}

lib_cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

die() {
    echo "${lib_name:-script}: $*" >&2
    exit 1
}

# need_tools HINT TOOL...: stops, naming the first TOOL not on PATH and HINT (how to get it).
need_tools() {
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found${hint:+ ($hint)}"
    done
}

track() {
    pids+=("$1")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ping() {
    local port=$1 name=$2
    for _ in $(seq 1 200); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    die "$name on port $port did not answer PING"
}

start_redis() {
    local port pid
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize no --dir "$work" --logfile "$work/redis-$port.log" "$@" &
        pid=$!
        track "$pid"
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
                redis_port=$port
                redis_pid=$pid
                return 0
            fi
            sleep 0.05
        done
    done
    die "could not start redis-server (logs in $work)"
}

# nearcache_bin: sets bin to the release build (built first unless SKIP_BUILD=1), or to
# NEARCACHE_BIN when that names another binary (say, a build before a change).
nearcache_bin() {
    bin="${NEARCACHE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nearcache}"
    if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${NEARCACHE_BIN:-}" ]; then
        echo "building nearcache (release)..." >&2
        (cd "$root" && cargo build --release -p nearcache >&2)
    fi
    [ -x "$bin" ] || die "no binary at $bin"
}

# populate PREFIX N VALUE: SET PREFIX:0 .. PREFIX:N-1 to VALUE in the Redis of start_redis,
# the keys spelled as redis-benchmark expands __rand_int__ (12 digits, zero-padded).
populate() {
    awk -v p="$1" -v n="$2" -v v="$3" \
        'BEGIN { for (i = 0; i < n; i++) printf "SET %s:%012d %s\r\n", p, i, v }' |
        redis-cli -p "$redis_port" --pipe >/dev/null
}

# prime PORT PREFIX N: GET PREFIX:0 .. PREFIX:N-1 (spelled as populate writes them) twice
# through the server on PORT, so that a cache in front has filled and admitted them.
prime() {
    for _ in 1 2; do
        awk -v p="$2" -v n="$3" 'BEGIN { for (i = 0; i < n; i++) printf "GET %s:%012d\n", p, i }' |
            redis-cli -p "$1" >/dev/null
    done
}

spawn_nearcache() {
    local name=$1 exe=$2 line
    shift 2
    "$exe" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --upstream "${nc_upstream:-127.0.0.1:$redis_port}" \
        "$@" >"$work/$name.out" 2>"$work/$name.err" &
    nc_pid=$!
    track "$nc_pid"
    nc_port="" nc_admin=""
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$work/$name.out" 2>/dev/null || true)
        if [[ "$line" =~ listen=127\.0\.0\.1:([0-9]+)\ admin=([^ ]+) ]]; then
            nc_port=${BASH_REMATCH[1]}
            nc_admin=${BASH_REMATCH[2]}
            return 0
        fi
        kill -0 "$nc_pid" 2>/dev/null || break
        sleep 0.05
    done
    die "$name did not start: $(tail -n 20 "$work/$name.err")"
}

start_nearcache() {
    if [ -n "$nc_pid" ]; then
        kill "$nc_pid" 2>/dev/null || true
        wait "$nc_pid" 2>/dev/null || true
    fi
    spawn_nearcache nc "$bin" "$@"
}

make_pki() {
    mkdir -p "$1"
    (
        cd "$1"
        openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 2 \
            -subj "/CN=nearcache test CA" 2>/dev/null
        for name in server client; do
            openssl req -new -nodes -newkey rsa:2048 -keyout "$name.key" -out "$name.csr" \
                -subj "/CN=nearcache test $name" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out "$name.crt" -days 2 -extfile "$name.ext" 2>/dev/null
        done
    ) || die "openssl could not make the test certificates in $1"
}
