"""The API transport (scheduler.kube.client) against the real API server: auth by client
certificate and by bearer token, 404s, errors that say what the server said, query
strings, and connections returned to the pool."""
from __future__ import annotations

import pytest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import ApiException

from scheduler.kube.client import loads, raw, request

pytestmark = pytest.mark.integration


def test_get_create_and_404(cluster, namespace):
    api = cluster.api_client()
    status, ns = raw(api, "GET", f"/api/v1/namespaces/{namespace}")
    assert status == 200 and ns["metadata"]["name"] == namespace
    assert raw(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/absent") == (404, None)
    body = {"metadata": {"name": "cm", "labels": {"app": "x"}}, "data": {"k": "v"}}
    status, cm = raw(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert status == 201 and cm["data"] == {"k": "v"}
    patch = {"data": {"k": "w"}}
    status, cm = raw(api, "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/cm", patch,
                     content_type="application/merge-patch+json")
    assert status == 200 and cm["data"] == {"k": "w"}


def test_query_strings_reach_the_server(cluster, namespace):
    api = cluster.api_client()
    for i in range(3):
        raw(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
            {"metadata": {"name": f"q{i}", "labels": {"pick": "yes" if i else "no"}}})
    _, page = raw(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps", query={"labelSelector": "pick=yes",
                                                                                  "limit": 1})
    assert [c["metadata"]["labels"]["pick"] for c in page["items"]] == ["yes"]
    assert page["metadata"].get("continue")  # a second "yes" is on the next page


def test_errors_carry_the_status_and_the_servers_message(cluster, namespace):
    api = cluster.api_client()
    with pytest.raises(ApiException) as e:
        raw(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "Not_A_Name"}})
    assert e.value.status == 422 and "Not_A_Name" in e.value.reason


def test_bearer_token_auth_and_forbidden(cluster, namespace):
    token = cluster.kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    admin = cluster.api_client().configuration
    cfg = Configuration(host=admin.host, api_key={"authorization": token}, api_key_prefix={"authorization": "Bearer"})
    cfg.ssl_ca_cert = admin.ssl_ca_cert
    api = ApiClient(cfg)
    with pytest.raises(ApiException) as e:  # authenticated as the namespace's default SA, which may do nothing
        raw(api, "GET", "/api/v1/nodes")
    assert e.value.status == 403 and f"system:serviceaccount:{namespace}:default" in e.value.reason


def test_connections_go_back_to_the_pool(cluster, namespace):
    api = cluster.api_client()
    for _ in range(40):
        raw(api, "GET", f"/api/v1/namespaces/{namespace}")
        raw(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/absent")
    with pytest.raises(ApiException):
        raw(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "Bad_Name"}})
    resp = request(api, "GET", f"/api/v1/namespaces/{namespace}")
    loads(resp.read())
    resp.release_conn()
    pools = api.rest_client.pool_manager.pools
    pool = pools[next(iter(pools.keys()))]
    # sequential calls reuse one keep-alive connection; a leaked one would make a new one each time
    assert len(pools) == 1 and pool.num_connections <= 2


@pytest.mark.parametrize("data, want", [
    (b'{"a": 1}', {"a": 1}),
    (b'{"big": 123456789012345678901234567890}', {"big": 1.2345678901234568e+29}),  # orjson: past 64 bits, a float
    (b"[]", []),
])
def test_loads(data, want):
    assert loads(data) == want


def test_loads_refuses_what_is_not_json():
    with pytest.raises(ValueError):
        loads(b"{not json")
