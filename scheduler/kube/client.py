"""Building an API client: a kubeconfig when given, else the in-cluster service account."""
from __future__ import annotations

import json
from typing import Any

from kubernetes import config as kconfig
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import ApiException


def api_client(kubeconfig: str | None = None, qps_pool: int = 32) -> ApiClient:
    cfg = Configuration()
    if kubeconfig:
        kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except kconfig.ConfigException as exc:
            raise SystemExit(f"no --kubeconfig given and not running in a cluster ({exc})") from None
    cfg.connection_pool_maxsize = qps_pool
    return ApiClient(cfg)


def request(api: ApiClient, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
            timeout: float | tuple[float, float] = 10.0, content_type: str = "application/json"):
    """Send one request with the client's auth and TLS; returns the unread response
    (its `.response` is urllib3's, for streaming). Non-2xx raises ApiException."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, headers, body, post = api.param_serialize(
        method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, post, _request_timeout=timeout)
    if not 200 <= resp.status < 300:
        data = resp.read()
        raise ApiException(status=resp.status, reason=f"{resp.reason}: {data[:500].decode(errors='replace')}")
    return resp


def raw(api: ApiClient, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
        content_type: str = "application/json", query: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One API call on plain JSON; returns (status, body), 404 as (404, None); raises on other errors."""
    try:
        resp = request(api, method, path, query=query, body=body, timeout=timeout, content_type=content_type)
    except ApiException as exc:
        if exc.status == 404:
            return 404, None
        raise
    data = resp.read()
    return resp.status, json.loads(data) if data else None
