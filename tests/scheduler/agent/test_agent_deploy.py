"""The chart's agent (deploy/manifests, rendered from deploy/chart/gpusched) stays in step with
the code: flags the agent accepts, contract names, least privilege.
(test_agent_integration.py applies the same manifests to a real API server.)"""
from __future__ import annotations

import argparse

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
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
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
    host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
    assert host_paths == ["/var/cache/gpusched/models"]  # nothing else of the host is mounted


def test_rbac_is_what_the_agent_uses():
    role = manifests.one("ClusterRole", "gpusched-agent")
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    assert rules[("", "nodes")] == {"get", "list", "patch"}
    assert rules[("", "events")] == {"create"}
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
