"""A (connect, read) timeout pair reaches urllib3 as connect and read, not as a total: a
watch asks for (10, 330) and must stay open for minutes, not be cut after 10 s."""
from __future__ import annotations

import urllib3
from kubernetes.client import ApiClient, Configuration

from scheduler.kube.client import request


class _Resp:
    status = 200


def _captured(timeout):
    seen = {}
    api = ApiClient(Configuration(host="https://127.0.0.1:1"))

    def fake(method, url, **kw):
        seen.update(kw)
        return _Resp()
    api.rest_client.pool_manager.request = fake
    request(api, "GET", "/api/v1/pods", query={"watch": "true"}, timeout=timeout)
    return seen["timeout"]


def test_a_pair_is_connect_and_read():
    t = _captured((10, 330))
    assert isinstance(t, urllib3.Timeout)
    assert (t.total, t.connect_timeout, t._read) == (None, 10, 330)


def test_a_number_is_the_total():
    t = _captured(5.0)
    assert t.total == 5.0
