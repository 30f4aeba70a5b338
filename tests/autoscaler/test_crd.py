"""The CRD agrees with autoscaler/spec.py and rejects bad specs by its OpenAPI schema.
The CEL rules (x-kubernetes-validations) run only in a real API server: the
integration tests cover those; here they are checked to be present."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from autoscaler.spec import SERVERS, SIGNAL_TYPES, SpecError, parse_spec

CRD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "gpusched" / "crds" / "inferenceautoscalers.gpusched.io.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]

GOOD = {
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama-8b"},
    "minReplicas": 1, "maxReplicas": 8, "model": "meta-llama/Llama-3.1-8B-Instruct",
    "signals": [{"type": "queueDepth", "target": 5, "server": "vllm"},
                {"type": "gpuUtilization", "target": 80},
                {"type": "promql", "target": 2, "query": "avg(x)"}],
    "warmReplicas": 1,
    "behavior": {"tolerance": 0.1, "scaleUp": {"maxPodsPerPeriod": 4, "periodSeconds": 15},
                 "scaleDown": {"stabilizationWindowSeconds": 300, "maxPercentPerPeriod": 100},
                 "panic": {"threshold": 2, "windowSeconds": 6, "stableWindowSeconds": 60}},
    "slo": {"queueWaitSeconds": 2, "ttftSeconds": 3, "percentile": 0.99, "targetUtilization": 0.8},
    "coldStartSeconds": 45, "serviceRatePerReplica": 2.5, "concurrencyPerReplica": 32,
    "forecast": {"enabled": True, "alpha": 0.5, "beta": 0.3, "scaleUp": False},
    "activation": {"type": "requestCount", "metric": "istio_requests_total",
                   "namespaceLabel": "destination_service_namespace", "labels": {"destination_service_name": "llm"}},
    "scaleToZeroAfterSeconds": 600,
}


def test_names():
    assert CRD["metadata"]["name"] == "inferenceautoscalers.gpusched.io"
    names = CRD["spec"]["names"]
    assert (CRD["spec"]["group"], CRD["spec"]["scope"]) == ("gpusched.io", "Namespaced")
    assert (names["kind"], names["plural"], names["shortNames"]) == ("InferenceAutoscaler", "inferenceautoscalers",
                                                                    ["ias"])
    assert VERSION["name"] == "v1alpha1" and VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns():
    cols = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert cols["Target"] == ".spec.scaleTargetRef.name"
    assert (cols["Min"], cols["Max"]) == (".spec.minReplicas", ".spec.maxReplicas")
    assert (cols["Current"], cols["Desired"], cols["Warm"]) == (
        ".status.currentReplicas", ".status.desiredReplicas", ".status.warmReplicas")
    assert cols["Age"] == ".metadata.creationTimestamp"


def test_schema_and_parser_agree():
    assert SPEC["properties"]["signals"]["items"]["properties"]["type"]["enum"] == list(SIGNAL_TYPES)
    assert SPEC["properties"]["signals"]["items"]["properties"]["server"]["enum"] == list(SERVERS)
    parse_spec(GOOD)  # every field the CRD shows, the parser takes
    required_with = {"serviceRatePerReplica": "slo"}  # the CEL rule and the parser both say so
    for key in SPEC["properties"]:
        bogus = copy.deepcopy(GOOD)
        bogus.pop(key, None)
        if key in SPEC["required"] or required_with.get(key) in bogus:
            with pytest.raises(SpecError):
                parse_spec(bogus)
        else:
            parse_spec(bogus)


def test_cel_rules_present():
    rules = {r["rule"]: r["message"] for r in SPEC["x-kubernetes-validations"]}
    assert rules["self.maxReplicas >= self.minReplicas"] == "maxReplicas must be >= minReplicas"
    assert "serviceRatePerReplica is required with slo" in rules["!has(self.slo) || has(self.serviceRatePerReplica)"]
    item_rules = " ".join(r["rule"] for r in SPEC["properties"]["signals"]["items"]["x-kubernetes-validations"])
    assert "promql" in item_rules and "self.query.matches" in item_rules


def _walk(node, path="$"):
    yield path, node
    for k, v in (node.get("properties") or {}).items():
        yield from _walk(v, f"{path}.{k}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def test_structural():
    # a structural schema: every node has a type (the API server refuses the CRD otherwise)
    missing = [p for p, n in _walk(SCHEMA) if "type" not in n]
    assert missing == []
    status = SCHEMA["properties"]["status"]["properties"]
    assert {"currentReplicas", "desiredReplicas", "warmReplicas", "lastDecision", "conditions"} <= set(status)
    assert set(status["lastDecision"]["properties"]) >= {"time", "replicas", "reason", "rule"}
    assert set(status["conditions"]["items"]["properties"]) >= {
        "type", "status", "reason", "message", "lastTransitionTime"}


def _bad(**changes):
    d = copy.deepcopy(GOOD)
    for path, v in changes.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = v
    return d


def schema_errors(schema, value, path="spec") -> list[str]:
    """The OpenAPI v3.0 subset this CRD uses (type, enum, bounds, required, lengths);
    the CEL rules are left to the API server (test_crd_apiserver.py)."""
    errs: list[str] = []
    t = schema.get("type")
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if t and (not isinstance(value, kinds[t]) or (t in ("integer", "number") and isinstance(value, bool))):
        return [f"{path}: not {t}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in enum")
    if t in ("integer", "number"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
            errs.append(f"{path}: below minimum")
        if hi is not None and (value >= hi if schema.get("exclusiveMaximum") else value > hi):
            errs.append(f"{path}: above maximum")
    if t == "string":
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 30):
            errs.append(f"{path}: length")
    if t == "object":
        errs += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in schema.get("properties", {}):
                errs += schema_errors(schema["properties"][k], v, f"{path}.{k}")
    if t == "array":
        if len(value) > schema.get("maxItems", 1 << 30):
            errs.append(f"{path}: too many items")
        for i, v in enumerate(value):
            errs += schema_errors(schema["items"], v, f"{path}[{i}]")
    return errs


def test_schema_takes_the_good_spec():
    assert schema_errors(SPEC, GOOD) == []


@pytest.mark.parametrize("spec,err", [
    (_bad(minReplicas=-1), "spec.minReplicas: below minimum"),
    (_bad(maxReplicas=0), "spec.maxReplicas: below minimum"),
    (_bad(warmReplicas=-1), "spec.warmReplicas: below minimum"),
    (_bad(signals__0__target=-5), "spec.signals[0].target: below minimum"),
    (_bad(signals__0__target=0), "spec.signals[0].target: below minimum"),
    (_bad(signals__0__type="cpu"), "spec.signals[0].type: 'cpu' not in enum"),
    (_bad(signals__0__server="sglang"), "spec.signals[0].server: 'sglang' not in enum"),
    (_bad(slo__percentile=1), "spec.slo.percentile: above maximum"),
    (_bad(behavior__scaleUp__periodSeconds=0), "spec.behavior.scaleUp.periodSeconds: below minimum"),
    (_bad(scaleTargetRef={"kind": "Deployment"}), "spec.scaleTargetRef.name: required"),
    (_bad(maxReplicas="8"), "spec.maxReplicas: not integer"),
    (_bad(concurrencyPerReplica=0), "spec.concurrencyPerReplica: below minimum"),
    (_bad(concurrencyPerReplica=5000), "spec.concurrencyPerReplica: above maximum"),
    (_bad(concurrencyPerReplica=2.5), "spec.concurrencyPerReplica: not integer"),
], ids=["min<0", "max=0", "warm<0", "target<0", "target=0", "type", "server", "percentile", "period", "no-name",
        "string", "concurrency=0", "concurrency>4096", "concurrency-float"])
def test_schema_rejects(spec, err):
    assert err in schema_errors(SPEC, spec)
    with pytest.raises(SpecError):  # and the parser too
        parse_spec(spec)
