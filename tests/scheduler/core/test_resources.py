"""A pod's CPU and memory requests and a node's allocatable CPU and memory, as kube-scheduler
counts them."""
from __future__ import annotations

import pytest

from scheduler.core.resources import node_cpu_allocatable, node_memory_allocatable, pod_requests


def pod_cpu_request(pod):
    """The CPU half of pod_requests, with why parts were not read."""
    got = pod_requests(pod)
    return got.cpu_milli, got.problems


def c(cpu=None, *, always=False):
    out = {"name": "c", "resources": {"requests": {"cpu": cpu}} if cpu is not None else {}}
    if always:
        out["restartPolicy"] = "Always"
    return out


@pytest.mark.parametrize("spec,want", [
    ({"containers": [c("500m"), c("1.5")]}, 2000),                        # 500 + 1500
    ({"containers": [c("1")], "initContainers": [c("4")]}, 4000),         # max(1000, 4000)
    ({"containers": [c("3")], "initContainers": [c("2")]}, 3000),         # max(3000, 2000)
    # a sidecar keeps running: 1000 + 500 = 1500 beside the containers; the init after it
    # runs beside it: 2000 + 500 = 2500; max(1500, 500, 2500)
    ({"containers": [c("1")], "initContainers": [c("500m", always=True), c("2")]}, 2500),
    ({"containers": [c("1")], "overhead": {"cpu": "250m"}}, 1250),        # + overhead
    ({"containers": [c(), c("100m")]}, 100),                              # no request: 0
    ({"containers": [c(2)]}, 2000),                                       # a JSON number
    ({"containers": [c("1n")]}, 1),                                       # rounded up to 1m
    ({}, 0),
])
def test_pod_cpu_request_is_kube_schedulers(spec, want):
    assert pod_cpu_request({"spec": spec}) == (want, ())


def named(name, cpu, **kw):
    return {**c(cpu, **kw), "name": name}


def cs(name, running=None, allocated=None):
    out = {"name": name, "resources": {"requests": {"cpu": running}} if running is not None else {}}
    if allocated is not None:
        out["allocatedResources"] = {"cpu": allocated}
    return out


PENDING = [{"type": "PodResizePending", "reason": "Deferred"}]
INFEASIBLE = [{"type": "PodResizePending", "reason": "Infeasible"}]


@pytest.mark.parametrize("pod,want", [
    # PodLevelResources: the pod's request replaces its containers' 500 + 1500
    ({"spec": {"resources": {"requests": {"cpu": "4"}}, "containers": [c("500m"), c("1.5")]}}, 4000),
    # ... per resource: a pod-level memory request leaves CPU to the containers
    ({"spec": {"resources": {"requests": {"memory": "1Gi"}}, "containers": [c("500m"), c("1.5")]}}, 2000),
    # ... and the init containers: max(1000, 8000) does not apply, the pod asks 2000
    ({"spec": {"resources": {"requests": {"cpu": "2"}}, "containers": [c("1")], "initContainers": [c("8")]}}, 2000),
    # overhead on top of the pod-level request: 2000 + 250
    ({"spec": {"resources": {"requests": {"cpu": "2"}}, "containers": [c("1")], "overhead": {"cpu": "250m"}}}, 2250),
    # pod-level limits only: the containers' 1000 (the API server defaults requests from limits)
    ({"spec": {"resources": {"limits": {"cpu": "4"}}, "containers": [c("1")]}}, 1000),
    # in-place resize pending: max(spec 1000, running 3000, allocated 2000) + 500
    ({"spec": {"containers": [named("a", "1"), named("b", "500m")]},
      "status": {"conditions": PENDING, "containerStatuses": [cs("a", "3", "2")]}}, 3500),
    # resized down, not yet applied: max(spec 1000, running 4000) = 4000
    ({"spec": {"containers": [named("a", "1")]}, "status": {"containerStatuses": [cs("a", "4", "1")]}}, 4000),
    # infeasible: the spec's 8000 is not counted, max(running 1000, allocated 1000)
    ({"spec": {"containers": [named("a", "8")]},
      "status": {"conditions": INFEASIBLE, "containerStatuses": [cs("a", "1", "1")]}}, 1000),
    # a status without resources: the spec alone, allocatedResources not read
    ({"spec": {"containers": [named("a", "1")]},
      "status": {"containerStatuses": [{"name": "a", "allocatedResources": {"cpu": "6"}}]}}, 1000),
    # a sidecar's status counts (max(500, 2000) beside 1000); a plain init's does not (max(3000, 4000 + 2000))
    ({"spec": {"containers": [named("a", "1")], "initContainers": [named("s", "500m", always=True), named("i", "4")]},
      "status": {"initContainerStatuses": [cs("s", "2"), cs("i", "9")]}}, 6000),
    # pod-level resize: max(spec 2000, status 3000, allocated 2500)
    ({"spec": {"resources": {"requests": {"cpu": "2"}}, "containers": [c("1")]},
      "status": {"resources": {"requests": {"cpu": "3"}}, "allocatedResources": {"cpu": "2500m"}}}, 3000),
    # pod-level, infeasible: max(status 1000, allocated 1500), the spec's 6000 left out
    ({"spec": {"resources": {"requests": {"cpu": "6"}}, "containers": [c("1")]},
      "status": {"conditions": INFEASIBLE, "resources": {"requests": {"cpu": "1"}}, "allocatedResources": {"cpu": "1.5"}}}, 1500),
])
def test_pod_level_and_resized_cpu_are_kube_schedulers(pod, want):
    assert pod_cpu_request(pod) == (want, ())


