#!/usr/bin/env bash
# The zonelab demo on a fresh machine: build, bring up a 3-zone x 2-node lab (network
# namespaces, real nftables kube-proxies), deploy an echo Service with 6 replicas, send
# 20 requests/s through its ClusterIP from a client pod, power zone a off after 10 s, and
# print how many requests failed and for how long. Needs root (it creates namespaces).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then echo "the demo builds network namespaces: run it as root" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
need=()
for pair in nft:nftables iptables-restore:iptables ip:iproute2 python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}"; fi
command -v cargo >/dev/null || { echo "cargo (Rust) is required" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl is required" >&2; exit 1; }

if [ -n "${ZONELAB_DEBUG:-}" ]; then
  cargo build -p zonelab && Z="$PWD/target/debug/zonelab"
else
  cargo build --release -p zonelab && Z="$PWD/target/release/zonelab"
fi
P=zdemo
PORT=${ZONELAB_DEMO_PORT:-16443}
"$Z" lab --prefix $P down >/dev/null 2>&1 || true
trap '"$Z" lab --prefix $P down >/dev/null 2>&1 || true' EXIT
ZONELAB_LOG=warn "$Z" lab --prefix $P up --zones 3 --nodes-per-zone 2 --profile fast --api-port "$PORT"
export KUBECONFIG="$("$Z" lab --prefix $P kubeconfig)"
kubectl apply -f examples/web.yaml
kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: $P-b-1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
YAML
kubectl wait --for=condition=Available deploy/web --timeout=90s
kubectl wait --for=condition=Ready pod/client --timeout=60s
kubectl get nodes -L topology.kubernetes.io/zone
kubectl get pods -o wide
IP=$(kubectl get svc web -o jsonpath='{.spec.clusterIP}')
OUT=$(mktemp -d)/requests.jsonl
echo
echo "sending 20 requests/s to http://$IP from client (zone b) for 40 s; zone a loses power at t=10s"
"$Z" lab --prefix $P exec client -- "$Z" load --target "http://$IP" --rate 20 --duration 40s --timeout 1s --out "$OUT" &
LOAD=$!
sleep 10
"$Z" lab --prefix $P fail zone a --mode power
wait $LOAD
echo
kubectl get nodes
python3 - "$OUT" <<'PY'
import json, sys, collections
rs = [json.loads(l) for l in open(sys.argv[1])]
t0 = rs[0]["start"]
failed = [r for r in rs if r["outcome"] != "ok"]
by = collections.Counter(r["outcome"] for r in rs)
print(f"\n{len(rs)} requests, {len(rs) - len(failed)} ok, {len(failed)} failed ({100.0 * len(failed) / len(rs):.1f}%): {dict(by)}")
if failed:
    a, b = (failed[0]["start"] - t0) / 1e3, (failed[-1]["start"] - t0) / 1e3
    print(f"error window: {b - a:.1f} s (first failure at t={a:.1f}s, last at t={b:.1f}s)")
zones = collections.Counter(r.get("zone") for r in rs if r["outcome"] == "ok")
print("answered by zone:", dict(zones))
PY
echo "(requests: $OUT)"
