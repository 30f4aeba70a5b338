"""deploy/examples/vllm-podmonitor.yaml scrapes the example's vLLM pods with the target
labels the autoscaler's queries read."""
from __future__ import annotations

from pathlib import Path

import yaml

from autoscaler.signals import Labels

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_podmonitor_selects_the_example_pods_and_names_them():
    (pm,) = list(yaml.safe_load_all((EXAMPLES / "vllm-podmonitor.yaml").read_text()))
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "vllm-autoscaled.yaml").read_text()) if d]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    (ias,) = [d for d in docs if d["kind"] == "InferenceAutoscaler"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pm["kind"] == "PodMonitor" and pm["apiVersion"] == "monitoring.coreos.com/v1"
    spec = pm["spec"]
    assert spec["namespaceSelector"]["matchNames"] == [dep["metadata"]["namespace"]]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert ias["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    (ep,) = spec["podMetricsEndpoints"]
    ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    assert ep["port"] in ports and ep["path"] == "/metrics"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in ep["relabelings"]}
    default = Labels()
    assert targets[default.namespace] == ["__meta_kubernetes_namespace"]
    assert targets[default.pod] == ["__meta_kubernetes_pod_name"]
