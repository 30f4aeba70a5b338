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


def raw(api: ApiClient, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
        content_type: str = "application/json") -> tuple[int, Any]:
    """One API call on plain JSON; returns (status, body), 404 as (404, None); raises on other errors."""
    try:
        resp = api.call_api(path, method, body=body,
                            header_params={"Accept": "application/json", "Content-Type": content_type},
                            auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout)[0]
    except ApiException as exc:
        if exc.status == 404:
            return 404, None
        raise
    data = resp.data
    return resp.status, json.loads(data) if data else None
