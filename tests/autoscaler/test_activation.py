"""The activation endpoint's decisions (autoscaler.activation): names, opt-in, limits."""
from __future__ import annotations

import pytest

from autoscaler.activation import Activator, names_service, opt_in_error, retry_after, target_of

ACT = {"labels": {"destination_service_name": "llama-svc"}}


def ias(name, ns="llm", **spec):
    s = {"scaleTargetRef": {"name": name}, "minReplicas": 0, "maxReplicas": 4,
         "activation": {"labels": {"destination_service_name": f"{name}-svc"}}, "coldStartSeconds": 47}
    s.update(spec)
    return {"metadata": {"name": name, "namespace": ns}, "spec": s}


OBJS = {"llm/llama": ias("llama"), "llm/always-on": ias("always-on", minReplicas=1),
        "llm/default-min": {"metadata": {"name": "default-min", "namespace": "llm"}, "spec": {}},
        "other/llama": ias("llama", ns="other")}


def activator(**kw):
    woken: list[str] = []
    a = Activator(lambda ns, n: OBJS.get(f"{ns}/{n}"),
                  lambda ns: [o for k, o in OBJS.items() if k.startswith(ns + "/")], on_wake=woken.append, **kw)
    return a, woken


@pytest.mark.parametrize("method, path, headers, code, key", [
    ("POST", "/activate/llm/llama", {}, 503, "llm/llama"),  # woken, Retry-After
    ("POST", "/activate/llm/llama/", {}, 503, "llm/llama"),  # a trailing slash is the same
    ("POST", "/activate/llm/llama?x=1", {}, 503, "llm/llama"),  # a query is ignored
    ("GET", "/activate/llm/llama", {}, 405, None),  # a wake is a POST: a crawler's GET wakes nothing
    ("POST", "/activate/llm", {}, 400, None),  # no name
    ("POST", "/activate/llm/llama/extra", {}, 400, None),  # three parts
    ("POST", "/activate/LLM/llama", {}, 400, None),  # not DNS-1123 (upper case)
    ("POST", "/activate/llm/" + "a" * 254, {}, 400, None),  # a name over 253 characters
    ("POST", "/activate/llm/..%2f..", {}, 400, None),  # no traversal through a name
    ("POST", "/activate/" + "x" * 600, {}, 414, None),  # a path over 512 characters
    ("POST", "/activate/llm/missing", {}, 404, None),  # no such object
    ("POST", "/activate/nowatch/llama", {}, 404, None),  # not in a watched namespace
    ("POST", "/activate/llm/always-on", {}, 403, "llm/always-on"),  # minReplicas 1: not opted in
    ("POST", "/activate/llm/default-min", {}, 403, "llm/default-min"),  # minReplicas left at its default
    # ingress-nginx's custom-errors call: the Service named in its headers, any path and method
    ("GET", "/v1/completions", {"X-Namespace": "llm", "X-Service-Name": "llama-svc", "X-Code": "503"}, 503,
     "llm/llama"),
    ("GET", "/", {"x-namespace": "llm", "x-service-name": "llama"}, 503, "llm/llama"),  # by the object's name
    ("GET", "/", {"X-Namespace": "llm", "X-Service-Name": "nobody"}, 404, None),
    ("GET", "/", {"X-Namespace": "llm", "X-Service-Name": "bad_name"}, 400, None),
    ("GET", "/", {}, 404, None),  # the ingress's default backend for an unknown host: not found
])
def test_handle(method, path, headers, code, key):
    a, woken = activator()
    ans = a.handle(method, path, headers, 100.0)
    assert (ans.code, ans.key) == (code, key), ans.message
    assert woken == ([key] if code == 503 else [])
    assert (ans.retry_after is not None) == (code == 503)


def test_two_objects_naming_one_service_is_a_conflict():
    objs = [ias("a", activation=ACT), ias("b", activation=ACT)]
    a = Activator(lambda ns, n: None, lambda ns: objs)
    ans = a.handle("GET", "/", {"X-Namespace": "llm", "X-Service-Name": "llama-svc"}, 0.0)
    assert ans.code == 409 and "llm/a, llm/b" in ans.message


