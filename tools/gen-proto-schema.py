#!/usr/bin/env python3
"""Generate crates/api/src/proto/schema.rs: the protobuf field table zonelab decodes with.

Usage:
    tools/gen-proto-schema.py PROTO_ROOT GO_ROOT [SOURCE_NOTE] > crates/api/src/proto/schema.rs

SOURCE_NOTE (optional) is written into the header, e.g. the upstream commits the inputs came from.

PROTO_ROOT holds upstream's go-to-protobuf output, e.g.
PROTO_ROOT/k8s.io/api/core/v1/generated.proto and
PROTO_ROOT/k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto (copies of
kubernetes/api and kubernetes/apimachinery at the same release).

GO_ROOT holds the Go sources of the same packages (GO_ROOT/k8s.io/api/core/v1/*.go, ...).
They decide what the JSON form of a decoded message looks like, exactly as Go's encoding/json
renders the struct the protobuf decodes into: the JSON name, `omitempty`, pointer or not, and
embedded structs inlined (`VolumeSource json:""`). Standard library only.
"""

import os
import re
import sys

PACKAGES = [
    "k8s.io/apimachinery/pkg/runtime",
    "k8s.io/apimachinery/pkg/runtime/schema",
    "k8s.io/apimachinery/pkg/api/resource",
    "k8s.io/apimachinery/pkg/util/intstr",
    "k8s.io/apimachinery/pkg/apis/meta/v1",
    "k8s.io/api/core/v1",
    "k8s.io/api/apps/v1",
    "k8s.io/api/policy/v1",
    "k8s.io/api/discovery/v1",
    "k8s.io/api/coordination/v1",
    "k8s.io/api/events/v1",
    "k8s.io/api/authorization/v1",
    "k8s.io/api/autoscaling/v1",
    "k8s.io/api/authentication/v1",
    "k8s.io/api/rbac/v1",
]

SCALARS = {
    "string": "Str",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "uint32": "U32",
    "uint64": "U64",
    "double": "F64",
    "float": "F32",
    "bytes": "Bytes",
}

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
# Messages with a JSON form of their own (their MarshalJSON), by full proto name.
SPECIALS = {
    META + "Time": "Time",
    META + "MicroTime": "MicroTime",
    META + "Duration": "Duration",
    META + "FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}

FIELD_RE = re.compile(
    r"^\s*(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;"
)
MAP_RE = re.compile(r"^\s*map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")


def parse_proto(path):
    """Messages of one generated.proto: (package, [(name, markers, [field])])."""
    package = None
    messages = []
    comments = []
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s.startswith("package "):
                package = s[len("package "):].rstrip(";").strip()
            elif s.startswith("//"):
                comments.append(s)
            elif s.startswith("message ") and current is None:
                name = s.split()[1]
                markers = [c for c in comments if "+" in c]
                current = (name, markers, [])
                comments = []
            elif s == "}" and current is not None:
                messages.append(current)
                current = None
            elif current is not None:
                m = MAP_RE.match(line)
                if m:
                    current[2].append(
                        {"label": "map", "key": m.group(1), "type": m.group(2),
                         "name": m.group(3), "number": int(m.group(4))})
                else:
                    m = FIELD_RE.match(line)
                    if m:
                        current[2].append(
                            {"label": m.group(1), "type": m.group(2),
                             "name": m.group(3), "number": int(m.group(4))})
                comments = []
            elif s == "":
                pass
            else:
                comments = []
    return package, messages


# Key in a parsed struct marking a kind (a struct embedding TypeMeta inline).
KIND = "kind"
GO_FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?([\w.*\[\]]+)\s+`([^`]*)`")
TAG_RE = re.compile(r'(\w+):"([^"]*)"')


def parse_go(dirpath):
    """{struct: {proto number: go field info}} for every struct in the package's Go files."""
    structs = {}
    for fname in sorted(os.listdir(dirpath)):
        if not fname.endswith(".go") or fname.endswith("_test.go"):
            continue
        with open(os.path.join(dirpath, fname), encoding="utf-8") as f:
            lines = f.read().split("\n")
        current = None
        for line in lines:
            m = re.match(r"^type (\w+) struct \{", line)
            if m:
                current = structs.setdefault(m.group(1), {})
                continue
            if current is None:
                continue
            if line.startswith("}"):
                current = None
                continue
            if re.match(r"^\s*(metav1\.)?TypeMeta\s+`json:\"(,inline)?\"`", line):
                current[KIND] = True
                continue
            m = GO_FIELD_RE.match(line)
            if not m:
                continue
            tags = dict(TAG_RE.findall(m.group(3)))
            if "protobuf" not in tags:
                continue
            parts = tags["protobuf"].split(",")
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            json_parts = tags.get("json", "").split(",")
            current[int(parts[1])] = {
                "embedded": m.group(1) is None,
                "go_name": m.group(1) or m.group(2).lstrip("*").split(".")[-1],
                "go_type": m.group(2),
                "json": json_parts[0],
                "omitempty": "omitempty" in json_parts[1:],
                "omitzero": "omitzero" in json_parts[1:],
            }
    return structs


