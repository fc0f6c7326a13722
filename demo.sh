#!/usr/bin/env bash
# The zonelab demo on a fresh machine: installs what it lacks (scripts/setup.sh: nftables,
# iptables, iproute2, conntrack, ...), builds zonelab, and runs `zonelab demo`, the bundled
# AZ-outage scenario (examples/demo.yaml): 3 zones x 2 nodes in network namespaces, an echo Deployment of 6
# replicas spread over the zones, a client in every zone sending 20 requests/s through the
# Service's ClusterIP, zone a powered off at t = 30 s, fast timers, until capacity is restored
# (at most 5 minutes). It ends with the answer in plain words and writes the report to
# ./zonelab-demo/ (report.html, report.json, requests.jsonl, timeline.jsonl).
# Needs root (it creates network namespaces). ZONELAB_DEBUG=1 uses a debug build (faster to
# build); extra arguments go to `zonelab demo` (e.g. --keep, --out DIR).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then echo "the demo builds network namespaces: run it as root (sudo ./demo.sh)" >&2; exit 1; fi
scripts/setup.sh
command -v cargo >/dev/null || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }

if [ -n "${ZONELAB_DEBUG:-}" ]; then
  cargo build -p zonelab && Z="$PWD/target/debug/zonelab"
else
  cargo build --release -p zonelab && Z="$PWD/target/release/zonelab"
fi
exec "$Z" demo "$@"
