#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy (warnings are errors) and all tests.
# The integration tests start their own redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# tests/capture.rs captures loopback traffic with tcpdump (scripts/deps.sh installs libpcap's
# headers for every build); tests/operability.rs checks /metrics with promtool; tests/deploy.rs
# verifies the systemd unit with systemd-analyze.
scripts/deps.sh tcpdump:tcpdump promtool:prometheus systemd-analyze:systemd
# redis-py, for the client-library cases of tests/auth.rs and tests/tls.rs (they say so in
# their output and are left out where it cannot be installed).
python3 -c 'import redis' 2>/dev/null || python3 -m pip install --quiet redis 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages redis 2>/dev/null || true
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
# The admin dashboard in a real browser (its script runs only there): Debian's chromium and
# playwright-core from npm, against the debug binary the tests built.
echo "== dashboard in headless Chromium"
if scripts/deps.sh chromium:chromium node:nodejs npm:npm; then
    NEARCACHE_BIN="${CARGO_TARGET_DIR:-target}/debug/nearcache" scripts/dashboard-test.sh
else
    echo "skipped: chromium, node or npm could not be installed"
fi
