"""The extender's bind verb: reservations, retries by kube-scheduler, and the API's refusals.

kube-scheduler retries a bind that outlives its httpTimeout (2 s) while the first call may
still be running or may have succeeded; neither may reserve a second GPU for the pod."""
from __future__ import annotations

import json
import threading
import time

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, describe_node


def _pod(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"schedulerName": "gpusched",
                     "containers": [{"name": "c", "resources": {"limits": {contract.GPU_RESOURCE: "1"}}}]}}


class Api:
    """Plays the API server's Binding endpoint: records binds, may block or refuse."""

    def __init__(self) -> None:
        self.binds: list[tuple[str, str, str]] = []
        self.release = threading.Event()
        self.release.set()
        self.refuse: str | None = None

    def binder(self, namespace, name, uid, node, annotations) -> None:
        self.release.wait(10)
        if self.refuse:
            raise RuntimeError(self.refuse)
        self.binds.append((name, node, annotations[contract.GPU_IDS]))

    def get_pod(self, namespace, name) -> dict:
        pod = _pod(name)
        bound = [n for p, n, _ in self.binds if p == name]
        if bound:
            pod["spec"]["nodeName"] = bound[-1]
        return pod


def setup() -> tuple[Extender, LiveState, Api]:
    live = LiveState(stale_after_s=86400)
    live.set_nodes([node_body(NodeSpec(n, 8, "NVIDIA-H100-80GB-HBM3", H100_MIB)) for n in ("a", "b")])
    api = Api()
    ext = Extender(live=live, binder=api.binder, get_pod=api.get_pod)
    return ext, live, api


def bind(ext: Extender, name: str, node: str) -> str:
    return json.loads(ext.bind(json.dumps({"PodName": name, "PodNamespace": "ns", "PodUID": f"uid-{name}",
                                           "Node": node}).encode()))["Error"]


def used(live: LiveState, node: str) -> list[int]:
    return [g["index"] for g in describe_node(live.snapshot(), node)["gpus"] if g["committedMiB"]]


def test_a_retry_after_the_first_bind_succeeded_binds_nothing_more():
    ext, live, api = setup()
    assert bind(ext, "p", "a") == ""
    assert bind(ext, "p", "a") == ""  # kube-scheduler's retry: already done
    assert api.binds == [("p", "a", "0")] and used(live, "a") == [0]
    assert "already bound to a" in bind(ext, "p", "b")
    assert used(live, "b") == []


def test_a_pod_recreated_under_the_same_name_is_bound_again():
    """The old pod's allocation is still counted (its DELETED event not seen yet); the new one,
    with another UID and no node, must be bound, not answered as a retry."""
    ext, live, api = setup()
    assert bind(ext, "p", "a") == ""
    api.binds.clear()  # the API server no longer has the old pod; the new one is pending
    answer = json.loads(ext.bind(json.dumps({"PodName": "p", "PodNamespace": "ns", "PodUID": "uid-p",
                                             "Node": "b"}).encode()))["Error"]
    assert answer == "" and api.binds == [("p", "b", "0")]


def bind_and_retry(ext, api, while_held=lambda results: None) -> dict[str, str]:
    """kube-scheduler's retry of a bind that outlived its httpTimeout: the first bind waits on
    the API server (api.release), the retry comes while it does; `while_held` sees the
    answers so far before the API server answers."""
    api.release.clear()  # the API server is slow
    results: dict[str, str] = {}
    first = threading.Thread(target=lambda: results.update(first=bind(ext, "p", "a")))
    first.start()
    time.sleep(0.2)
    retry = threading.Thread(target=lambda: results.update(retry=bind(ext, "p", "a")))
    retry.start()
    while_held(results)
    api.release.set()
    first.join(5)
    retry.join(5)
    return results


def test_a_retry_while_the_first_bind_runs_waits_for_its_outcome():
    ext, live, api = setup()

    def still_waiting(results):
        time.sleep(0.2)
        assert "retry" not in results  # waiting, not reserving

    results = bind_and_retry(ext, api, still_waiting)
    assert results == {"first": "", "retry": ""}
    assert api.binds == [("p", "a", "0")] and used(live, "a") == [0]


def test_a_retry_of_a_failed_bind_gets_the_failure_and_nothing_stays_reserved():
    ext, live, api = setup()
    api.refuse = "the API server said no: uid is really 1234"
    results = bind_and_retry(ext, api)
    # failed, and said so, but without the API server's text (a 409's names the real UID)
    assert "failed" in results["first"] and "1234" not in results["first"] and results["retry"] == results["first"]
    assert used(live, "a") == []
    api.refuse = None
    assert bind(ext, "p", "a") == "" and used(live, "a") == [0]  # a later attempt starts afresh


@pytest.mark.parametrize("verb", ["filter", "prioritize", "bind"])
def test_verbs_before_the_caches_have_synced_are_refused(verb):
    import http.client

    from scheduler.extender.server import ExtenderHTTPServer

    ext, _, _ = setup()
    state = {"ready": False}
    srv = ExtenderHTTPServer(("127.0.0.1", 0), ext,
                             lambda: (state["ready"], "ok" if state["ready"] else "waiting for the first list of pods"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        body = (json.dumps({"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "a"}) if verb == "bind" else
                json.dumps({"Pod": _pod("p"), "NodeNames": ["a", "b"]}))

        def call() -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
            conn.request("POST", f"/{verb}", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"null")

        status, answer = call()
        assert status == 503 and "waiting for the first list of pods" in answer["Error"]
        state["ready"] = True
        status, _ = call()
        assert status == 200
    finally:
        srv.shutdown()
        srv.server_close()
