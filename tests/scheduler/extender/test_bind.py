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


class Conflict(Exception):
    status = 409  # what the client raises for the API server's 409


class Api:
    """Plays the API server: the pods (resourceVersion "1" until changed) and the Binding
    endpoint, which records binds, may block or refuse, and checks the preconditions."""

    def __init__(self) -> None:
        self.binds: list[tuple[str, str, str]] = []
        self.release = threading.Event()
        self.release.set()
        self.refuse: str | None = None
        self.gets = 0
        self.versions: dict[str, str] = {}  # pod name -> resourceVersion, "1" when absent
        self.sent_versions: list[str] = []  # the resourceVersion each Binding carried

    def pod(self, name: str) -> dict:
        pod = _pod(name)
        pod["metadata"]["resourceVersion"] = self.versions.get(name, "1")
        bound = [n for p, n, _ in self.binds if p == name]
        if bound:
            pod["spec"]["nodeName"] = bound[-1]
        return pod

    def binder(self, namespace, name, uid, node, annotations, resource_version) -> None:
        self.release.wait(10)
        self.sent_versions.append(resource_version)
        if self.refuse:
            raise RuntimeError(self.refuse)
        pod = self.pod(name)
        if pod["spec"].get("nodeName"):
            raise Conflict(f"pod {name} is already assigned to node {pod['spec']['nodeName']!r}")
        if resource_version and resource_version != pod["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        self.binds.append((name, node, annotations[contract.GPU_IDS]))

    def get_pod(self, namespace, name) -> dict:
        self.gets += 1
        return self.pod(name)


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


# ---------------------------------------------------------------- the pending pods' informer


def with_informer(*names: str) -> tuple[Extender, LiveState, Api, dict[str, dict]]:
    """An extender whose pending pods' informer holds `names` as the API server has them now."""
    ext, live, api = setup()
    copies = {f"ns/{n}": api.pod(n) for n in names}
    ext.pending = copies.get
    return ext, live, api, copies


def test_a_pod_the_informer_holds_is_bound_without_a_get_and_with_its_version():
    ext, live, api, _ = with_informer("p")
    assert bind(ext, "p", "a") == ""
    assert api.gets == 0 and api.sent_versions == ["1"]
    assert api.binds == [("p", "a", "0")] and used(live, "a") == [0]


def test_a_pod_the_informer_lacks_is_read_with_a_get():
    ext, live, api, _ = with_informer()
    assert bind(ext, "p", "a") == ""
    assert api.gets == 1 and api.sent_versions == ["1"] and used(live, "a") == [0]


def test_a_stale_copy_is_refused_by_the_api_server_then_checked_and_bound_afresh():
    """The pod changed after the informer's copy (resourceVersion 1 -> 2): the Binding's
    precondition fails, nothing stays reserved, and the bind reads the pod and binds that."""
    ext, live, api, _ = with_informer("p")
    api.versions["p"] = "2"
    assert bind(ext, "p", "a") == ""
    assert api.sent_versions == ["1", "2"] and api.gets == 1
    assert api.binds == [("p", "a", "0")] and used(live, "a") == [0]  # one GPU, not two


def test_a_copy_still_pending_of_a_pod_bound_elsewhere_is_refused_and_reserves_nothing():
    ext, live, api, _ = with_informer("p")
    api.binds.append(("p", "b", "3"))  # bound by someone else; the informer has not seen it
    error = bind(ext, "p", "a")
    assert "already bound to b" in error and api.gets == 1
    assert used(live, "a") == []


@pytest.mark.parametrize("change, refusal", [
    (lambda pod: pod["spec"].update(schedulerName="default-scheduler"), "is not for scheduler gpusched"),
    (lambda pod: pod["metadata"].update(deletionTimestamp="2026-12-06T08:00:00Z"), "is being deleted"),
])
def test_the_informer_copy_is_checked_as_a_get_would_be(change, refusal):
    ext, live, api, copies = with_informer("p")
    change(copies["ns/p"])
    assert refusal in bind(ext, "p", "a")
    assert api.binds == [] and api.gets == 0 and used(live, "a") == []


def test_a_copy_with_another_uid_is_not_trusted_either_way():
    """The caller's UID is not the copy's: a wrong UID, or an older pod of that name the
    informer still holds. The API server's pod decides, read with a GET."""
    ext, live, api, copies = with_informer("p")
    copies["ns/p"]["metadata"]["uid"] = "uid-of-an-older-p"
    assert bind(ext, "p", "a") == ""  # the API server's p has the UID asked for
    assert api.gets == 1 and api.binds == [("p", "a", "0")]
    ext, live, api, _ = with_informer("q")
    answer = json.loads(ext.bind(json.dumps({"PodName": "q", "PodNamespace": "ns", "PodUID": "forged",
                                             "Node": "a"}).encode()))["Error"]
    assert "PodUID does not match" in answer and "uid-q" not in answer and api.gets == 1
    assert api.binds == [] and used(live, "a") == []


def test_a_retry_after_success_is_answered_from_the_api_server_not_the_copy():
    """The informer still shows the pod pending after our bind: a retry must not bind it
    a second time on other GPUs."""
    ext, live, api, copies = with_informer("p")
    assert bind(ext, "p", "a") == ""
    assert bind(ext, "p", "a") == ""  # kube-scheduler's retry; copies["ns/p"] is still pending
    assert api.binds == [("p", "a", "0")] and used(live, "a") == [0] and api.gets == 1


def _share(name: str) -> dict:
    pod = _pod(name)
    pod["metadata"]["annotations"] = {contract.GPU_MEMORY: "30Gi"}
    pod["spec"]["containers"][0]["resources"] = {}
    return pod


def test_the_next_share_pods_filter_waits_for_no_api_call():
    """A share pod's filter waits until the previous share pod's bind has reserved its GPU.
    With the pod in the informer, that reservation comes before any API call: the next filter
    answers while the Binding (and a GET, were one made) still hangs."""
    ext, live, api = setup()
    api.pod = lambda name: {**_share(name), "metadata": {**_share(name)["metadata"], "resourceVersion": "1"}}
    copies = {"ns/s1": api.pod("s1")}
    ext.pending = copies.get
    ext.get_pod = lambda namespace, name: (api.release.wait(10), api.get_pod(namespace, name))[1]
    ext.filter(json.dumps({"Pod": _share("s1"), "NodeNames": ["a"]}).encode())
    api.release.clear()  # the API server hangs
    t = threading.Thread(target=bind, args=(ext, "s1", "a"))
    t.start()
    try:
        start = time.monotonic()
        answer = json.loads(ext.filter(json.dumps({"Pod": _share("s2"), "NodeNames": ["a"]}).encode()))
        waited = time.monotonic() - start
        assert answer["NodeNames"] == ["a"] and waited < 0.5, waited
        assert describe_node(live.snapshot(), "a")["gpus"][0]["committedMiB"] == 30 * 1024  # s1 counted
    finally:
        api.release.set()
        t.join(5)


def test_a_bound_pods_reservation_carries_its_cpu_for_the_learned_shapes():
    """The reservation stays in the snapshot once the watch confirms it (it counts the
    same GPUs), and shapes are re-learned from the snapshot between rebuilds: without the
    pod's CPU there, every pod the extender bound would look like it asked none."""
    ext, live, api = setup()
    pod = api.pod("p")
    pod["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "12", "memory": "96Gi"}
    api.pod = lambda name: pod  # type: ignore[method-assign]
    assert bind(ext, "p", "a") == ""
    held = [a for row in live.snapshot().allocations for a in row]
    assert [(a.pod_key, a.cpu_milli, a.ram) for a in held] == [("ns/p", 12_000, 96 * 2**30)]
