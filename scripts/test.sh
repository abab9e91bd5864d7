#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy (warnings are errors) and all tests.
# The integration tests start their own redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# tests/capture.rs captures loopback traffic with tcpdump; the nearcache crate links libpcap
# (live capture, `pcap-config` comes with its headers); tests/operability.rs checks /metrics
# with promtool; tests/deploy.rs verifies the systemd unit with systemd-analyze.
scripts/deps.sh tcpdump:tcpdump promtool:prometheus systemd-analyze:systemd
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
