"""InferenceAutoscaler specs from users, fuzzed: parse_spec either returns a spec that
obeys its own invariants or raises SpecError naming the field; nothing else escapes.

Inputs are JSON-shaped (what the API server hands over): a valid spec with one field
replaced by anything (wrong types, NaN, huge integers, nested junk), or unknown keys.
"""
from __future__ import annotations

import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.spec import SpecError, parse_spec

VALID = {
    "scaleTargetRef": {"name": "llm", "apiVersion": "apps/v1", "kind": "Deployment"},
    "minReplicas": 1, "maxReplicas": 6, "model": "org/m", "warmReplicas": 1,
    "signals": [{"type": "queueDepth", "target": 5, "server": "vllm"},
                {"type": "promql", "target": 2.5, "query": "sum(x)", "name": "q"}],
    "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "periodSeconds": 15, "maxPodsPerPeriod": 4,
                             "maxPercentPerPeriod": 100},
                 "scaleDown": {"stabilizationWindowSeconds": 300}, "tolerance": 0.1,
                 "panic": {"threshold": 2, "windowSeconds": 6, "stableWindowSeconds": 60}},
    "slo": {"queueWaitSeconds": 1, "ttftSeconds": 2, "percentile": 0.99, "targetUtilization": 0.8},
    "coldStartSeconds": 45, "serviceRatePerReplica": 4.5,
    "forecast": {"enabled": True, "alpha": 0.5, "beta": 0.3, "scaleUp": False},
}

PATHS: list[tuple] = [()]


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            PATHS.append(prefix + (k,))
            _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            PATHS.append(prefix + (i,))
            _paths(v, prefix + (i,))


_paths(VALID)

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", " ", "-5Gi", "1e30", "abc", "NaN", "apps/v2", "StatefulSet", "queueDepth", "promql"]),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**400, 0.5, -0.0, 1e308, 5e-324]),
)
# values of the right kind, often in range: so that some mutated specs parse and their invariants are checked
plausible = st.one_of(st.integers(min_value=0, max_value=20), st.floats(min_value=0, max_value=1),
                      st.floats(min_value=0, max_value=600), st.none())
anything = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                  st.dictionaries(st.text(max_size=8), c, max_size=4)),
                        max_leaves=12)


def replace_at(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: replace_at(obj.get(head), rest, value)}
    out = list(obj)
    out[head] = replace_at(out[head], rest, value)
    return out


@st.composite
def specs(draw):
    spec = VALID
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        path = draw(st.sampled_from(PATHS))
        try:
            spec = replace_at(spec, path, draw(st.one_of(plausible, anything)))
        except (TypeError, IndexError, KeyError):  # an earlier replacement changed the shape
            pass
    if draw(st.integers(0, 9)) == 0 and isinstance(spec, dict):
        spec = {**spec, draw(st.text(max_size=12)): draw(anything)}
    return spec


OUTCOMES: Counter[str] = Counter()


@settings(max_examples=2500, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_any_spec_parses_or_is_a_spec_error_naming_the_field(spec):
    try:
        s = parse_spec(spec)
    except SpecError as exc:
        msg = str(exc)
        assert msg.startswith("spec"), msg  # names the field: spec.x.y: ...
        assert len(msg) < 600, msg[:700]
        OUTCOMES["SpecError"] += 1
        return
    OUTCOMES["parsed"] += 1
    assert 0 <= s.min_replicas <= s.max_replicas and s.max_replicas >= 1
    assert isinstance(s.min_replicas, int) and isinstance(s.max_replicas, int) and s.warm_replicas >= 0
    assert s.signals or s.slo is not None
    for sig in s.signals:
        assert math.isfinite(sig.target) and sig.target > 0 and sig.name
    assert len({sig.name for sig in s.signals}) == len(s.signals)
    b = s.behavior
    for rules in (b.scale_up, b.scale_down):
        assert math.isfinite(rules.stabilization_window_s) and rules.period_s > 0
    assert 0 <= b.tolerance <= 1 and b.panic.threshold > 1
    assert math.isfinite(s.cold_start_s)
    assert s.slo is None or (0 < s.slo.percentile < 1 and s.slo.wait_bound_s is not None)


def test_the_fuzz_saw_both_outcomes():
    """Runs after the fuzz (file order): both branches were exercised, so the invariants above
    were checked on parsed specs and not only on errors."""
    if not OUTCOMES:  # run on its own: do the fuzz here
        test_any_spec_parses_or_is_a_spec_error_naming_the_field()
    print(f"\nspec fuzz: {dict(OUTCOMES)}")
    assert OUTCOMES["SpecError"] > 500 and OUTCOMES["parsed"] > 200, OUTCOMES
