"""Re-vendor the schemas test_kubernetes.py validates the manifests against (not run by the tests).

Run in a throwaway venv:
    python -m venv /tmp/v && /tmp/v/bin/pip install kubernetes-validate==1.37.0 \
        cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/v/bin/python tests/k8s-schemas/vendor.py
Core kinds: kubernetes-validate's copy of kubernetes-json-schema (strict: no unknown fields), the
definitions pruned to those the kinds reach. prometheus-operator kinds: the pydantic models
cloudcoil generates from the operator's CRDs, exported as JSON Schema and made strict the same way.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

HERE = Path(__file__).parent
KUBERNETES = "v1.33.0"
CORE = {"deployment-apps-v1.json", "service-v1.json"}
OPERATOR = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def core() -> None:
    source = files("kubernetes_validate") / "kubernetes-json-schema" / f"{KUBERNETES}-local-strict"
    out = HERE / f"kubernetes-{KUBERNETES}-strict"
    out.mkdir(exist_ok=True)
    everything = json.loads((source / "_definitions.json").read_text())
    definitions = everything["$defs"]
    wanted: set[str] = set()
    todo = set()
    for name in CORE:
        schema = json.loads((source / name).read_text())
        (out / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        todo |= _refs(schema)
    while todo:
        ref = todo.pop()
        key = ref.split("#/$defs/", 1)[1]
        if key not in wanted:
            wanted.add(key)
            todo |= _refs(definitions[key])
    pruned = {**everything, "$defs": {k: definitions[k] for k in sorted(wanted)}}
    (out / "_definitions.json").write_text(json.dumps(pruned, indent=1, sort_keys=True) + "\n")


def _strict(node: object) -> object:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if "properties" in node and node.get("type") == "object":
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def operator() -> None:
    from cloudcoil.models.prometheus_operator import v1

    out = HERE / "prometheus-operator-v0.80.1"
    out.mkdir(exist_ok=True)
    for kind in OPERATOR:
        schema = getattr(v1, kind).model_json_schema(by_alias=True, mode="validation")
        path = out / f"{kind.lower()}-monitoring-v1.json"
        path.write_text(json.dumps(_strict(schema), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    core()
    operator()