@pytest.mark.parametrize("times, taken", [
    # one wake a second per object: 0 taken, 0.5 answered alike (waking) but not taken, 1.0 taken
    ([0.0, 0.5, 1.0], [True, False, True]),
    # a clock that stepped back (now < last): taken, not stuck until the clock catches up
    ([10.0, 5.0], [True, True]),
])
def test_per_object_limit(times, taken):
    a, woken = activator()
    got = [a.handle("POST", "/activate/llm/llama", {}, t).woken for t in times]
    assert got == taken and len(woken) == sum(taken)
    assert a.last_wake("llm/llama") == [t for t, k in zip(times, taken) if k][-1]


def test_global_bucket_caps_a_flood_of_distinct_objects():
    # burst 3, 1 token/s: 3 objects woken at t=0, the 4th refused (answered 503, not taken) until a token is back
    a, woken = activator(burst=3, rate_per_s=1.0)
    objs = [f"m{i}" for i in range(5)]
    for n in objs:
        OBJS[f"llm/{n}"] = ias(n)
    try:
        got = [a.handle("POST", f"/activate/llm/{n}", {}, 0.0).woken for n in objs[:4]]
        assert got == [True, True, True, False]
        assert a.handle("POST", "/activate/llm/m4", {}, 1.0).woken  # 1 s later: 1 token
        assert woken == ["llm/m0", "llm/m1", "llm/m2", "llm/m4"]
    finally:
        for n in objs:
            del OBJS[f"llm/{n}"]


def test_a_standby_takes_no_wake_and_asks_for_a_retry_in_a_second():
    woken: list[str] = []
    a = Activator(lambda ns, n: OBJS.get(f"{ns}/{n}"), lambda ns: [], on_wake=woken.append, acting=lambda: False)
    ans = a.handle("POST", "/activate/llm/llama", {}, 0.0)
    assert (ans.code, ans.woken, ans.retry_after, woken) == (503, False, 1, [])
    assert a.handle("POST", "/activate/llm/always-on", {}, 0.0).code == 403  # still checked first


def test_forget_drops_objects_gone():
    a, _ = activator()
    a.handle("POST", "/activate/llm/llama", {}, 0.0)
    a.forget({"llm/other"})
    assert a.last_wake("llm/llama") is None


@pytest.mark.parametrize("spec, want", [
    ({"coldStartSeconds": 47}, 47),
    ({"coldStartSeconds": 15.2}, 16),  # ceil
    ({"coldStartSeconds": 0.3}, 1),  # at least 1
    ({"coldStartSeconds": 600}, 60),  # clients honour up to a minute
    ({}, 5),  # unknown
    ({"coldStartSeconds": "47"}, 5),  # not a number: unknown
    ({"coldStartSeconds": float("nan")}, 5),
])
def test_retry_after(spec, want):
    assert retry_after({"spec": spec}) == want


@pytest.mark.parametrize("spec, ok", [
    ({"minReplicas": 0, "activation": ACT}, True),
    ({"minReplicas": 1, "activation": ACT}, False),
    ({"minReplicas": 0}, False),  # no activation: the daemon refuses the spec too
    ({"minReplicas": False, "activation": ACT}, False),  # a bool is not 0
    ({}, False),
])
def test_opt_in(spec, ok):
    assert (opt_in_error({"spec": spec}) is None) == ok


def test_names_service():
    assert names_service(ias("llama"), "llama-svc") and names_service(ias("llama"), "llama")
    assert not names_service(ias("llama"), "other")
    assert not names_service({"metadata": {"name": "x"}, "spec": {"activation": "junk"}}, "y")


def test_target_of_bad_header_namespace():
    got = target_of("GET", "/", {"X-Namespace": "a" * 64, "X-Service-Name": "s"})
    assert not isinstance(got, tuple) and got.code == 400
