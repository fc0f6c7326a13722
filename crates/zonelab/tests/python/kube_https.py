#!/usr/bin/env python3
"""The python `kubernetes` client against `zonelab server --pki-dir` over https.

Usage: kube_https.py ADMIN_KUBECONFIG NODE_KUBECONFIG NAMESPACE

Uses the kubeconfigs as they are (client certificate auth, the server verified against the
kubeconfig's CA): as the admin, lists namespaces, creates NAMESPACE and a ConfigMap in it and
lists it back; as the node, tries to create a namespace. Prints one JSON object with what
happened (the Rust test, crates/zonelab/tests/tls.rs, asserts on it); exits 1 only when the
client itself could not be used.
"""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def api(kubeconfig):
    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


def main():
    admin_conf, node_conf, ns = sys.argv[1:4]
    out = {}
    admin = api(admin_conf)
    out["namespaces"] = sorted(n.metadata.name for n in admin.list_namespace().items)
    admin.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="greeting"), data={"hello": "https"})
    admin.create_namespaced_config_map(ns, cm)
    got = admin.read_namespaced_config_map("greeting", ns)
    out["configmap"] = got.data
    out["configmaps"] = [c.metadata.name for c in admin.list_namespaced_config_map(ns).items]
    node = api(node_conf)
    try:
        node.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns + "-node")))
        out["node_create"] = {"status": 201}
    except ApiException as e:
        body = json.loads(e.body)
        out["node_create"] = {"status": e.status, "reason": body.get("reason"),
                              "message": body.get("message")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
