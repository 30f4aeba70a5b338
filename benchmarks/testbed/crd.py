"""The InferenceAutoscaler CRD on a test bed, from the chart's own file: the demo, the
benchmarks and the integration tests install it one way."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from autoscaler.kube import GROUP, PLURAL, VERSION

CRD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "gpusched" / "crds" / \
    "inferenceautoscalers.gpusched.io.yaml"

__all__ = ["CRD_PATH", "GROUP", "PLURAL", "VERSION", "crd_body", "install_crd"]


def crd_body() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def install_crd(api_client: Any, timeout_s: float = 30.0) -> Any:
    """Create the CRD, or replace it with this checkout's schema (a test bed may hold an
    older one), and wait until it is Established and its objects can be listed.
    Returns a CustomObjectsApi on ``api_client``."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    body = crd_body()
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as e:
        if e.status != 409:
            raise
        body["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(name).metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    custom = client.CustomObjectsApi(api_client)

    def served() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        if not any(c.type == "Established" and c.status == "True" for c in conditions):
            return False
        try:  # Established, and the API server's handler for it is up
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    deadline = time.monotonic() + timeout_s
    while not served():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the InferenceAutoscaler CRD was not Established and served in {timeout_s:.0f}s")
        time.sleep(0.2)
    return custom
