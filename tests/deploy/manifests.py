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


def apply(cluster) -> None:
    """Server-side apply of the rendered manifests (CRD first), as a kubectl user would."""
    for path in (RENDERED_CRDS, RENDERED):
        r = cluster.kubectl("apply", "--server-side", "-f", str(path))
        assert r.returncode == 0, f"{path}: {r.stderr}"
        assert "violate PodSecurity" not in r.stderr, r.stderr
