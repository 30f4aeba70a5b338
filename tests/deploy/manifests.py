"""The deploy/ chart and its rendered manifests, for the tests that apply or read them.

One source: deploy/chart/gpusched. deploy/manifests/ is its `helm template` output
(deploy/render.py); test_chart.py fails when the two drift apart.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart" / "gpusched"
CRD = CHART / "crds" / "inferenceautoscalers.gpusched.io.yaml"
SCHEDULER_CONFIG = CHART / "files" / "kube-scheduler-config.yaml"
MANIFESTS = ROOT / "deploy" / "manifests"
RENDERED = MANIFESTS / "gpusched.yaml"
RENDERED_CRDS = MANIFESTS / "crds.yaml"

NAMESPACE = "gpusched-system"
AGENT_NAMESPACE = "gpusched-node"


def sa_user(name: str) -> str:
    ns = AGENT_NAMESPACE if name in ("gpusched-agent", "gpusched-dra-plugin") else NAMESPACE
    return f"system:serviceaccount:{ns}:{name}"


def load_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def docs(kind: str | None = None, name: str | None = None, path: Path = RENDERED) -> list[dict]:
    return [d for d in load_docs(path.read_text())
            if (kind is None or d["kind"] == kind) and (name is None or d["metadata"]["name"] == name)]


def one(kind: str, name: str) -> dict:
    (d,) = docs(kind, name)
    return d


def render_module():
    """deploy/render.py, imported by path (deploy/ is not a Python package)."""
    spec = importlib.util.spec_from_file_location("gpusched_deploy_render", ROOT / "deploy" / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def helm_binary() -> Path:
    """The test bed's helm, built on first use; a failure says how to build it (never a skip)."""
    from benchmarks.testbed.binaries import BuildError, ensure_helm
    try:
        return ensure_helm()
    except BuildError as exc:
        pytest.fail(f"helm is needed to lint and render deploy/chart/gpusched and could not be built: {exc}\n"
                    "Build it with `.venv/bin/gpusched cluster build` (or `./dev setup`): it comes from "
                    "benchmarks/testbed/gobuild/helm, needs Go >= 1.26 and the Go module proxy, and is "
                    "cached in ~/.cache/gpusched/bin.", pytrace=False)


# What the chart renders only when annotation shares are off (extender.annotationShares; its
# default `auto` turns them off, since the DRA plugin is on by default)
ANNOTATION_SHARES_POLICY = "gpusched-annotation-shares"


def apply(cluster, annotation_shares: bool = True) -> None:
    """Server-side apply of the rendered manifests (CRD first), as a kubectl user would.

    annotation_shares=True applies them as the chart renders with extender.annotationShares=true
    (the legacy gpusched.io/gpu-memory annotation allowed): the rendered defaults less the
    policy that refuses annotation shares (tests/deploy/test_chart.py checks that this is the
    only difference). That is this helper's default, not the chart's: the session's one API
    server keeps whatever a test applies, and most integration tests place annotation shares.
    False installs the chart's defaults as they are; allow_annotation_shares() undoes it."""
    for path in (RENDERED_CRDS, RENDERED):
        r = cluster.kubectl("apply", "--server-side", "-f", str(path))
        assert r.returncode == 0, f"{path}: {r.stderr}"
        assert "violate PodSecurity" not in r.stderr, r.stderr
    if annotation_shares:
        allow_annotation_shares(cluster)


def allow_annotation_shares(cluster) -> None:
    """What `helm upgrade --set extender.annotationShares=true` does: delete the refusing policy
    and its binding, then wait until the API server admits an annotation share again (it
    drops a policy asynchronously)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from scheduler import contract
    from tests.helpers import eventually
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        r = cluster.kubectl("delete", "--ignore-not-found", kind, ANNOTATION_SHARES_POLICY)
        assert r.returncode == 0, r.stderr
    core = client.CoreV1Api(cluster.api_client())
    probe = {"metadata": {"name": "annotation-share-probe", "annotations": {contract.GPU_MEMORY: "1Gi"}},
             "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}

    def admitted() -> bool:
        try:
            core.create_namespaced_pod("default", probe, dry_run="All")
        except ApiException as exc:
            if exc.status != 403:
                raise
            return False
        return True
    eventually(admitted, timeout=60, what="annotation shares admitted again")
