#!/usr/bin/env bash
# Validates the Kubernetes manifests offline, as .ci/run calls it: every *.yaml under
# deploy/k8s/ (or the directory given) against the schemas of a pinned Kubernetes version,
# strictly (an unknown or misspelt field is an error), with the schemas that the PyPI package
# kubernetes-validate carries (no cluster, no download at run time beyond that package).
#
# Beside the schemas it checks what they cannot see:
#   * YAML: a key given twice in one mapping (PyYAML keeps the last one silently; kubectl refuses);
#   * KEDA's ScaledObject (a CRD, no schema in the package): apiVersion keda.sh/v1alpha1,
#     scaleTargetRef naming a Deployment of these manifests, min <= max replicas, a
#     prometheus trigger with serverAddress, query and threshold, every trigger value a string;
#   * kustomization.yaml: it lists every manifest of the base and no optional (CRD) one;
#   * across files: a Deployment's selector matches its pod labels, a Service selects some
#     Deployment's pods and names container ports that exist, probes use declared ports.
#
# Usage: scripts/validate-manifests.sh [DIR]      # default deploy/k8s
# Environment:
#   ASDSWEEP_K8S_VENV     venv to create or reuse (default target/venv-k8s)
#   ASDSWEEP_K8S_VERSION  Kubernetes version to validate against (default 1.33.0)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE=1.37.0   # carries schemas of Kubernetes 1.11 … 1.37
K8S_VERSION="${ASDSWEEP_K8S_VERSION:-1.33.0}"
VENV="${ASDSWEEP_K8S_VENV:-target/venv-k8s}"
DIR="${1:-deploy/k8s}"

die() { echo "scripts/validate-manifests.sh: $*" >&2; exit 1; }

# Python with its venv module, from Debian's packages when missing (as scripts/test.sh
# installs PostgreSQL and Chromium): a fresh machine runs .ci/run as it is.
ensure_python_venv() {
  if command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "needs python3 with its venv module (install them by hand: no apt-get here)"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "needs python3 and python3-venv; installing them needs root (or sudo)"
    sudo=(sudo)
  fi
  echo "scripts/validate-manifests.sh: installing Debian's python3 and python3-venv" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
}

[ -d "$DIR" ] || die "no directory $DIR"
if [ ! -x "$VENV/bin/python" ]; then
  ensure_python_venv
  python3 -m venv "$VENV" || die "cannot create a venv at $VENV"
fi
if ! "$VENV/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("kubernetes-validate") != sys.argv[1])' \
    "$KUBERNETES_VALIDATE" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE" \
    || die "cannot install kubernetes-validate==$KUBERNETES_VALIDATE from PyPI into $VENV"
fi

exec "$VENV/bin/python" - "$DIR" "$K8S_VERSION" <<'PY'
import sys
from pathlib import Path

import kubernetes_validate
import yaml

root, version = Path(sys.argv[1]), sys.argv[2]
errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping_without_duplicates)

files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
if not files:
    sys.exit(f"scripts/validate-manifests.sh: no *.yaml under {root}")

