#!/usr/bin/env python3
# The simulator's calibration figures of one run's --out directory, live or simulated
# (docs/simulator.md): phases after the fault, request round trips, client start after t0,
# pod bound -> ready, rule transaction times (live agents' logs). Usage: scripts/sim-calibrate-run.py OUT
import json, sys, glob, os
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))
t0 = r["started_at_ms"]
rq = [json.loads(l) for l in open(f"{out}/requests.jsonl")]
tl = [json.loads(l) for l in open(f"{out}/timeline.jsonl")]
q = lambda v, p: round(v[min(len(v) - 1, int(p * len(v)))], 2) if v else None
qs = lambda v: [q(sorted(v), p) for p in (.05, .5, .95)] + [round(max(v), 2) if v else None, len(v)]
res = {"mode": r["mode"], "seed": r["seed"]}
ph = r["phases"]; f = ph["fault_s"]
res["phases_after_fault"] = {k: round(ph[k] - f, 3) for k in ("nodes_not_ready_s", "endpoints_removed_s", "proxies_converged_s", "pods_evicted_s", "replacements_ready_s", "capacity_restored_s") if ph.get(k) is not None}
res["window_failure_share"] = r["window_failure_share"]; res["dead_share"] = r["dead_endpoint_share"]
res["failed"] = [r["requests"]["failed"], r["requests"]["total"]]; res["error_window_s"] = r["error_window_s"]
res["stale_conntrack"] = r["requests"].get("stale_conntrack")
ok = [x["end"] - x["start"] for x in rq if x["outcome"] == "ok" and x["conn"] == "new"]
res["request_rtt_ms"] = qs(ok)
first = {}
for x in rq:
    k = (x["client"], x["client_zone"]); first[k] = min(first.get(k, 1e99), x["start"])
res["client_first_request_after_t0_ms"] = sorted(round(v - t0, 1) for v in first.values())
bound = {}; ready = {}
for e in tl:
    if e.get("event") == "pod-bound" and e["at"] > t0: bound.setdefault(e["pod"], e["at"])
    if e.get("event") == "pod-ready" and e.get("ready") and e["pod"] in bound: ready.setdefault(e["pod"], e["at"])
res["pod_bound_to_ready_ms"] = qs([ready[p] - bound[p] for p in ready])
# endpoints change observed -> last proxy applying it
durs = []
for fn in glob.glob(f"{out}/logs/agent-*.out"):
    for l in open(fn):
        try: d = json.loads(l)
        except Exception: continue
        if d.get("event") == "proxy-sync" and "duration_ms" in d: durs.append(d["duration_ms"])
res["rule_apply_ms"] = qs(durs)
kinds = {}
for e in tl: kinds[e.get("event")] = kinds.get(e.get("event"), 0) + 1
res["timeline_kinds"] = kinds
print(json.dumps(res))
