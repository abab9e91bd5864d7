#!/usr/bin/env bash
# Builds nearcache and runs it in front of a local Redis on 127.0.0.1:6379, installing and
# starting redis-server first if none answers there. Extra arguments go to nearcache.
#   scripts/run.sh                      # clients connect to 127.0.0.1:6380
#   scripts/run.sh --listen 0.0.0.0:6380 --log-level debug
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    echo "no Redis on 127.0.0.1:6379; starting one" >&2
    redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --logfile /tmp/nearcache-redis-6379.log
    for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
cargo build --release -p nearcache
exec target/release/nearcache --upstream 127.0.0.1:6379 "$@"