# (file, document) of every object, by kind.
objects = []
kustomizations = []
for path in files:
    try:
        docs = [d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        fail(path, f"not valid YAML: {e}")
        continue
    if not docs:
        fail(path, "holds no document")
    for i, doc in enumerate(docs):
        where = f"{path} (document {i + 1})"
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            fail(where, "not a Kubernetes object (apiVersion and kind are required)")
            continue
        if doc["kind"] == "Kustomization":
            kustomizations.append((path, doc))
            continue
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            fail(where, f"{doc['kind']} without metadata.name")
            continue
        objects.append((path, doc))

deployments = {d["metadata"]["name"]: d for _, d in objects if d["kind"] == "Deployment"}

# Built-in kinds: the schemas, strictly.
for path, doc in objects:
    what = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["apiVersion"].startswith("keda.sh/"):
        continue
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        print(f"ok    {path}: {what} (Kubernetes {version}, strict)")
    except kubernetes_validate.SchemaNotFoundError:
        fail(path, f"{what}: no schema for apiVersion {doc['apiVersion']} kind {doc['kind']} in Kubernetes {version}"
                   " (a misspelt kind, a removed API, or a CRD this script does not know)")
    except kubernetes_validate.ValidationError as e:
        at = ".".join(str(p) for p in e.path) or "(top level)"
        fail(path, f"{what}: at {at}: {e.message}")
    except kubernetes_validate.VersionNotSupportedError:
        sys.exit(f"scripts/validate-manifests.sh: kubernetes-validate has no schemas for Kubernetes {version}")

# KEDA ScaledObject: a CRD; the fields this project uses, checked by hand.
SCALED_OBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                      "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
for path, doc in objects:
    if not doc["apiVersion"].startswith("keda.sh/"):
        continue
    what = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["apiVersion"] != "keda.sh/v1alpha1" or doc["kind"] != "ScaledObject":
        fail(path, f"{what}: expected apiVersion keda.sh/v1alpha1 kind ScaledObject, got {doc['apiVersion']} {doc['kind']}")
        continue
    spec = doc.get("spec") or {}
    for key in sorted(set(spec) - SCALED_OBJECT_SPEC):
        fail(path, f"{what}: unknown field spec.{key}")
    target = (spec.get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        fail(path, f"{what}: spec.scaleTargetRef.name {target!r} is not a Deployment of these manifests"
                   f" ({', '.join(sorted(deployments)) or 'none'})")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        fail(path, f"{what}: needs integer 0 <= minReplicaCount ({low!r}) <= maxReplicaCount ({high!r})")
    triggers = spec.get("triggers") or []
    if not any(t.get("type") == "prometheus" for t in triggers if isinstance(t, dict)):
        fail(path, f"{what}: no trigger of type prometheus in spec.triggers")
    for i, t in enumerate(triggers):
        meta = t.get("metadata") or {} if isinstance(t, dict) else {}
        for key, value in meta.items():
            if not isinstance(value, str):
                fail(path, f"{what}: spec.triggers[{i}].metadata.{key} must be a string (quote it), got {value!r}")
        if isinstance(t, dict) and t.get("type") == "prometheus":
            for key in ("serverAddress", "query", "threshold"):
                if not meta.get(key):
                    fail(path, f"{what}: prometheus trigger spec.triggers[{i}] lacks metadata.{key}")
    print(f"ok    {path}: {what} (KEDA, checked by this script)")

# kustomization.yaml: the base lists every built-in manifest and no CRD one.
for path, doc in kustomizations:
    listed = doc.get("resources") or []
    base = path.parent
    for r in listed:
        if not (base / r).is_file():
            fail(path, f"resources lists {r}, which does not exist")
    listed_paths = {(base / r).resolve() for r in listed}
    for p, d in objects:
        if p.parent != base:
            continue
        crd = d["apiVersion"].startswith("keda.sh/")
        if crd and p.resolve() in listed_paths:
            fail(path, f"lists {p.name}, which needs KEDA: keep it out of the base")
        if not crd and p.resolve() not in listed_paths:
            fail(path, f"does not list {p.name} ({d['kind']}/{d['metadata']['name']})")
    print(f"ok    {path}: Kustomization ({len(listed)} resources)")

# Across objects: selectors, ports, probes.
pod_labels = {}
for name, d in deployments.items():
    spec = d.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    pod_labels[name] = labels
    if any(labels.get(k) != v for k, v in selector.items()):
        fail(f"Deployment/{name}", f"selector {selector} does not match the pod labels {labels}")
    for c in (template.get("spec") or {}).get("containers") or []:
        ports = c.get("ports") or []
        numbers = {p.get("containerPort") for p in ports}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler = c.get(probe) or {}
            for kind in ("grpc", "httpGet", "tcpSocket"):
                port = (handler.get(kind) or {}).get("port")
                if port is None:
                    continue
                names = {p.get("name") for p in ports}
                if port not in numbers and port not in names:
                    fail(f"Deployment/{name}", f"container {c.get('name')}: {probe} uses port {port!r}, which it does not declare")
for path, d in objects:
    if d["kind"] != "Service":
        continue
    name = d["metadata"]["name"]
    selector = (d.get("spec") or {}).get("selector") or {}
    matched = [n for n, labels in pod_labels.items() if all(labels.get(k) == v for k, v in selector.items())]
    if not matched:
        fail(path, f"Service/{name}: selector {selector} matches the pods of no Deployment here")
    for p in (d.get("spec") or {}).get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        for n in matched:
            containers = ((deployments[n]["spec"]["template"].get("spec") or {}).get("containers")) or []
            declared = {q.get("name") for c in containers for q in c.get("ports") or []} | \
                       {q.get("containerPort") for c in containers for q in c.get("ports") or []}
            if target not in declared:
                fail(path, f"Service/{name}: port {p.get('name') or p.get('port')} targets {target!r}, "
                           f"which Deployment/{n} does not declare")

if errors:
    print(f"\nscripts/validate-manifests.sh: {len(errors)} problem(s) in {root}:", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    sys.exit(1)
print(f"scripts/validate-manifests.sh: {len(files)} files under {root} valid (Kubernetes {version})")
PY
