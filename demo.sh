#!/usr/bin/env bash
# The zonelab demo on a fresh machine: build, start the API server, apply an example with
# kubectl, show what the server allocated, then stop. (The AZ-outage demo replaces this as the
# lab lands; see README.)
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null; then echo "cargo (Rust) is required" >&2; exit 1; fi
if ! command -v kubectl >/dev/null; then
  echo "kubectl is required: apt-get install -y kubectl (or see kubernetes.io/docs/tasks/tools)" >&2
  exit 1
fi
cargo build --release -p zonelab
data=${ZONELAB_DATA:-./zonelab-data}
addr=${ZONELAB_LISTEN:-127.0.0.1:6443}
./target/release/zonelab server --data-dir "$data" --listen "$addr" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
k() { kubectl --server "http://$addr" "$@"; }
k apply -f examples/web.yaml
k get svc,deploy -o wide
echo
echo "ClusterIP of web: $(k get svc web -o jsonpath='{.spec.clusterIP}') (state kept in $data)"
