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


@pytest.mark.parametrize("optional, synced", [
    (True, True),    # an API this server does not serve (DRA before 1.34): an empty list, synced
    (False, False),  # a required one: never synced, so the daemon is not Ready and says why
])
def test_an_api_the_server_does_not_serve(cluster, optional, synced):
    api = cluster.api_client()
    lists: list[list[dict]] = []
    inf = Informer(api, "/apis/resource.k8s.io/v0/resourceclaims", lambda t, o: None, on_relist=lists.append,
                   name="absent", optional=optional).start()
    try:
        if synced:
            eventually(lambda: inf.synced.is_set(), timeout=30, what="synced on a 404")
            assert lists == [[]] and inf.absent
            assert inf.relist(timeout=30) is True and lists == [[], []]  # asked again at once
        else:
            eventually(lambda: inf.errors >= 1, timeout=30, what="a watch error")
            assert not inf.synced.is_set() and not lists
    finally:
        inf.stop(timeout=5)
