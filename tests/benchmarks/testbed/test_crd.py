"""The one CRD installer of the demo, the benchmarks and the integration tests, on the
test bed's real kube-apiserver: it creates the CRD, and over a CRD already there puts this
checkout's back (a stale copy loses what the chart's file does not say)."""
from __future__ import annotations

import pytest

from benchmarks.testbed.crd import GROUP, PLURAL, VERSION, crd_body, install_crd

pytestmark = pytest.mark.integration

STALE = "gpusched.io/test-stale-copy"


def test_install_replaces_a_stale_crd_and_waits_until_it_is_served(cluster):
    from kubernetes import client

    api = cluster.api_client()
    install_crd(api)
    ext = client.ApiextensionsV1Api(api)
    name = crd_body()["metadata"]["name"]
    ext.patch_custom_resource_definition(name, {"metadata": {"annotations": {STALE: "yes"}}})
    assert STALE in (ext.read_custom_resource_definition(name).metadata.annotations or {})

    custom = install_crd(api)

    assert STALE not in (ext.read_custom_resource_definition(name).metadata.annotations or {})
    # served: a list answers at once, no retry needed by the caller
    assert custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)["items"] is not None
