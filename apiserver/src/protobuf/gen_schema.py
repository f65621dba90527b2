#!/usr/bin/env python3
"""Writes schema.rs: the protobuf field table for the kinds kubectl sends as
`application/vnd.kubernetes.protobuf`.

Field numbers and protobuf types come from the `k8s-pb` crate (prost
attributes). Protobuf alone cannot tell how Kubernetes renders a field as
JSON: Go's encoder writes every non-pointer field (so `generateName: ""` is on
the wire) while its JSON form drops zero values tagged `omitempty`, and a few
embedded structs are inlined into their parent in JSON. So the Go struct tags
of k8s.io/api and k8s.io/apimachinery (same Kubernetes release as k8s-pb,
v0.35.0 for k8s-pb 0.9) supply the JSON name, `omitempty`, pointer-ness and
`inline`; their protobuf tag numbers are checked against k8s-pb. When given,
k8s-openapi's serde names are used as a cross-check of the JSON names.

Usage (the Go dirs are checkouts of github.com/kubernetes/api and
github.com/kubernetes/apimachinery at tag v0.35.0; --k8s-pb defaults to the
crate in the local cargo registry):
  python3 gen_schema.py --go-api DIR --go-apimachinery DIR [--k8s-pb DIR] \
      [--k8s-openapi DIR/src/v1_33] > schema.rs
"""

import argparse
import glob
import os
import re
import sys

# (apiVersion, kind, proto message) of the objects decode() accepts.
ROOTS = [
    ("v1", "Namespace", "k8s.io.api.core.v1.Namespace"),
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("v1", "Secret", "k8s.io.api.core.v1.Secret"),
    ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
    ("v1", "Service", "k8s.io.api.core.v1.Service"),
    ("v1", "ServiceAccount", "k8s.io.api.core.v1.ServiceAccount"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "k8s.io.api.autoscaling.v1.HorizontalPodAutoscaler"),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "k8s.io.api.authorization.v1.SelfSubjectAccessReview"),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", "k8s.io.api.authorization.v1.SelfSubjectRulesReview"),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "k8s.io.api.authorization.v1.SubjectAccessReview"),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview", "k8s.io.api.authorization.v1.LocalSubjectAccessReview"),
    ("authentication.k8s.io/v1", "SelfSubjectReview", "k8s.io.api.authentication.v1.SelfSubjectReview"),
    ("authentication.k8s.io/v1", "TokenRequest", "k8s.io.api.authentication.v1.TokenRequest"),
    ("batch/v1", "Job", "k8s.io.api.batch.v1.Job"),
    ("batch/v1", "CronJob", "k8s.io.api.batch.v1.CronJob"),
    # Every other built-in kind: `kubectl create quota|role|rolebinding|
    # clusterrole|clusterrolebinding|priorityclass|poddisruptionbudget|
    # ingress` send theirs as protobuf, and so may any client-go program.
    ("v1", "Binding", "k8s.io.api.core.v1.Binding"),
    ("v1", "Endpoints", "k8s.io.api.core.v1.Endpoints"),
    ("v1", "Event", "k8s.io.api.core.v1.Event"),
    ("v1", "LimitRange", "k8s.io.api.core.v1.LimitRange"),
    ("v1", "Node", "k8s.io.api.core.v1.Node"),
    ("v1", "PersistentVolume", "k8s.io.api.core.v1.PersistentVolume"),
    ("v1", "PersistentVolumeClaim", "k8s.io.api.core.v1.PersistentVolumeClaim"),
    ("v1", "PodTemplate", "k8s.io.api.core.v1.PodTemplate"),
    ("v1", "ReplicationController", "k8s.io.api.core.v1.ReplicationController"),
    ("v1", "ResourceQuota", "k8s.io.api.core.v1.ResourceQuota"),
    ("apps/v1", "ControllerRevision", "k8s.io.api.apps.v1.ControllerRevision"),
    ("apps/v1", "DaemonSet", "k8s.io.api.apps.v1.DaemonSet"),
    ("apps/v1", "ReplicaSet", "k8s.io.api.apps.v1.ReplicaSet"),
    ("apps/v1", "StatefulSet", "k8s.io.api.apps.v1.StatefulSet"),
    ("autoscaling/v1", "Scale", "k8s.io.api.autoscaling.v1.Scale"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler"),
    ("coordination.k8s.io/v1", "Lease", "k8s.io.api.coordination.v1.Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "k8s.io.api.discovery.v1.EndpointSlice"),
    ("events.k8s.io/v1", "Event", "k8s.io.api.events.v1.Event"),
    ("networking.k8s.io/v1", "Ingress", "k8s.io.api.networking.v1.Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy", "k8s.io.api.networking.v1.NetworkPolicy"),
    ("policy/v1", "Eviction", "k8s.io.api.policy.v1.Eviction"),
    ("policy/v1", "PodDisruptionBudget", "k8s.io.api.policy.v1.PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "k8s.io.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "k8s.io.api.rbac.v1.ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role", "k8s.io.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "k8s.io.api.rbac.v1.RoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass", "k8s.io.api.scheduling.v1.PriorityClass"),
    ("storage.k8s.io/v1", "StorageClass", "k8s.io.api.storage.v1.StorageClass"),
]

# Messages with their own JSON form (a Ty variant each, decoded by special.rs).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
}

# Go `type X []string`: a message {repeated string items = 1} on the wire, a
# bare array in JSON.
STRING_LISTS = {
    "k8s.io.api.authentication.v1.ExtraValue",
    "k8s.io.api.authorization.v1.ExtraValue",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs",
}

SCALARS = {"string": "Str", "bool": "Bool", "int32": "I32", "int64": "I64", "double": "F64", "bytes": "Bytes"}


def fail(msg):
    sys.exit("gen_schema: " + msg)


def warn(msg):
    print("gen_schema: warning: " + msg, file=sys.stderr)


# ---- k8s-pb: prost structs -------------------------------------------------

FIELD_RE = re.compile(
    r"#\[prost\((?P<attr>[^\]]*)\)\]\s*pub (?:r#)?(?P<name>\w+):(?P<ty>.*?)(?=\n\s*(?:///|#\[|\}))", re.S)
TYPE_PATH_RE = re.compile(r"((?:super::)*(?:[a-z_][a-z0-9_]*::)*[A-Z]\w*)")
NOT_MESSAGES = {"Option", "String", "Vec", "BTreeMap", "Box"}


def read_k8s_pb(root):
    """Returns {proto full name: [(tag, rust name, proto type, card, msg type)]}."""
    messages = {}
    for path in glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), os.path.join(root, "src")).split(os.sep)
        text = open(path).read()
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
            fields = []
            for f in FIELD_RE.finditer(m.group(2) + "\n}"):
                attr = f.group("attr")
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                mp = re.match(r'btree_map = "string, (\w+)"', attr)
                if mp:
                    card, ptype = "map", mp.group(1)
                else:
                    ptype = attr.split(",")[0].split("=")[0].strip()
                    card = "repeated" if ", repeated" in attr else "single"
                msg = None
                if ptype == "message":
                    paths = [p for p in TYPE_PATH_RE.findall(f.group("ty"))
                             if p.split("::")[-1] not in NOT_MESSAGES]
                    msg = resolve(module, paths[-1])
                elif ptype not in SCALARS:
                    fail("unknown prost type %r in %s" % (attr, m.group(1)))
                fields.append((tag, f.group("name"), ptype, card, msg))
            messages["k8s.io." + ".".join(module) + "." + m.group(1)] = fields
    return messages


