"""Helpers for the autoscaler's security tests (tests/security/test_autoscaler_*.py):
the CRD as the chart ships it, InferenceAutoscaler bodies, the chart's autoscaler RBAC
rendered for a list of namespaces, and a token kubeconfig of its ServiceAccount."""
from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.testbed import crd as testbed_crd
from tests.deploy import manifests

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = testbed_crd.GROUP, testbed_crd.VERSION, testbed_crd.PLURAL
SA_NAME = "gpusched-autoscaler"
SA = manifests.sa_user(SA_NAME)


def install_crd(cluster) -> None:
    """Create or replace the CRD with this checkout's schema, and wait until it is served."""
    testbed_crd.install_crd(cluster.api_client())


def ias_body(name: str, target: str, **spec) -> dict:
    s = {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 4,
         "signals": [{"type": "promql", "target": 5, "query": "vector(12)"}]}
    s.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": name}, "spec": s}


def ias_path(ns: str, name: str | None = None) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}" + (f"/{name}" if name else "")


def autoscaler_rbac(namespaces: list[str], *extra: str) -> list[dict]:
    """The chart's autoscaler ServiceAccount and RBAC objects for ``autoscaler.namespaces``
    (helm template, as deploy/render.py renders it)."""
    mod = manifests.render_module()
    values = ["--set", f"autoscaler.namespaces={{{','.join(namespaces)}}}", *extra]
    docs = manifests.load_docs(mod.helm_template(manifests.helm_binary(), *values))
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Namespace"}
    return [d for d in docs if d["kind"] in kinds and (d["metadata"]["name"].startswith(SA_NAME)
                                                     or d["kind"] == "Namespace")]


def apply(cluster, docs: list[dict], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(docs))
    r = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    assert r.returncode == 0, r.stderr


def sa_kubeconfig(cluster, path: Path, sa: str = SA_NAME, ns: str = manifests.NAMESPACE) -> Path:
    token = cluster.kubectl("create", "token", sa, "-n", ns).stdout.strip()
    assert token, "no token for the autoscaler's ServiceAccount"
    kc = yaml.safe_load(cluster.kubeconfig.read_text())
    kc["users"] = [{"name": sa, "user": {"token": token}}]
    kc["contexts"][0]["context"]["user"] = sa
    path.write_text(yaml.safe_dump(kc))
    return path


def api_from(kubeconfig: Path):
    from kubernetes import config as kconfig
    from kubernetes.client import ApiClient, Configuration

    cfg = Configuration()
    kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return ApiClient(cfg)


def can_i(cluster, verb: str, resource: str, namespace: str | None, as_user: str = SA) -> bool:
    """`kubectl auth can-i` as the autoscaler: resource "deployments.apps/scale" checks the subresource."""
    res, _, sub = resource.partition("/")
    cmd = ["auth", "can-i", verb, res, *([f"--subresource={sub}"] if sub else []), f"--as={as_user}",
           *(["-n", namespace] if namespace else ["--all-namespaces"])]
    r = cluster.kubectl(*cmd)
    assert r.stdout.strip() in ("yes", "no"), (cmd, r.stdout, r.stderr)
    return r.stdout.strip() == "yes"


def create_ias(cluster, ns: str, body: dict) -> dict:
    """Create through the typed client, whose ApiException carries the API server's message."""
    from kubernetes import client
    return client.CustomObjectsApi(cluster.api_client()).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body)
