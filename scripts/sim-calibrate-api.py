#!/usr/bin/env python3
# The live lab API's write latency and watch delivery, for the simulator's calibration
# (docs/simulator.md): N ConfigMap creates over the lab's loopback HTTPS listener as the lab's
# admin (client certificate from `zonelab lab kubeconfig`) and one watch on them, deleted after.
# Usage: scripts/sim-calibrate-api.py API_PORT [N] [KUBECONFIG]; prints p5/median/p95/max in ms
# as JSON. KUBECONFIG defaults to $KUBECONFIG (export KUBECONFIG=$(zonelab lab kubeconfig)).
import base64, http.client, json, os, re, ssl, sys, tempfile, threading, time
port = int(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
ns = "default"
def tls_context(path):
    text = open(path).read()
    data = lambda key: base64.b64decode(re.search(rf"{key}: (\S+)", text).group(1))
    ctx = ssl.create_default_context(cadata=data("certificate-authority-data").decode())
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        open(cert, "wb").write(data("client-certificate-data"))
        open(key, "wb").write(data("client-key-data"))
        ctx.load_cert_chain(cert, key)
    return ctx
ctx = tls_context(sys.argv[3] if len(sys.argv) > 3 else os.environ["KUBECONFIG"])
def conn(): return http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
c = conn(); c.request("GET", f"/api/v1/namespaces/{ns}/configmaps"); rv = json.loads(c.getresponse().read())["metadata"]["resourceVersion"]
seen = {}
def watch():
    w = conn(); w.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}")
    r = w.getresponse()
    buf = b""
    while True:
        ch = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not ch: return
        buf += ch
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            t = time.time()
            try:
                e = json.loads(line)
                name = e["object"]["metadata"]["name"]
                if e["type"] == "ADDED": seen.setdefault(name, t)
            except Exception: pass
threading.Thread(target=watch, daemon=True).start()
time.sleep(0.5)
res = []
c = conn()
for i in range(n):
    name = f"zonelab-calibrate-{int(time.time()*1000)}-{i}"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
    t0 = time.time(); c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body, {"Content-Type": "application/json"}); r = c.getresponse(); r.read(); t1 = time.time()
    res.append((name, t0, t1, r.status)); time.sleep(0.1)
time.sleep(1)
for name, *_ in res:
    c.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}"); c.getresponse().read()
w = sorted((t1 - t0) * 1e3 for _, t0, t1, _ in res)
d = sorted((seen[nm] - t1) * 1e3 for nm, t0, t1, _ in res if nm in seen)
du = sorted((seen[nm] - t0) * 1e3 for nm, t0, t1, _ in res if nm in seen)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(json.dumps({"writes": len(w), "write_ms": [q(w, .05), q(w, .5), q(w, .95), max(w)], "watch_after_answer_ms": [q(d, .05), q(d, .5), q(d, .95), max(d)] if d else None, "watch_after_send_ms": [q(du, .05), q(du, .5), q(du, .95)] if du else None, "statuses": sorted(set(s for *_, s in res))}))