def resolve(module, path):
    parts = path.split("::")
    mod = list(module)
    while parts[0] == "super":
        mod.pop()
        parts.pop(0)
    return "k8s.io." + ".".join(mod + parts)


# ---- Go struct tags ---------------------------------------------------------

def read_go_package(directory):
    """Returns {lowercased struct name: {proto tag: (json name, opts, go type)}}."""
    structs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        if path.endswith("_test.go") or "zz_generated" in path or path.endswith(".pb.go"):
            continue
        text = open(path).read()
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.S | re.M):
            fields = {}
            for line in m.group(2).splitlines():
                line = line.strip()
                if line.startswith("//") or "`" not in line:
                    continue
                decl, tags = line.split("`")[0].split(), dict(re.findall(r'(\w+):"([^"]*)"', line.split("`")[1]))
                if not re.match(r"\w+,\d+", tags.get("protobuf", "")):
                    continue
                go_type = decl[-1]
                jname, _, opts = tags.get("json", "").partition(",")
                ptag = tags["protobuf"].split(",")
                fields[int(ptag[1])] = (jname, opts.split(","), go_type)
            structs[m.group(1).lower()] = fields
    return structs


def go_dir(full, go_api, go_apimachinery):
    parts = full.split(".")[2:-1]  # drop k8s.io and the message name
    if parts[0] == "api":
        return os.path.join(go_api, *parts[1:])
    if parts[0] == "apimachinery":
        return os.path.join(go_apimachinery, *parts[1:])
    fail("no Go source for " + full)


