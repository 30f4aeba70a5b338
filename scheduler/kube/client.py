"""Building an API client the way kubectl users expect, and sending raw requests with it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3

from kubernetes import config as kconfig
from kubernetes.config import incluster_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import ApiException

# urllib3 retries a refused connection three times at once, logging a warning for each,
# before the caller sees the error: against an API server that is down, three warnings
# per attempt and no time gained. The callers retry with backoff themselves, so a failed
# connect is not retried here; anything else (a kept-alive connection the server had
# closed) still gets one retry.
RETRIES = urllib3.Retry(total=1, connect=0)


class KubeConfigError(Exception):
    """No usable Kubernetes configuration; the message is one line naming where it looked."""


class ApiUnreachable(ConnectionError):
    """The API server could not be connected to (refused, timed out, DNS, TLS)."""


def load_configuration(kubeconfig: str | None = None) -> Configuration:
    """The client configuration in the order kubectl users expect (controller-runtime's):
    --kubeconfig, then $KUBECONFIG (a list of files, merged), then the in-cluster service
    account, then ~/.kube/config. Raises KubeConfigError, one line naming what it tried."""
    cfg = Configuration()
    if kubeconfig:
        _load_files(kubeconfig, "--kubeconfig", cfg, split=False)
    elif os.environ.get("KUBECONFIG"):
        _load_files(os.environ["KUBECONFIG"], "$KUBECONFIG", cfg, split=True)
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.isfile(incluster_config.SERVICE_TOKEN_FILENAME):
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except kconfig.ConfigException as exc:
            raise KubeConfigError(f"in-cluster service account: {exc}") from None
    else:
        default = Path.home() / ".kube" / "config"
        if not default.is_file():
            raise KubeConfigError(f"no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG, run in a "
                                  f"cluster, or create {default}")
        _load_files(str(default), "kubeconfig", cfg, split=False)
    return cfg


def _load_files(paths: str, source: str, cfg: Configuration, *, split: bool) -> None:
    files = [p for p in paths.split(os.pathsep) if p] if split else [paths]
    found = [p for p in files if os.path.isfile(os.path.expanduser(p))]
    if not found:
        raise KubeConfigError(f"{source} {paths}: no such file")
    try:
        # Given a list, the client merges the files as kubectl does (first wins per key).
        kconfig.load_kube_config(config_file=os.pathsep.join(found), client_configuration=cfg)
    except Exception as exc:  # noqa: BLE001 - ConfigException, YAML, I/O, a malformed entry's KeyError/TypeError
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise KubeConfigError(f"{source} {paths}: {msg}") from None


def api_client(kubeconfig: str | None = None, qps_pool: int = 32) -> ApiClient:
    """A client from load_configuration (raises KubeConfigError) that fails fast on a
    connection error: see RETRIES."""
    cfg = load_configuration(kubeconfig)
    cfg.connection_pool_maxsize = qps_pool
    cfg.retries = RETRIES
    return ApiClient(cfg)


def unreachable_reason(exc: BaseException) -> str:
    """A short reason for a connection failure, without urllib3's object reprs."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        text = text.split("Failed to establish a new connection: ", 1)[-1]
    elif isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        text = "connection timed out"
    elif isinstance(reason, urllib3.exceptions.SSLError):
        text = f"TLS: {text}"
    return " ".join(text.split())


def request(api: ApiClient, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
            timeout: float | tuple[float, float] = 10.0, content_type: str = "application/json"
            ) -> urllib3.BaseHTTPResponse:
    """Send one request with the client's auth and TLS; returns urllib3's unread response
    (stream it, or `.read()`). Non-2xx raises ApiException.

    This goes straight to the client's connection pool: the generated client's
    serialisation layers cost about 0.9 ms of CPU per call, which on the extender's
    bind path is CPU that the next pod's filter waits for."""
    cfg = api.configuration
    # the client's default headers too: Impersonate-* (the tests act as the agent's ServiceAccount)
    headers = {**api.default_headers, "Accept": "application/json", "User-Agent": api.user_agent}
    auth = cfg.auth_settings().get("BearerToken")  # re-reads a rotated service-account token
    if auth and auth.get("value"):
        headers["Authorization"] = auth["value"]
    data = None
    if body is not None:
        headers["Content-Type"] = content_type
        data = body if isinstance(body, bytes) else orjson.dumps(body)
    url = cfg.host + path
    if query:
        url += "?" + urlencode(query)
    # (connect, read) as the generated client takes it; urllib3.Timeout's first positional
    # argument is *total*, which would cut every watch after `connect` seconds.
    t = urllib3.Timeout(total=timeout) if isinstance(timeout, (int, float)) else \
        urllib3.Timeout(connect=timeout[0], read=timeout[1])
    try:
        resp = api.rest_client.pool_manager.request(method, url, body=data, headers=headers, timeout=t,
                                                    preload_content=False)
    except urllib3.exceptions.MaxRetryError as exc:
        if isinstance(exc.reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                                   urllib3.exceptions.SSLError)):
            raise ApiUnreachable(f"cannot reach the API server at {cfg.host}: {unreachable_reason(exc)}") from None
        raise
    if not 200 <= resp.status < 300:
        text = resp.read()
        resp.release_conn()
        raise ApiException(status=resp.status, reason=f"{resp.reason}: {text[:500].decode(errors='replace')}")
    return resp


def loads(data: bytes) -> Any:
    """JSON from the API server: orjson (a pod decodes 3x faster); json when orjson refuses."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises the usual error on what is not JSON at all


def raw(api: ApiClient, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
        content_type: str = "application/json", query: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One API call on plain JSON; returns (status, body), 404 as (404, None); raises on other errors."""
    try:
        resp = request(api, method, path, query=query, body=body, timeout=timeout, content_type=content_type)
    except ApiException as exc:
        if exc.status == 404:
            return 404, None
        raise
    try:
        data = resp.read()
    finally:
        resp.release_conn()
    return resp.status, loads(data) if data else None
