"""A pod's CPU request and a node's allocatable CPU, as kube-scheduler counts them."""
from __future__ import annotations

import pytest

from scheduler.core.cpu import node_cpu_allocatable, pod_cpu_request


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


@pytest.mark.parametrize("spec,want,problem", [
    ({"containers": [c("-1"), c("1")]}, 1000, "must not be negative"),    # the bad one counts 0
    ({"containers": [c("lots")]}, 0, "not a CPU quantity"),
    ({"containers": [c("1e12")]}, 0, "more than"),
    ({"containers": [c([1])]}, 0, "expected a quantity"),
    ({"containers": [c("1")], "overhead": {"cpu": "x"}}, 1000, "spec.overhead.cpu"),
])
def test_bad_pod_cpu_counts_zero_with_a_reason(spec, want, problem):
    got, problems = pod_cpu_request({"spec": spec})
    assert got == want and len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize("pod", [None, [], {"spec": []}, {"spec": {"containers": "x", "initContainers": 3}},
                                 {"spec": {"containers": [None, {"resources": []}, {"resources": {"requests": 1}}]}}])
def test_malformed_pods_count_nothing_and_never_raise(pod):
    assert pod_cpu_request(pod)[0] == 0


@pytest.mark.parametrize("allocatable,want,problem", [
    ({"cpu": "96"}, 96000, None),
    ({"cpu": "127500m"}, 127500, None),
    ({}, 0, None),                       # not given: not known, CPU limits nothing
    ({"cpu": "-4"}, 0, "must not be negative"),
    ({"cpu": "many"}, 0, "not a CPU quantity"),
    ({"cpu": "1e30"}, 0, "more than"),
])
def test_node_cpu_allocatable(allocatable, want, problem):
    got, why = node_cpu_allocatable({"status": {"allocatable": allocatable}})
    assert got == want
    assert (why is None) if problem is None else (problem in why and "not counted" in why)
