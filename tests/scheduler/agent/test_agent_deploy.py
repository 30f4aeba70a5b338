"""The chart's agent (deploy/manifests, rendered from deploy/chart/gpusched) stays in step with
the code: flags the agent accepts, contract names, least privilege.
(test_agent_integration.py applies the same manifests to a real API server.)"""
from __future__ import annotations

import argparse

import pytest

from scheduler import contract
from scheduler.agent.cli import add_arguments
from tests.deploy import manifests


def daemonset() -> dict:
    return manifests.one("DaemonSet", "gpusched-agent")


def test_daemonset_args_are_flags_the_agent_accepts():
    c = daemonset()["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][0] == "agent"
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(c["args"][1:])
    assert args.cache_dir == ["/var/cache/gpusched/models"] and args.require_gpus
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/var/cache/gpusched/models" in mounts
    assert args.metrics_port == c["ports"][0]["containerPort"]


def test_daemonset_least_privilege():
    spec = daemonset()["spec"]["template"]["spec"]
    assert not spec.get("nodeSelector")  # GPU nodes are chosen by node affinity: see below
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    c = spec["containers"][0]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert not sc.get("privileged")
    assert "nvidia.com/gpu" not in str(c.get("resources"))  # watches GPUs, allocates none
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    host = {v["hostPath"]["path"]: v["name"] for v in spec["volumes"] if "hostPath" in v}
    assert sorted(host) == ["/proc", "/var/cache/gpusched/models"]  # nothing else of the host is mounted


def test_host_proc_is_read_only_and_is_the_agents_proc_root():
    # NVML names host PIDs: the agent reads their cgroups through the host's /proc, mounted
    # read-only and whole, rather than sharing the host's PID namespace
    spec = daemonset()["spec"]["template"]["spec"]
    assert not spec.get("hostPID")
    (vol,) = [v["name"] for v in spec["volumes"] if v.get("hostPath", {}).get("path") == "/proc"]
    c = spec["containers"][0]
    (m,) = [m for m in c["volumeMounts"] if m["name"] == vol]
    assert m["readOnly"] is True and "subPath" not in m and "subPathExpr" not in m
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(c["args"][1:]).proc_root == m["mountPath"] == "/host/proc"


def test_rbac_is_what_the_agent_uses():
    role = manifests.one("ClusterRole", "gpusched-agent")
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    assert rules[("", "nodes")] == {"get", "list", "patch"}
    assert rules[("", "events")] == {"create"}
    assert rules[("", "pods")] == {"list"}  # its node's pods, to name GPU processes' pods
    assert all("*" not in v for v in rules.values())
    sa = manifests.one("ServiceAccount", "gpusched-agent")
    assert daemonset()["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_admission_policy_names_the_contract_keys():
    vap = manifests.one("ValidatingAdmissionPolicy", "gpusched-agent-own-node")
    binding = manifests.one("ValidatingAdmissionPolicyBinding", "gpusched-agent-own-node")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"] and binding["spec"]["validationActions"] == ["Deny"]
    variables = {v["name"]: v["expression"] for v in vap["spec"]["variables"]}
    own = variables["ownAnnotations"]
    for key in (contract.GPUS, contract.MODEL_CACHE, contract.REPORTED_AT):
        assert f"'{key}'" in own
    assert contract.PREFETCH not in own
    for key in (contract.GPU_PRODUCT_LABEL, contract.GPU_MEMORY_LABEL, contract.GPU_COUNT_LABEL):
        assert f"'{key}'" in variables["ownLabels"]
    assert "authentication.kubernetes.io/node-name" in variables["tokenNode"]
    sa = daemonset()["metadata"]["namespace"], daemonset()["spec"]["template"]["spec"]["serviceAccountName"]
    assert f"system:serviceaccount:{sa[0]}:{sa[1]}" in vap["spec"]["matchConditions"][0]["expression"]


def _matches(term: dict, labels: dict[str, str]) -> bool:
    """A nodeSelectorTerm against a Node's labels (the In and Exists operators the chart uses)."""
    for e in term.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
        assert e["operator"] in ("In", "Exists"), e
    return True


# (a Node's labels, whether the agent runs there); the terms are ORed
GPU_NODES = [
    ("GPU Operator (GFD)", {"nvidia.com/gpu.present": "true", "feature.node.kubernetes.io/pci-10de.present": "true"}, True),
    ("NFD only, no GPU Operator", {"feature.node.kubernetes.io/pci-10de.present": "true"}, True),
    ("GKE GPU pool", {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}, True),
    ("CPU node with NFD", {"feature.node.kubernetes.io/pci-8086.present": "true"}, False),
    ("GFD says no GPU", {"nvidia.com/gpu.present": "false"}, False),
    ("unlabelled", {}, False),
]


@pytest.mark.parametrize("labels, runs", [r[1:] for r in GPU_NODES], ids=[r[0] for r in GPU_NODES])
def test_gpu_nodes_without_the_gpu_operator(labels, runs):
    terms = (daemonset()["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
             ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"])
    assert any(_matches(t, labels) for t in terms) is runs


def test_liveness_probe_is_the_agents_health_endpoint():
    c = daemonset()["spec"]["template"]["spec"]["containers"][0]
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] == c["ports"][0]["name"]
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(c["args"][1:])
    # kubelet restarts after failureThreshold x periodSeconds of 503s, i.e. after the agent's own limit
    assert args.stale_after > args.interval
    assert (args.gpu_metrics, args.gpu_labels) == ("auto", "auto")


def _render(*sets: str) -> list[dict]:
    mod = manifests.render_module()
    args = [a for s in sets for a in ("--set", s)]
    return manifests.load_docs(mod.helm_template(manifests.helm_binary(), *args))


def _agent_args(docs: list[dict]) -> list[str]:
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "gpusched-agent"]
    return ds["spec"]["template"]["spec"]["containers"][0]["args"]


# (agent.gpuMetrics, the flag the agent gets); true/false from before the modes still work
@pytest.mark.parametrize("value, flag", [("auto", "auto"), ("never", "never"), ("false", "never"), ("true", "always")])
def test_gpu_metrics_value(value, flag):
    assert f"--gpu-metrics={flag}" in _agent_args(_render(f"agent.gpuMetrics={value}"))


def test_gpu_labels_never_leaves_the_agent_no_label_to_change():
    docs = _render("agent.gpuLabels=never")
    assert "--gpu-labels=never" in _agent_args(docs)
    (vap,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] ==
              "gpusched-agent-own-node"]
    assert {v["name"]: v["expression"] for v in vap["spec"]["variables"]}["ownLabels"] == "[]"


def test_an_affinity_value_replaces_the_gpu_node_terms():
    docs = _render("agent.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                   ".nodeSelectorTerms[0].matchExpressions[0].key=pool",
                   "agent.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                   ".nodeSelectorTerms[0].matchExpressions[0].operator=Exists")
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "gpusched-agent"]
    terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "pool", "operator": "Exists"}]}]


def test_pod_gpu_metrics_off_mounts_nothing_of_proc_and_lists_no_pods():
    docs = _render("agent.podGpuMetrics=false")
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "gpusched-agent"]
    spec = ds["spec"]["template"]["spec"]
    assert [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v] == ["/var/cache/gpusched/models"]
    assert not [a for a in _agent_args(docs) if a.startswith("--proc-root")]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "gpusched-agent"]
    assert not [r for r in role["rules"] if "pods" in r["resources"]]
    # the cache quota still needs the pod list on its own
    (role,) = [d for d in _render("agent.podGpuMetrics=false", "agent.cacheQuota=10Gi")
               if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "gpusched-agent"]
    assert [r["verbs"] for r in role["rules"] if "pods" in r["resources"]] == [["list"]]
