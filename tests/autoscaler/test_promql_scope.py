"""autoscaler.promql_scope: every vector selector of a tenant's query gets the
namespace matcher; what cannot be rewritten safely is refused, never sent."""
from __future__ import annotations

import pytest

from autoscaler.promql_scope import UnsafeQuery, scope_query

NS = 'namespace="tenant-a"'


@pytest.mark.parametrize("query,want", [
    ("x", f"x{{{NS}}}"),
    ("sum(x)/count(x)", f"sum(x{{{NS}}})/count(x{{{NS}}})"),
    ('vllm:num_requests_running{model_name="m"}', f'vllm:num_requests_running{{model_name="m",{NS}}}'),
    # the tenant's own namespace matcher is ANDed with ours: it can only narrow
    ('x{namespace="tenant-b"}', f'x{{namespace="tenant-b",{NS}}}'),
    ('x{namespace=~".+"}', f'x{{namespace=~".+",{NS}}}'),
    ('{__name__=~"x|y"}', f'{{__name__=~"x|y",{NS}}}'),
    ('{"x.y"}', f'{{"x.y",{NS}}}'),
    ("x{}", f"x{{{NS}}}"),
    ("rate(x[5m])", f"rate(x{{{NS}}}[5m])"),
    ("max_over_time(x[10m:1m])", f"max_over_time(x{{{NS}}}[10m:1m])"),
    ("x offset 5m", f"x{{{NS}}} offset 5m"),
    ("x @ start()", f"x{{{NS}}} @ start()"),
    ("sum by (pod) (x)", f"sum by (pod) (x{{{NS}}})"),
    ("SUM WITHOUT (a) (x)", f"SUM WITHOUT (a) (x{{{NS}}})"),
    ("sum(x) by (a)", f"sum(x{{{NS}}}) by (a)"),
    ("a / on(pod) group_left(node) b", f"a{{{NS}}} / on(pod) group_left(node) b{{{NS}}}"),
    ("a * on(pod) group_left b", f"a{{{NS}}} * on(pod) group_left b{{{NS}}}"),
    ("x > bool 2", f"x{{{NS}}} > bool 2"),
    ("x and on() y", f"x{{{NS}}} and on() y{{{NS}}}"),
    ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
     f"histogram_quantile(0.9, sum by (le) (rate(h_bucket{{{NS}}}[5m])))"),
    ('label_replace(x, "namespace", "tenant-b", "", "")', f'label_replace(x{{{NS}}}, "namespace", "tenant-b", "", "")'),
    ('x{a="}"}', f'x{{a="}}",{NS}}}'),   # a brace inside a string is text
    ("vector(12)", "vector(12)"),        # no selector: nothing to scope
    ("NaN", "NaN"), ("Inf + 1", "Inf + 1"),
])
def test_every_selector_is_scoped(query, want):
    assert scope_query(query, "tenant-a") == want


@pytest.mark.parametrize("query,why", [
    ('x{a="1" or b="2"}', "not name="),  # Prometheus 3 matcher groups: one group would go unscoped
    ("x{a=b}", "not name="),
    ("x{a}", "not name="),
    ("x # tenant-b", "a comment"),
    ("info(x)", "reads series the query does not select"),
    ("x[5m+1m]", "in a range"),
    ("(x", "unbalanced"), ("x)", "unmatched ')'"), ("x}", "unmatched '}'"), ("x{", "unclosed selector"),
    ("sum(on)", "without a label list"),
    ("x\u00e9", "character"),
    ("x" * 4097, "longer than"),
])
def test_what_cannot_be_rewritten_is_refused(query, why):
    with pytest.raises(UnsafeQuery) as e:
        scope_query(query, "tenant-a")
    assert why in str(e.value)


def test_namespace_value_is_escaped():
    assert scope_query("x", 'we"ird') == 'x{namespace="we\\"ird"}'
