"""The chart's monitoring objects without a cluster: how the scheduler's ServiceMonitor
authenticates to kube-scheduler's /metrics, and the Grafana dashboard's variables, panels and
queries (every query parsed by the real promtool, the Prometheus the test bed runs)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy import manifests
from tests.deploy.test_chart import by, helm, template  # noqa: F401  (helm is a fixture)

DASHBOARD = manifests.CHART / "files" / "grafana-dashboard.json"
READER = "gpusched-metrics-reader"
DEPRECATED_AUTH = ("bearerTokenFile", "bearerTokenSecret", "basicAuth")


def endpoint(docs: list[dict], name: str) -> dict:
    (ep,) = by(docs, "ServiceMonitor", name)["spec"]["endpoints"]
    return ep


#  values                                               -> Secret the token comes from, reader objects rendered
TOKEN_CASES = [
    ([],                                                   ("gpusched-metrics-reader-token", "token"), True),
    (["--set", "serviceMonitor.schedulerToken.secretName=prom-scrape",
      "--set", "serviceMonitor.schedulerToken.key=bearer"], ("prom-scrape", "bearer"), False),  # your own
]


@pytest.mark.parametrize("values, secret, reader", TOKEN_CASES, ids=["chart-reader", "own-secret"])
def test_scheduler_servicemonitor_sends_a_token_through_authorization(helm, values, secret, reader):  # noqa: F811
    docs = template(helm, "--set", "serviceMonitor.enabled=true", *values)
    ep = endpoint(docs, "gpusched-scheduler")
    assert ep["scheme"] == "https" and ep["port"] == "https"
    assert ep["authorization"] == {"type": "Bearer", "credentials": {"name": secret[0], "key": secret[1]}}
    # prometheus-operator reads credentials from the ServiceMonitor's own namespace
    assert by(docs, "ServiceMonitor", "gpusched-scheduler")["metadata"]["namespace"] == manifests.NAMESPACE
    for d in docs:
        if d["kind"] == "ServiceMonitor":
            for e in d["spec"]["endpoints"]:
                assert not set(DEPRECATED_AUTH) & set(e), (d["metadata"]["name"], e)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs if d["metadata"]["name"].startswith(READER)}
    if not reader:
        assert names == set()
        return
    assert names == {("ServiceAccount", READER), ("Secret", READER + "-token"), ("ClusterRole", READER),
                     ("ClusterRoleBinding", READER)}
    tok = by(docs, "Secret", READER + "-token")
    assert tok["type"] == "kubernetes.io/service-account-token"
    assert tok["metadata"]["annotations"]["kubernetes.io/service-account.name"] == READER
    assert tok["metadata"]["namespace"] == manifests.NAMESPACE
    # the token controller deletes a token Secret whose ServiceAccount is not there yet
    order = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert order.index(("ServiceAccount", READER)) < order.index(("Secret", READER + "-token"))
    # GET /metrics and nothing else: no resource, no other verb or path
    assert by(docs, "ClusterRole", READER)["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    binding = by(docs, "ClusterRoleBinding", READER)
    assert binding["roleRef"]["name"] == READER
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": READER, "namespace": manifests.NAMESPACE}]


def test_no_reader_without_servicemonitors_or_scheduler(helm):  # noqa: F811
    assert not [d for d in template(helm) if d["metadata"]["name"].startswith(READER)]
    docs = template(helm, "--set", "serviceMonitor.enabled=true", "--set", "scheduler.enabled=false",
                    "--set", "extender.enabled=false")
    assert not [d for d in docs if d["metadata"]["name"].startswith(READER)]
    assert not [d for d in docs if d["metadata"]["name"] == "gpusched-scheduler"]


def test_scheduler_token_key_must_be_a_secret_key(helm):  # noqa: F811
    r = subprocess.run([str(helm), "template", "x", str(manifests.CHART), "--set", "serviceMonitor.enabled=true",
                        "--set", "serviceMonitor.schedulerToken.key=a/b"], capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "key" in r.stderr


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def variables(dash: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def exprs(dash: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_has_namespace_and_inferenceautoscaler_variables(dashboard):
    v = variables(dashboard)
    assert list(v) == ["datasource", "namespace", "ias", "model"]  # each query may use those before it
    for name in ("namespace", "ias", "model"):
        assert v[name]["type"] == "query" and v[name]["multi"] and v[name]["includeAll"], name
        assert v[name]["datasource"]["uid"] == "${datasource}"
        assert "allValue" not in v[name], name  # All = the listed values, so ias stays inside $namespace
    # namespaces with an InferenceAutoscaler (from its ias label, "<namespace>/<name>") or a vLLM server
    ns = v["namespace"]["query"]["query"]
    assert "gpusched_autoscaler_desired_replicas" in ns and "vllm:num_requests_waiting" in ns
    assert re.search(v["namespace"]["regex"].strip("/"), 'namespace="llm"').group(1) == "llm"
    assert 'ias=~"${namespace:regex}/.+"' in v["ias"]["query"]["query"]
    assert 'namespace=~"$namespace"' in v["model"]["query"]["query"]


def test_dashboard_panels_follow_the_variables(dashboard):
    for title, e in exprs(dashboard):
        if re.search(r"gpusched_autoscaler_((desired|current|warm)_replicas|signal_value|decisions_total)", e):
            assert 'ias=~"$ias"' in e, (title, e)
        if "vllm:" in e:
            selectors = re.findall(r"vllm:\w+\{([^}]*)\}", e)
            assert selectors and len(selectors) == e.count("vllm:"), (title, e)  # every vLLM series filtered
            for s in selectors:
                assert 'namespace=~"$namespace"' in s and 'model_name=~"$model"' in s, (title, e)


def test_dashboard_shows_the_inference_servers_metrics(dashboard):
    by_metric = {}
    for title, e in exprs(dashboard):
        for m in re.findall(r"vllm:\w+", e):
            by_metric.setdefault(m, title)
    for m in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
              "vllm:gpu_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket"):
        assert m in by_metric, m
    (ttft,) = [e for _, e in exprs(dashboard) if "time_to_first_token" in e]
    assert ttft.startswith("histogram_quantile(0.99, sum by (le, ")


def test_dashboard_layout(dashboard):
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
    rows = [p["title"] for p in sorted(panels, key=lambda p: p["gridPos"]["y"]) if p["type"] == "row"]
    assert rows == ["Extender", "Autoscaler", "Inference servers (vLLM)", "Nodes (agent)"]


# What Grafana substitutes before the query reaches Prometheus, for promtool to parse.
GRAFANA_VARS = [("${namespace:regex}", "(llm|team-b)"), ("$namespace", "(llm|team-b)"), ("$ias", "llm/llama-8b"),
                ("$model", "meta-llama/Llama-3.1-8B-Instruct"), ("$__rate_interval", "2m")]


def test_every_dashboard_query_is_valid_promql(dashboard, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool (Debian's prometheus package, which the test bed runs) is needed: "
                    "apt-get install prometheus", pytrace=False)
    queries = [e for _, e in exprs(dashboard)]
    for name in ("ias", "model"):  # label_values(metric{...}, label): the selector is PromQL
        q = variables(dashboard)[name]["query"]["query"]
        queries.append(re.fullmatch(r"label_values\((.*), \w+\)", q).group(1))
    q = variables(dashboard)["namespace"]["query"]["query"]
    queries.append(re.fullmatch(r"query_result\((.*)\)", q).group(1))
    rules = []
    for i, q in enumerate(queries):
        for var, value in GRAFANA_VARS:
            q = q.replace(var, value)
        assert "$" not in q.replace('"$1"', ""), q  # label_replace's $1 is Prometheus', not Grafana's
        rules.append({"record": f"dashboard:query{i}", "expr": q})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules)} rules found" in r.stdout
