#!/usr/bin/env bash
# Regenerates crates/nearcache/src/command/table.rs, the proxy's copy of Redis's command table,
# from the COMMAND reply of a throwaway redis-server (the one on PATH, or REDIS_SERVER).
# tests/command_table.rs fails when the checked-in table and a live server disagree.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init command-table
start_redis
out="$root/crates/nearcache/src/command/table.rs"
(cd "$root" && cargo run -q -p nearcache --example command_table -- "127.0.0.1:$redis_port") >"$work/table.rs"
mv "$work/table.rs" "$out"
echo "wrote $out from $(redis-server --version | awk '{print $3}' | sed 's/^v=//')" >&2