@pytest.mark.parametrize("spec,want,problem", [
    ({"containers": [c("-1"), c("1")]}, 1000, "must not be negative"),    # the bad one counts 0
    ({"resources": {"requests": {"cpu": "lots"}}, "containers": [c("1")]}, 0, "spec.resources requests.cpu"),
    ({"containers": [c("lots")]}, 0, "not a CPU quantity"),
    ({"containers": [c("1e12")]}, 0, "more than"),
    ({"containers": [c([1])]}, 0, "expected a quantity"),
    ({"containers": [c("1")], "overhead": {"cpu": "x"}}, 1000, "spec.overhead.cpu"),
])
def test_bad_pod_cpu_counts_zero_with_a_reason(spec, want, problem):
    got, problems = pod_cpu_request({"spec": spec})
    assert got == want and len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize("pod", [None, [], {"spec": []}, {"spec": {"containers": "x", "initContainers": 3}},
                                 {"spec": {"containers": [None, {"resources": []}, {"resources": {"requests": 1}}]}},
                                 {"spec": {"resources": [], "containers": [{"name": []}]},
                                  "status": {"conditions": [None, 3], "containerStatuses": [None, {"name": 1}, {"name": []}],
                                             "resources": "x", "allocatedResources": 7}},
                                 {"spec": {"containers": [{"name": "a"}]}, "status": []},
                                 {"spec": {"containers": [{"name": "a"}]},
                                  "status": {"containerStatuses": [{"name": "a", "resources": {"requests": []},
                                                                    "allocatedResources": {"cpu": {}}}]}}])
def test_malformed_pods_count_nothing_and_never_raise(pod):
    assert pod_cpu_request(pod)[0] == 0


Gi = 2**30


def m(memory=None, cpu=None, *, always=False):
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    out = {"name": "c", "resources": {"requests": req} if req else {}}
    if always:
        out["restartPolicy"] = "Always"
    return out


@pytest.mark.parametrize("spec,want", [
    ({"containers": [m("16Gi"), m("512Mi")]}, (0, 16 * Gi + 512 * 2**20)),        # summed
    ({"containers": [m("1Gi")], "initContainers": [m("4Gi")]}, (0, 4 * Gi)),       # max(1, 4)
    # a sidecar keeps running beside the containers and the later init containers:
    # max(2 + 1, 1, 1 + 4) = 5 Gi
    ({"containers": [m("2Gi")], "initContainers": [m("1Gi", always=True), m("4Gi")]}, (0, 5 * Gi)),
    ({"containers": [m("1Gi")], "overhead": {"memory": "120Mi"}}, (0, Gi + 120 * 2**20)),
    ({"containers": [m("1500m")]}, (0, 2)),                                         # 1.5 bytes, rounded up
    ({"containers": [m("1G", "2")]}, (2000, 10**9)),                                # both, one pass
    # PodLevelResources per resource: the pod's memory stands, CPU still from the containers
    ({"resources": {"requests": {"memory": "64Gi"}}, "containers": [m("1Gi", "3")]}, (3000, 64 * Gi)),
    ({}, (0, 0)),
])
def test_pod_requests_count_memory_as_kube_scheduler_does(spec, want):
    got = pod_requests({"spec": spec})
    assert (got.cpu_milli, got.memory, got.problems) == (*want, ())


@pytest.mark.parametrize("memory,problem", [
    ("-5Gi", "must not be negative"),
    ("1e30", "larger than"),
    ("lots", "not a memory quantity"),
])
def test_unreadable_memory_counts_nothing_and_says_why(memory, problem):
    got = pod_requests({"spec": {"containers": [m(memory, "1"), m("1Gi")]}})
    assert (got.cpu_milli, got.memory) == (1000, Gi)
    assert len(got.problems) == 1 and problem in got.problems[0] and "spec.containers[0] requests.memory" in got.problems[0]


@pytest.mark.parametrize("read,allocatable,want,problem", [
    (node_cpu_allocatable, {"cpu": "96"}, 96000, None),
    (node_cpu_allocatable, {"cpu": "127500m"}, 127500, None),
    (node_cpu_allocatable, {}, 0, None),          # not given: not known, CPU limits nothing
    (node_cpu_allocatable, {"cpu": "-4"}, 0, "must not be negative"),
    (node_cpu_allocatable, {"cpu": "many"}, 0, "not a CPU quantity"),
    (node_cpu_allocatable, {"cpu": "1e30"}, 0, "more than"),
    (node_memory_allocatable, {"memory": "1056Gi"}, 1056 * Gi, None),
    (node_memory_allocatable, {"memory": "528272264Ki"}, 528272264 * 1024, None),
    (node_memory_allocatable, {}, 0, None),       # not given: not known, memory limits nothing
    (node_memory_allocatable, {"memory": "-4Gi"}, 0, "must not be negative"),
    (node_memory_allocatable, {"memory": "1e30"}, 0, "larger than"),
])
def test_node_allocatable(read, allocatable, want, problem):
    got, why = read({"status": {"allocatable": allocatable}})
    assert got == want
    kind = "CPU" if read is node_cpu_allocatable else "memory"
    assert (why is None) if problem is None else (problem in why and f"{kind} not counted" in why)
