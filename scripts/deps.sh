#!/usr/bin/env bash
# Installs what nearcache's scripts and tests need on a Debian machine, when it is missing:
# redis-server and redis-tools (redis-cli, redis-benchmark), libpcap-dev (the binary links
# libpcap for `nearcache capture --interface`), and more packages named as
# arguments as BIN:PACKAGE (scripts/test.sh names what the tests use, perf.sh nutcracker).
# Safe to run repeatedly.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v pcap-config >/dev/null || need+=(libpcap-dev)
for bin_pkg in "$@"; do
    bin=${bin_pkg%%:*}
    pkg=${bin_pkg#*:}
    command -v "$bin" >/dev/null || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing: ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Installing redis-server may start a system Redis on 6379; tests never rely on it.