def group_of(go_dir, pkg_path):
    doc = os.path.join(go_dir, "doc.go")
    if os.path.exists(doc):
        with open(doc, encoding="utf-8") as f:
            for line in f:
                m = re.match(r"^// \+groupName=(.*)$", line.strip())
                if m:
                    return m.group(1).strip()
    # apps, policy, autoscaling: the group is the package's parent directory.
    return pkg_path.split("/")[-2]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    proto_root, go_root = sys.argv[1], sys.argv[2]
    note = sys.argv[3] if len(sys.argv) == 4 else ""
    all_msgs = {}  # full name -> (markers, fields, package, go struct info)
    groups = []  # (group, version, proto package)
    for pkg in PACKAGES:
        package, messages = parse_proto(os.path.join(proto_root, pkg, "generated.proto"))
        go_dir = os.path.join(go_root, pkg)
        go = parse_go(go_dir) if os.path.isdir(go_dir) else {}
        if pkg.startswith("k8s.io/api/"):
            groups.append((group_of(go_dir, pkg), pkg.split("/")[-1], package))
        for name, markers, fields in messages:
            all_msgs[package + "." + name] = (markers, fields, package, go.get(name, {}))
    names = sorted(all_msgs)
    index = {n: i for i, n in enumerate(names)}

    def resolve(t, package):
        if t in SCALARS:
            return "Ty::" + SCALARS[t]
        full = t.lstrip(".") if "." in t else package + "." + t
        if full not in index:
            sys.exit("unknown type %s in %s" % (t, package))
        return "Ty::Msg(%d)" % index[full]

    out = []
    out.append("// @generated by tools/gen-proto-schema.py from upstream generated.proto and types.go")
    out.append("// (kubernetes/api and kubernetes/apimachinery). Do not edit. Regenerate with:")
    out.append("//   python3 tools/gen-proto-schema.py PROTO_ROOT GO_ROOT [NOTE] > crates/api/src/proto/schema.rs")
    if note:
        out.append("// Sources: " + note)
    out.append("//! The protobuf messages of the served API groups: field numbers, types and JSON names.")
    out.append("//!")
    out.append("//! Start at [`MESSAGES`]; [`GROUPS`] maps an API group/version to its proto package.")
    out.append("")
    out.append("use super::table::{Card::*, Field, Group, Message, Presence::*, Special, Ty};")
    out.append("")
    out.append("/// API group, version and the proto package holding its kinds.")
    out.append("pub static GROUPS: &[Group] = &[")
    for g, v, p in groups:
        out.append('    Group { group: "%s", version: "%s", package: "%s" },' % (g, v, p))
    out.append("];")
    out.append("")
    out.append("/// Every message, sorted by full name (binary search); `Ty::Msg(i)` indexes this table.")
    out.append("pub static MESSAGES: &[Message] = &[")
    for n in names:
        markers, fields, package, go = all_msgs[n]
        special = SPECIALS.get(n)
        if special is None and any("+protobuf.nullable=true" in m for m in markers):
            special = "Items"
        kind = go.get(KIND, False) and (package.startswith("k8s.io.api.") or package == META[:-1])
        fs = []
        for f in sorted(fields, key=lambda f: f["number"]):
            g = go.get(f["number"])
            ty = resolve(f["type"], package)
            if f["label"] == "map":
                card = "Map"
            elif f["label"] == "repeated":
                card = "Rep"
            else:
                card = "One"
            json_name = f["name"]
            presence = "Wire"
            if g is not None:
                if g["json"] == "-":
                    continue
                go_type = g["go_type"]
                pointer = go_type.startswith("*")
                is_msg = ty.startswith("Ty::Msg")
                items = is_msg and SPECIALS.get(names[int(ty[8:-1])]) is None and any(
                    "+protobuf.nullable=true" in m for m in all_msgs[names[int(ty[8:-1])]][0])
                if g["embedded"] and g["json"] == "":
                    presence = "Inline"
                else:
                    json_name = g["json"] or g["go_name"]
                    if pointer:
                        presence = "Wire" if g["omitempty"] else "WireOrNull"
                    elif card != "One" or items or f["type"] == "bytes":
                        presence = "OmitEmpty" if g["omitempty"] else "NullIfEmpty"
                    elif is_msg:
                        presence = "OmitEmpty" if g["omitzero"] else "Always"
                    else:
                        presence = "OmitEmpty" if g["omitempty"] else "Always"
            if card == "Map":
                card = "Map(%s)" % resolve(f["key"], package)
            fs.append('Field { number: %d, json: "%s", ty: %s, card: %s, presence: %s }'
                      % (f["number"], json_name, ty, card, presence))
        out.append("    Message {")
        out.append('        name: "%s",' % n)
        out.append("        kind: %s," % ("true" if kind else "false"))
        out.append("        special: %s," % ("Some(Special::%s)" % special if special else "None"))
        if fs:
            out.append("        fields: &[")
            for f in fs:
                out.append("            " + f + ",")
            out.append("        ],")
        else:
            out.append("        fields: &[],")
        out.append("    },")
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
