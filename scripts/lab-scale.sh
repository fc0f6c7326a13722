#!/usr/bin/env bash
# Live-lab scale figures (docs/performance.md, "Lab scale"): lab up with Z zones x N nodes,
# a Deployment of P echo pods (zone spread), time until all are Ready, PSS of every lab
# process, the API server's CPU, the load average. Bounded: gives up after $LIMIT seconds.
# Usage: sudo scripts/lab-scale.sh NODES_PER_ZONE PODS [PREFIX] [API_PORT]
# PROFILE=upstream for upstream timers (default fast). Stops early when MemAvailable drops under
# MIN_FREE_MIB (4096).
# Leaves the lab up (take it down with `zonelab lab --prefix PREFIX down`).
set -euo pipefail
N=${1:?nodes per zone}; P=${2:?pods}; PREFIX=${3:-l150}; PORT=${4:-16150}
LIMIT=${LIMIT:-300}
ZL=${ZONELAB:-$(dirname "$0")/../target/debug/zonelab}
ZL=$(readlink -f "$ZL")
KUBECTL=${KUBECTL:-kubectl}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
"$ZL" lab --prefix "$PREFIX" up --zones 3 --nodes-per-zone "$N" --api-port "$PORT" --wait 300s --profile "${PROFILE:-fast}"
t1=$(date +%s.%N)
export KUBECONFIG=$("$ZL" lab --prefix "$PREFIX" kubeconfig)
sed "s/replicas: 6/replicas: $P/" "$(dirname "$0")/../examples/web.yaml" | $KUBECTL apply -f - >/dev/null
ready=0
while :; do
  now=$(date +%s.%N)
  # The ReplicaSet's count (its status writes retry on the stored object after a Conflict);
  # the Deployment's own status write still retries from its informer's copy and lags.
  ready=$($KUBECTL get rs -l app=web -o 'jsonpath={.items[0].status.readyReplicas}' 2>/dev/null || true)
  ready=${ready:-0}
  [ "$ready" -ge "$P" ] && break
  if awk -v a="$now" -v b="$t1" -v l="$LIMIT" 'BEGIN{exit !(a-b>l)}'; then echo "gave up: $ready/$P Ready"; break; fi
  avail=$(awk '/MemAvailable/{print int($2/1024)}' /proc/meminfo)
  if [ "$avail" -lt "${MIN_FREE_MIB:-4096}" ]; then echo "stopped: $avail MiB available, $ready/$P Ready"; break; fi
  sleep 1
done
t2=$(date +%s.%N)
echo "load average at Ready: $(cut -d' ' -f1-3 /proc/loadavg)"
# The pods themselves, and the Deployment's count (it lags when its status writes conflict).
echo "Deployment readyReplicas: $($KUBECTL get deploy web -o 'jsonpath={.status.readyReplicas}' 2>/dev/null || true)"
echo "pods Ready (their condition): $($KUBECTL get pods -l app=web --no-headers 2>/dev/null | awk '$2=="1/1"' | wc -l)/$P"
# Node lease ages (now - renewTime): how well the agents keep their heartbeats.
$KUBECTL get lease -n kube-node-lease -o json | python3 -c '
import json, sys, datetime, statistics
items = json.load(sys.stdin)["items"]
now = datetime.datetime.now(datetime.timezone.utc)  # after the answer: a slow list ages nothing
ages = sorted((now - datetime.datetime.fromisoformat(l["spec"]["renewTime"].replace("Z", "+00:00"))).total_seconds()
              for l in items if l.get("spec", {}).get("renewTime"))
if ages:
    print(f"node lease ages: median {statistics.median(ages):.1f} s, p90 {ages[int(len(ages) * 0.9) - 1]:.1f} s, max {ages[-1]:.1f} s over {len(ages)}")
' || true
python3 "$(dirname "$0")/lab-pss.py" "$ZL"
cfg=/run/zonelab/$PREFIX/lab-config.json
spid=$(python3 -c "import json;print(json.load(open('$cfg'))['server_pid'])")
tck=$(getconf CLK_TCK)
cpu=$(awk -v t="$tck" '{printf "%.1f", ($14+$15)/t}' /proc/$spid/stat)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v r="$ready" -v p="$P" -v cpu="$cpu" 'BEGIN{
  printf "lab up: %.1f s; %d/%d pods Ready %.1f s after apply, %.1f s after the start of lab up\n", b-a, r, p, c-b, c-a;
  printf "API server CPU so far: %s s\n", cpu }'
