#!/usr/bin/env bash
# The mount-table cost of starting lab processes with `ip netns exec` against `nsenter --net`
# (docs/performance.md, "Session 10"): creates N network namespaces `PREFIX-bx-I`, starts one
# `sleep 300` in each (MODE exec: `ip netns exec`, MODE nsenter: `nsenter --net=/run/netns/NS`),
# then times `ip netns add`/`del` and a process start with N namespaces present, and prints the
# kernel's unreclaimable slab. Removes everything it made, also when interrupted.
# Usage: sudo scripts/netns-mount-bench.sh N exec|nsenter [PREFIX]   (time it: `time sudo …`)
set -euo pipefail
N=${1:?number of namespaces}; MODE=${2:?exec or nsenter}; PREFIX=${3:-l150}
case "$MODE" in exec|nsenter) ;; *) echo "MODE must be exec or nsenter" >&2; exit 2 ;; esac
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns list | awk -v p="$PREFIX-b" 'index($1, p) == 1 {print "netns del " $1}' | ip -force -batch - 2>/dev/null || true
}
trap cleanup EXIT
us() { local s; s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; echo $(( ($(date +%s%N) - s) / 1000 )); }
avg() { local a=0 i; for i in 1 2 3 4 5 6 7 8 9 10; do a=$((a + $("$@" "$i"))); done; echo $((a / 10)); }
for i in $(seq 1 "$N"); do
  ip netns add "$PREFIX-bx-$i"
  if [ "$MODE" = exec ]; then ip netns exec "$PREFIX-bx-$i" sleep 300 &
  else nsenter --net="/run/netns/$PREFIX-bx-$i" sleep 300 & fi
  pids+=($!)
done
sleep 1
echo "mode $MODE: $(ls /run/netns | wc -l) namespaces; $(awk '/SUnreclaim/{print int($2/1024)}' /proc/meminfo) MiB unreclaimable slab"
add() { us ip netns add "$PREFIX-by-$1"; }
exe() { us ip netns exec "$PREFIX-by-$1" true; }
nse() { us nsenter --net="/run/netns/$PREFIX-by-$1" true; }
del() { us ip netns del "$PREFIX-by-$1"; }
echo "ip netns add: $(avg add) us"
echo "ip netns exec NS true: $(avg exe) us"
echo "nsenter --net NS true: $(avg nse) us"
echo "ip netns del: $(avg del) us"
