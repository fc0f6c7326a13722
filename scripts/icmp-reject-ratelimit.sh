#!/usr/bin/env bash
# Measures (docs/results.md) what a client faster than 1 request/s sees from an nft `reject`
# (kube-proxy's answer for a Service without endpoints): two throwaway namespaces joined by a
# veth, removed at exit. Needs root, ip, nft, python3. RATE (req/s) and COUNT set the load.
set -euo pipefail
A=zlicmp-c; B=zlicmp-n
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add $A; ip netns add $B
ip link add vc netns $A type veth peer name vn netns $B
ip -n $A addr add 192.168.77.1/24 dev vc; ip -n $A link set vc up; ip -n $A link set lo up
ip -n $B addr add 192.168.77.2/24 dev vn; ip -n $B link set vn up; ip -n $B link set lo up
ip netns exec $B nft -f - <<'NFT'
table ip t {
  chain input { type filter hook input priority 0; tcp dport 80 reject; }
}
NFT
echo "node sysctls: icmp_ratelimit=$(ip netns exec $B sysctl -n net.ipv4.icmp_ratelimit) ms, icmp_msgs_burst=$(ip netns exec $B sysctl -n net.ipv4.icmp_msgs_burst), icmp_ratemask=$(ip netns exec $B sysctl -n net.ipv4.icmp_ratemask)"
ip netns exec $A python3 - "${RATE:-20}" "${COUNT:-100}" <<'PY'
# Open loop, like `zonelab load`: one new connection every 1/RATE s, each on its own thread.
import socket, sys, time, collections, threading
rate, count = float(sys.argv[1]), int(sys.argv[2])
t0 = time.time(); out = [None] * count
def one(i):
    s = socket.socket(); s.settimeout(1.0); start = round(time.time() - t0, 2)
    try:
        s.connect(("192.168.77.2", 80)); r = "ok"
    except ConnectionRefusedError: r = "refused"
    except socket.timeout: r = "timeout"
    except OSError as e: r = "error:" + e.strerror
    finally: s.close()
    out[i] = (start, r)
ts = []
for i in range(count):
    th = threading.Thread(target=one, args=(i,)); th.start(); ts.append(th)
    time.sleep(max(0.0, (i + 1) / rate - (time.time() - t0)))
for th in ts: th.join()
print("first 12:", [r for _, r in out[:12]])
print("totals:", dict(collections.Counter(r for _, r in out)))
print("refusals after the first 6, started at t =", [t for t, r in out[6:] if r == "refused"])
PY
