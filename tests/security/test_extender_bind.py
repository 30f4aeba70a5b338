"""Finding 2 of issue #14: whoever reached the extender could bind any pending pod, in any
namespace, to any node. On the real API server with the real extender (mutual TLS, as the
chart deploys it): each hostile bind below is refused, the pod stays unbound, and the
refusal never carries the pod's real UID. On the code before the fix every one of them
bound the pod (or leaked the UID, or was let in without a certificate)."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from benchmarks.testbed.stack import GpuschedScheduler
from tests.helpers import eventually

pytestmark = pytest.mark.integration

SCHED = "gpusched-sec"  # no kube-scheduler serves it: its pods wait for the binds made here
NODE = "gpu-node-0001"


@pytest.fixture(scope="module")
def extender(cluster):
    g = GpuschedScheduler(cluster, name=SCHED)  # tls=True: client certificates required
    g.start_extender()
    yield g
    g.stop_extender()


def make_pod(core, namespace: str, name: str, scheduler: str = SCHED, node: str | None = None):
    spec = {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "vllm/vllm-openai:v0.9.0"}]}
    if node:
        spec["nodeName"] = node
    core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})
    return core.read_namespaced_pod(name, namespace)


def bind(g: GpuschedScheduler, namespace: str, name: str, uid: str, node: str) -> requests.Response:
    return g.post("/bind", json={"PodName": name, "PodNamespace": namespace, "PodUID": uid, "Node": node},
                  timeout=10)


@pytest.fixture
def kube_system_pod(core):
    name = f"sec-{uuid.uuid4().hex[:8]}"
    pod = make_pod(core, "kube-system", name, scheduler="some-other-scheduler")
    yield pod
    core.delete_namespaced_pod(name, "kube-system", grace_period_seconds=0)


def test_a_kube_system_pod_for_another_scheduler_is_not_bound(extender, core, kube_system_pod):
    meta = kube_system_pod.metadata
    r = bind(extender, "kube-system", meta.name, meta.uid, NODE)
    assert r.status_code == 200 and "is not for scheduler gpusched-sec" in r.json()["Error"]
    assert core.read_namespaced_pod(meta.name, "kube-system").spec.node_name is None


@pytest.mark.parametrize("case", ["bound already", "unknown node", "wrong UID"])
def test_hostile_binds_are_refused_and_the_pod_stays_where_it_was(extender, core, namespace, case):
    bound_to = NODE if case == "bound already" else None
    pod = make_pod(core, namespace, "victim", node=bound_to)
    uid = pod.metadata.uid
    node, sent_uid = {
        "bound already": ("gpu-node-0002", uid),
        "unknown node": ("no-such-node", uid),  # PodGC force-deleted such a pod 45 s later
        "wrong UID": (NODE, str(uuid.uuid4())),
    }[case]
    r = bind(extender, namespace, "victim", sent_uid, node)
    error = r.json()["Error"]
    assert r.status_code == 200 and error.startswith("gpusched: "), (case, error)
    assert uid not in error, error  # the API server's 409 named the real UID
    assert core.read_namespaced_pod("victim", namespace).spec.node_name == bound_to
    if case == "wrong UID":  # the right UID, from the right caller, still binds
        assert bind(extender, namespace, "victim", uid, NODE).json() == {"Error": ""}
        eventually(lambda: core.read_namespaced_pod("victim", namespace).spec.node_name == NODE, timeout=10)


@pytest.mark.parametrize("field, value", [
    ("PodNamespace", "kube-system/pods/y"),
    ("PodNamespace", ".."),
    ("PodName", "x/binding"),
    ("Node", "a/../b"),
])
def test_names_that_would_walk_the_api_path_are_refused(extender, field, value):
    body = {"PodName": "p", "PodNamespace": "default", "PodUID": "u", "Node": NODE, field: value}
    r = extender.post("/bind", json=body)
    assert r.status_code == 400 and field in r.json()["Error"]


def test_a_caller_without_a_client_certificate_is_not_let_in(extender, core, namespace):
    pod = make_pod(core, namespace, "victim")
    body = {"PodName": "victim", "PodNamespace": namespace, "PodUID": pod.metadata.uid, "Node": NODE}
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{extender.url}/bind", json=body, timeout=5, verify=extender.verify)
    with pytest.raises(requests.exceptions.ConnectionError):  # nor in plain HTTP
        requests.post(f"{extender.url.replace('https', 'http')}/bind", json=body, timeout=5)
    assert core.read_namespaced_pod("victim", namespace).spec.node_name is None


def test_the_api_server_refuses_a_binding_from_a_copy_older_than_the_pod(cluster, core, namespace):
    """Binds check the pending pods' informer copy, not a fresh GET: the Binding carries that
    copy's UID and resourceVersion, and the real API server refuses it (409) once the pod has
    changed since, so a check read from an old copy never binds a pod that changed."""
    from kubernetes.client.rest import ApiException

    from scheduler.extender.daemon import binding_body
    from scheduler.kube.client import raw

    pod = make_pod(core, namespace, "victim")
    old = pod.metadata.resource_version
    core.patch_namespaced_pod("victim", namespace, {"metadata": {"annotations": {"x": "changed"}}})
    api, path = cluster.api_client(), f"/api/v1/namespaces/{namespace}/pods/victim/binding"
    ann = {"gpusched.io/gpu-ids": "3"}
    with pytest.raises(ApiException) as refused:
        raw(api, "POST", path, binding_body(namespace, "victim", pod.metadata.uid, NODE, ann, old))
    assert refused.value.status == 409
    assert core.read_namespaced_pod("victim", namespace).spec.node_name is None
    now = core.read_namespaced_pod("victim", namespace).metadata.resource_version
    raw(api, "POST", path, binding_body(namespace, "victim", pod.metadata.uid, NODE, ann, now))
    bound = core.read_namespaced_pod("victim", namespace)
    assert bound.spec.node_name == NODE and bound.metadata.annotations["gpusched.io/gpu-ids"] == "3"


def test_a_pending_pod_is_bound_from_the_informer_without_a_get(extender, core, namespace):
    """The real extender, its pending pods' informer and the real API server: the bind reads
    no pod from the API server, and the pod is bound."""
    def reads(source: str) -> float:
        for line in extender.get("/metrics").text.splitlines():
            if line.startswith(f'gpusched_extender_bind_pod_reads_total{{source="{source}"}}'):
                return float(line.split()[-1])
        return 0.0

    pod = make_pod(core, namespace, "fast")
    before = reads("informer"), reads("api")
    time.sleep(2)  # the watch brings the new pod to the informer within milliseconds
    assert bind(extender, namespace, "fast", pod.metadata.uid, NODE).json() == {"Error": ""}
    assert (reads("informer"), reads("api")) == (before[0] + 1, before[1])
    assert core.read_namespaced_pod("fast", namespace).spec.node_name == NODE
