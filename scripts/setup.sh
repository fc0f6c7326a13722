#!/usr/bin/env bash
# One-command set-up of a fresh Debian/Ubuntu machine for zonelab's tests and demo: installs
# (with apt-get, only what is missing) every tool the lab, its agents and the tests execute —
# the list `zonelab` checks before it builds a lab (crates/netlab/src/preflight.rs):
#   nft (nftables), iptables-restore/iptables (iptables), ip (iproute2), nsenter (util-linux),
#   conntrack (conntrack),
#   sysctl/kill/pgrep (procps), python3 (netlab tests), curl (demo), etcd (etcd-server: the
#   etcd store backend and its tests).
# kubectl is not a Debian package: the integration tests need it on PATH (this script says so).
# Needs root. Used by .ci/run and demo.sh; README's "Run the tests" starts here.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh installs packages: run it as root (sudo scripts/setup.sh)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for pair in nft:nftables iptables-restore:iptables iptables:iptables ip:iproute2 nsenter:util-linux \
            conntrack:conntrack sysctl:procps kill:procps pgrep:procps python3:python3 curl:curl \
            etcd:etcd-server; do
  tool=${pair%%:*}; pkg=${pair#*:}
  if ! command -v "$tool" >/dev/null 2>&1; then
    case " ${need[*]-} " in *" $pkg "*) ;; *) need+=("$pkg") ;; esac
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
else
  echo "every tool zonelab needs is installed"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "note: kubectl is not installed; the kubectl integration tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2
fi
command -v cargo >/dev/null 2>&1 || echo "note: cargo (Rust) is required to build zonelab: https://rustup.rs" >&2
# The python `kubernetes` client (crates/zonelab/tests/tls.rs drives it over https), from PyPI
# into the python3 on PATH.
if ! python3 -c 'import kubernetes' >/dev/null 2>&1; then
  echo "installing the python kubernetes client"
  python3 -m pip install -q kubernetes \
    || python3 -m pip install -q --break-system-packages kubernetes \
    || apt-get install -y -qq python3-kubernetes
fi