# ---- k8s-openapi cross-check -----------------------------------------------

def openapi_names(openapi_root, full):
    """JSON names k8s-openapi serializes for this type, or None if absent."""
    parts = full.split(".")[2:]
    directory = os.path.join(openapi_root, *parts[:-1])
    if not os.path.isdir(directory):
        return None
    for path in glob.glob(os.path.join(directory, "*.rs")):
        text = open(path).read()
        if re.search(r"pub struct %s \{" % parts[-1], text, re.I):
            return set(re.findall(r'serialize_field\(&mut state, "([^"]+)"', text))
    return None


# ---- generation -------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-pb", default=next(iter(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/k8s-pb-0.9.0"))), None))
    ap.add_argument("--go-api", required=True)
    ap.add_argument("--go-apimachinery", required=True)
    ap.add_argument("--k8s-openapi")
    args = ap.parse_args()

    pb = read_k8s_pb(args.k8s_pb)
    go_cache = {}
    out_msgs = {}
    queue = [r[2] for r in ROOTS]
    while queue:
        full = queue.pop(0)
        if full in out_msgs or full in SPECIAL or full in STRING_LISTS:
            continue
        if full not in pb:
            fail("message %s not in k8s-pb" % full)
        directory = go_dir(full, args.go_api, args.go_apimachinery)
        if directory not in go_cache:
            go_cache[directory] = read_go_package(directory)
        go_struct = go_cache[directory].get(full.split(".")[-1].lower())
        if go_struct is None:
            fail("no Go struct for " + full)
        rows = []
        for tag, rname, ptype, card, msg in sorted(pb[full]):
            if tag not in go_struct:
                fail("%s field %d (%s) has no Go protobuf tag" % (full, tag, rname))
            jname, opts, go_type = go_struct[tag]
            if jname == "-":
                continue
            if re.sub(r"_", "", rname).lower() != jname.lower() and "inline" not in opts:
                warn("%s.%s: Go JSON name %r" % (full, rname, jname))
            if msg in SPECIAL:
                ty = SPECIAL[msg]
            elif msg in STRING_LISTS:
                ty = "StrList"
            elif msg:
                ty = "Msg(&%s)" % const_name(msg)
            else:
                ty = SCALARS[ptype]
            if msg:
                queue.append(msg)
            if card == "repeated":
                c = "Repeated"
            elif card == "map":
                c = "Map"
            elif "inline" in opts:
                if not msg:
                    fail("inline scalar in " + full)
                c, jname = "Inline", ""
            elif not msg and not go_type.startswith("*") and "omitempty" in opts:
                c = "OmitEmpty"
            else:
                c = "Single"
            rows.append((tag, jname, ty, c))
        if args.k8s_openapi:
            names = openapi_names(args.k8s_openapi, full)
            if names is not None:
                for _, jname, _, c in rows:
                    if c != "Inline" and jname not in names:
                        warn("%s: %r not in k8s-openapi" % (full, jname))
        out_msgs[full] = rows

    w = sys.stdout.write
    w("// @generated by gen_schema.py from k8s-pb 0.9 field numbers and the Go struct\n"
      "// tags of k8s.io/api and k8s.io/apimachinery v0.35.0. Do not edit by hand.\n"
      "//\n"
      "// One line per field: Field(protobuf number, JSON name, type, cardinality).\n\n"
      "use super::{Card::*, Field, Ty::*};\n\n")
    w("/// (apiVersion, kind, message) of the objects `decode` accepts.\n")
    w("pub(super) static KINDS: &[(&str, &str, &[Field])] = &[\n")
    for av, kind, full in ROOTS:
        w("    (%s, %s, &%s),\n" % (q(av), q(kind), const_name(full)))
    w("];\n")
    for full in sorted(out_msgs):
        rows = out_msgs[full]
        w("\n/// %s\n" % full)
        w("static %s: [Field; %d] = [\n" % (const_name(full), len(rows)))
        for tag, jname, ty, c in rows:
            w("    Field(%d, %s, %s, %s),\n" % (tag, q(jname), ty, c))
        w("];\n")


def q(s):
    return '"%s"' % s


def const_name(full):
    """k8s.io.api.core.v1.PodSpec -> CORE_V1_POD_SPEC (meta.v1.Time -> META_V1_TIME)."""
    parts = full.split(".")
    pkg = parts[-3:-1]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", parts[-1]).upper()
    return "_".join(p.upper() for p in pkg) + "_" + snake


if __name__ == "__main__":
    main()
