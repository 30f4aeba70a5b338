"""Informer.relist against the real API server: the LIST a new leader's extender waits for
holds every object written before it was asked for, and the watch goes on after it."""
from __future__ import annotations

import threading

import pytest

from scheduler.kube.client import raw
from scheduler.kube.watch import Informer
from tests.helpers import eventually

pytestmark = pytest.mark.integration


def test_relist_lists_what_was_written_before_it_and_the_watch_goes_on(cluster, namespace):
    api = cluster.api_client()
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    lists: list[set[str]] = []
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_relist(items: list[dict]) -> None:
        with lock:
            lists.append({i["metadata"]["name"] for i in items})

    def on_event(typ: str, obj: dict) -> None:
        with lock:
            events.append((typ, obj["metadata"]["name"]))

    inf = Informer(api, path, on_event, on_relist=on_relist, name="cm").start()
    try:
        eventually(lambda: inf.synced.is_set(), timeout=30)
        for name in ("a", "b"):
            raw(api, "POST", path, {"metadata": {"name": name}})
        assert inf.relist(timeout=30) is True
        with lock:
            assert len(lists) >= 2 and {"a", "b"} <= lists[-1], lists  # a LIST again, after both writes
        raw(api, "POST", path, {"metadata": {"name": "c"}})
        eventually(lambda: ("ADDED", "c") in events, timeout=30, what="an event after the relist")
    finally:
        inf.stop(timeout=5)
    assert inf.relist(timeout=1) is False  # stopped: nobody will list
