"""deploy/chart/gpusched without a cluster: helm lint and helm template clean with the
defaults and with every optional part on, the committed plain manifests equal the chart's
output, TLS wiring, pod security, documented values, and the Dockerfile."""
from __future__ import annotations

import base64
import re
import subprocess

import pytest
import yaml

from tests.deploy import manifests

# Value sets that must lint and render clean. "all-on" turns on everything that is off by
# default (the Prometheus Operator objects and the Grafana dashboard need CRDs/sidecars the
# test bed lacks: they are rendered and linted here, not applied).
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
VALUE_SETS = {
    "defaults": [],
    "all-on": ["--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
               "--set", "grafanaDashboard.enabled=true", "--set", "extender.tls.enabled=true",
               "--set", f"extender.tls.caData={CA}", "--set", "agent.modelStores[0]=https://models.example/store",
               "--set", "autoscaler.namespaces={llm,team-b}"],
    "tls-ca-from-secret": ["--set", "extender.tls.enabled=true", "--set", "serviceMonitor.enabled=true"],
    "minimal": ["--set", "networkPolicy.enabled=false", "--set", "autoscaler.prewarm=false",
                "--set", "agent.admissionPolicy=false", "--set", "autoscaler.admissionPolicy=false",
                "--set", "namespaces.create=false", "--set", "agent.runtimeClassName=",
                "--set", "networkPolicy.metricsFrom=null"],
    "scheduler-only": ["--set", "agent.enabled=false", "--set", "autoscaler.enabled=false"],
}


@pytest.fixture(scope="module")
def helm():
    return manifests.helm_binary()


def template(helm, *values: str) -> list[dict]:
    mod = manifests.render_module()
    return manifests.load_docs(mod.helm_template(helm, *values))


def by(docs: list[dict], kind: str, name: str) -> dict:
    (d,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return d


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_is_clean(helm, values):
    r = subprocess.run([str(helm), "lint", "--strict", str(manifests.CHART), *values],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout and "[ERROR]" not in r.stdout, r.stdout


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_template_renders_valid_objects(helm, values):
    docs = template(helm, *values)
    assert docs
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
        assert d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "gpusched", d["metadata"]
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate objects"


def test_all_optional_parts_render(helm):
    docs = template(helm, *VALUE_SETS["all-on"])
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name in ("gpusched-extender", "gpusched-scheduler", "gpusched-autoscaler", "gpusched-agent"):
        assert ("ServiceMonitor", name) in kinds
    assert ("PrometheusRule", "gpusched") in kinds
    rules = [r["alert"] for g in by(docs, "PrometheusRule", "gpusched")["spec"]["groups"] for r in g["rules"]]
    assert "GpuschedExtenderSlow" in rules and "GpuschedAutoscalerNoLeader" in rules
    assert "GpuschedExtenderNotActing" in rules  # two sidecars up, but none acting for the leader
    dash = by(docs, "ConfigMap", "gpusched-grafana-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    import json
    panels = json.loads(dash["data"]["gpusched.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for metric in ("gpusched_extender_request_seconds_bucket", "gpusched_autoscaler_desired_replicas",
                   "DCGM_FI_DEV_GPU_UTIL", "gpusched_model_cache_bytes"):
        assert metric in exprs
    # prefetch on: the cache is mounted writable and the stores are passed
    ds = by(docs, "DaemonSet", "gpusched-agent")["spec"]["template"]["spec"]
    c = ds["containers"][0]
    assert "--model-store=https://models.example/store" in c["args"]
    assert [m for m in c["volumeMounts"] if m["name"] == "model-cache"][0]["readOnly"] is False


def test_off_by_default(helm):
    kinds = {d["kind"] for d in template(helm)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not [d for d in template(helm) if d["metadata"]["name"] == "gpusched-grafana-dashboard"]


def test_committed_manifests_are_the_charts_output(helm):
    mod = manifests.render_module()
    for path, text in mod.render(helm).items():
        assert path.exists(), f"{path} is missing: run `.venv/bin/python deploy/render.py`"
        assert path.read_text() == text, (f"{path.relative_to(manifests.ROOT)} differs from the chart: "
                                          "run `.venv/bin/python deploy/render.py` and commit the result")


def test_crd_is_the_charts_crd():
    (crd,) = manifests.docs(path=manifests.RENDERED_CRDS)
    assert crd == yaml.safe_load(manifests.CRD.read_text())


def _pod(docs):
    """The scheduler pods' spec and its two containers: kube-scheduler and the extender sidecar."""
    spec = by(docs, "Deployment", "gpusched-scheduler")["spec"]["template"]["spec"]
    cs = {c["name"]: c for c in spec["containers"]}
    return spec, cs["kube-scheduler"], cs["extender"]


@pytest.mark.parametrize("ca", [CA, ""], ids=["caData", "ca-from-secret"])
def test_tls_between_kube_scheduler_and_the_extender(helm, ca):
    docs = template(helm, "--set", "extender.tls.enabled=true", "--set", "extender.tls.secretName=ext-tls",
                    "--set", f"extender.tls.caData={ca}")
    spec, sched, c = _pod(docs)
    args = c["args"]
    assert "--tls-cert-file=/etc/gpusched-extender/tls/tls.crt" in args
    assert "--tls-private-key-file=/etc/gpusched-extender/tls/tls.key" in args
    (vol,) = [v for v in spec["volumes"] if v["name"] == "extender-tls"]
    assert vol["secret"]["secretName"] == "ext-tls"
    assert {"name": "extender-tls", "mountPath": "/etc/gpusched-extender/tls", "readOnly": True} in c["volumeMounts"]
    # the extender's key is mounted in its container only, not in kube-scheduler's
    assert not [m for m in sched["volumeMounts"] if m["name"] == "extender-tls"]
    # callers need a client certificate from the Secret's CA; probes use the plain metrics port
    assert "--tls-client-ca-file=/etc/gpusched-extender/tls/ca.crt" in args
    assert {"key": "ca.crt", "path": "ca.crt"} in vol["secret"]["items"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTP"}
    # no Service reaches the verbs: they listen on 127.0.0.1; the Service is for /metrics
    svc = by(docs, "Service", "gpusched-extender")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    ext_cfg = yaml.safe_load(by(docs, "ConfigMap", "gpusched-extender")["data"]["extender.yaml"])
    assert ext_cfg["listen"] == "127.0.0.1:8888"
    cfg = yaml.safe_load(by(docs, "ConfigMap", "gpusched-scheduler-config")["data"]["kube-scheduler-config.yaml"])
    ext = cfg["extenders"][0]
    assert ext["urlPrefix"] == "https://127.0.0.1:8888"
    # the certificate names the extender's Service host, as before the sidecar: existing Secrets still fit
    assert ext["tlsConfig"]["serverName"] == "gpusched-extender.gpusched-system.svc"
    assert ext["tlsConfig"]["insecure"] is False
    # kube-scheduler's client certificate, from a Secret of its own
    (client,) = [v for v in spec["volumes"] if v["name"] == "extender-client"]
    assert client["secret"]["secretName"] == "gpusched-extender-client"
    (m,) = [m for m in sched["volumeMounts"] if m["name"] == "extender-client"]
    assert (ext["tlsConfig"]["certFile"], ext["tlsConfig"]["keyFile"]) == (
        f"{m['mountPath']}/tls.crt", f"{m['mountPath']}/tls.key")
    if ca:
        assert ext["tlsConfig"]["caData"] == ca
        assert not [v for v in spec["volumes"] if "secret" in v and v["name"] not in ("extender-client", "extender-tls")]
    else:  # the CA from the Secret's ca.crt, and only that key
        path = ext["tlsConfig"]["caFile"]
        (vol,) = [v for v in spec["volumes"] if "secret" in v and v["name"] not in ("extender-client", "extender-tls")]
        assert vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        (m,) = [m for m in sched["volumeMounts"] if m["name"] == vol["name"]]
        assert path == f"{m['mountPath']}/ca.crt"


def test_tls_with_client_certificates_is_the_default():
    cfg = yaml.safe_load(manifests.one("ConfigMap", "gpusched-scheduler-config")["data"]["kube-scheduler-config.yaml"])
    assert cfg["extenders"][0]["urlPrefix"] == "https://127.0.0.1:8888"
    assert {"certFile", "keyFile", "caFile"} <= set(cfg["extenders"][0]["tlsConfig"])
    spec = manifests.one("Deployment", "gpusched-scheduler")["spec"]["template"]["spec"]
    (ext,) = [c for c in spec["containers"] if c["name"] == "extender"]
    assert "--tls-client-ca-file=/etc/gpusched-extender/tls/ca.crt" in ext["args"]


def test_without_tls_the_extender_is_plain_http(helm):
    docs = template(helm, "--set", "extender.tls.enabled=false")
    cfg = yaml.safe_load(by(docs, "ConfigMap", "gpusched-scheduler-config")["data"]["kube-scheduler-config.yaml"])
    assert cfg["extenders"][0]["urlPrefix"] == "http://127.0.0.1:8888"
    assert "tlsConfig" not in cfg["extenders"][0]
    _, _, ext = _pod(docs)
    assert not [a for a in ext["args"] if a.startswith("--tls")]


@pytest.mark.parametrize("values, want", [
    # the defaults: kube-scheduler's own (15/10/2 s); the sidecar stops binding at renewDeadline
    ([], ("15s", "10s", "2s", 10)),
    (["--set", "scheduler.leaderElection.leaseDurationSeconds=30",
      "--set", "scheduler.leaderElection.renewDeadlineSeconds=20"], ("30s", "20s", "2s", 20)),
])
def test_two_leader_elected_replicas_each_with_its_extender(helm, values, want):
    docs = template(helm, *values)
    dep = by(docs, "Deployment", "gpusched-scheduler")
    assert dep["spec"]["replicas"] == 2
    assert not [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gpusched-extender"]
    spec, sched, ext = _pod(docs)
    assert spec["serviceAccountName"] == "gpusched-scheduler"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    cfg = yaml.safe_load(by(docs, "ConfigMap", "gpusched-scheduler-config")["data"]["kube-scheduler-config.yaml"])
    le = cfg["leaderElection"]
    assert le["leaderElect"] is True and le["resourceName"] == "gpusched-scheduler"
    assert (le["leaseDuration"], le["renewDeadline"], le["retryPeriod"]) == want[:3]
    ext_le = yaml.safe_load(by(docs, "ConfigMap", "gpusched-extender")["data"]["extender.yaml"])["leaderElection"]
    assert ext_le == {"resourceNamespace": "gpusched-system", "resourceName": "gpusched-scheduler",
                      "renewDeadlineSeconds": want[3]}
    # the extender's rights belong to the pair's ServiceAccount; the Lease Role lets it watch that one Lease
    crb = by(docs, "ClusterRoleBinding", "gpusched-extender")
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "gpusched-scheduler", "namespace": "gpusched-system"}]
    role = by(docs, "Role", "gpusched-scheduler-leases")
    (named,) = [r for r in role["rules"] if r.get("resourceNames")]
    assert named["resourceNames"] == ["gpusched-scheduler"] and set(named["verbs"]) == {"get", "update", "list", "watch"}


def test_the_extender_reads_resource_claims_and_writes_none(helm):
    """The extender's own ClusterRole: ResourceClaims read only (kube-scheduler allocates). The
    can-i table cannot show this alone: the pair's ServiceAccount also has system:kube-scheduler."""
    role = by(template(helm), "ClusterRole", "gpusched-extender")
    dra = [r for r in role["rules"] if "resource.k8s.io" in r["apiGroups"]]
    assert dra == [{"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"], "verbs": ["list", "watch"]}]


def test_bad_leader_election_timings_are_refused(helm):
    r = subprocess.run([str(helm), "template", "x", str(manifests.CHART), "--set",
                        "scheduler.leaderElection.renewDeadlineSeconds=15"], capture_output=True, text=True)
    assert r.returncode != 0 and "renewDeadlineSeconds < leaseDurationSeconds" in r.stderr
    r = subprocess.run([str(helm), "template", "x", str(manifests.CHART), "--set", "scheduler.enabled=false"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "extender.enabled needs scheduler.enabled" in r.stderr


def test_cert_manager_issues_the_serving_and_client_certificates(helm):
    docs = template(helm, "--set", "extender.tls.certManager.enabled=true")
    certs = {d["metadata"]["name"]: d["spec"] for d in docs if d and d["kind"] == "Certificate"}
    assert certs["gpusched-extender-ca"]["isCA"] is True
    assert "gpusched-extender.gpusched-system.svc" in certs["gpusched-extender-tls"]["dnsNames"]
    assert certs["gpusched-extender-client"]["usages"] == ["client auth", "digital signature"]
    # both from the chart's own CA, never the cluster's
    assert certs["gpusched-extender-tls"]["issuerRef"]["name"] == "gpusched-extender-ca"
    assert certs["gpusched-extender-client"]["issuerRef"]["name"] == "gpusched-extender-ca"


def test_scheduler_config_is_the_chart_file_with_only_the_url_and_namespace_set():
    """The test bed (benchmarks/testbed/stack.py) runs kube-scheduler with the chart's own file."""
    from benchmarks.testbed import stack
    assert stack.DEPLOY == manifests.SCHEDULER_CONFIG
    source = yaml.safe_load(manifests.SCHEDULER_CONFIG.read_text())
    rendered = yaml.safe_load(manifests.one("ConfigMap", "gpusched-scheduler-config")["data"]
                              ["kube-scheduler-config.yaml"])
    source["extenders"][0]["urlPrefix"] = rendered["extenders"][0]["urlPrefix"]
    source["extenders"][0]["tlsConfig"] = rendered["extenders"][0]["tlsConfig"]  # the test bed sets its own
    assert rendered == source


def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "DaemonSet"):
            yield d["metadata"]["name"], d["metadata"]["namespace"], d["spec"]["template"]["spec"]


def test_every_pod_is_restricted_grade():
    specs = list(pod_specs(manifests.docs()))
    assert {n for n, _, _ in specs} == {"gpusched-scheduler", "gpusched-agent", "gpusched-autoscaler",
                                        "gpusched-dra-plugin"}
    for name, _, spec in specs:
        if name == "gpusched-dra-plugin":  # the one root pod: test_the_dra_plugin_is_root_with_nothing_else
            continue
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert psc.get("runAsUser", 0) != 0, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]} and not sc.get("privileged"), name
            assert not [p for p in c.get("ports", []) if p.get("hostPort")], name
        host = [v for v in spec.get("volumes", []) if "hostPath" in v]
        if name == "gpusched-agent":  # the exceptions: the model cache and /proc, both read-only by default
            assert [v["hostPath"]["path"] for v in host] == ["/var/cache/gpusched/models", "/proc"]
            for v in host:
                (m,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == v["name"]]
                assert m["readOnly"] is True
            assert spec["runtimeClassName"] == "nvidia"
        else:
            assert not host, name


def test_namespaces_carry_pod_security_labels():
    ns = {d["metadata"]["name"]: d["metadata"]["labels"] for d in manifests.docs("Namespace")}
    assert ns[manifests.NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"
    # the agent's hostPath is beyond baseline: privileged, audited at restricted, and held
    # to the rest by the gpusched-agent-namespace-pods admission policy
    assert ns[manifests.AGENT_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert ns[manifests.AGENT_NAMESPACE]["pod-security.kubernetes.io/audit"] == "restricted"
    for name, namespace, _ in pod_specs(manifests.docs()):
        node_side = name in ("gpusched-agent", "gpusched-dra-plugin")
        assert namespace == (manifests.AGENT_NAMESPACE if node_side else manifests.NAMESPACE)


def test_pdbs_and_network_policies():
    pdbs = {d["metadata"]["name"]: d["spec"] for d in manifests.docs("PodDisruptionBudget")}
    assert pdbs["gpusched-scheduler"]["minAvailable"] == 1 and pdbs["gpusched-autoscaler"]["minAvailable"] == 1
    assert "gpusched-extender" not in pdbs  # the scheduler's PDB keeps one pair
    # the verbs (8888) listen on 127.0.0.1: no policy admits them; scrapers reach 10259 and the metrics port
    sched = manifests.one("NetworkPolicy", "gpusched-scheduler")["spec"]
    assert sorted(p["port"] for p in sched["ingress"][0]["ports"]) == [8889, 10259]
    assert not manifests.docs("NetworkPolicy", "gpusched-extender")
    for name in ("gpusched-scheduler", "gpusched-autoscaler", "gpusched-agent"):
        spec = manifests.one("NetworkPolicy", name)["spec"]
        assert spec["policyTypes"] == ["Ingress"] and len(spec["ingress"]) == 1
    # the DRA plugin speaks to the kubelet over unix sockets; its probe comes from the node
    dra = manifests.one("NetworkPolicy", "gpusched-dra-plugin")["spec"]
    assert dra["policyTypes"] == ["Ingress"] and not dra.get("ingress")


FREE_FORM = ("resources", "nodeSelector", "labels", "commonLabels", "tolerations", "metricsFrom", "affinity",
             "weights", "from")


def _leaf_keys(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in FREE_FORM:
            yield from _leaf_keys(v, key + ".")
        else:
            yield key


def test_every_value_is_commented_and_in_the_readme():
    text = (manifests.CHART / "values.yaml").read_text()
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z]\w*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_free_form = any(k in FREE_FORM for _, k in stack)
        stack.append((indent, m.group(2)))
        if inside_free_form:
            continue
        assert lines[i - 1].strip().startswith("#"), f"values.yaml line {i + 1}: {line.strip()!r} has no comment above"
    readme = (manifests.CHART / "README.md").read_text()
    for key in _leaf_keys(yaml.safe_load(text)):
        assert f"`{key}`" in readme, f"values key {key} is not in the chart README's table"


def test_the_wake_endpoint_is_off_by_default_and_reachable_from_the_gateway_only(helm):
    off = template(helm)
    assert not [d for d in off if d["metadata"]["name"] == "gpusched-autoscaler-activation"]
    docs = template(helm, "--set", "autoscaler.activation.enabled=true")
    c = by(docs, "Deployment", "gpusched-autoscaler")["spec"]["template"]["spec"]["containers"][0]
    assert "--activation-port=9403" in c["args"]
    assert {"name": "activation", "containerPort": 9403, "protocol": "TCP"} in c["ports"]
    svc = by(docs, "Service", "gpusched-autoscaler-activation")["spec"]
    assert svc["ports"] == [{"name": "http", "port": 80, "targetPort": "activation", "protocol": "TCP"}]
    # two rules: scrapers on the metrics port, the gateway's namespace on the wake port, nothing else
    rules = by(docs, "NetworkPolicy", "gpusched-autoscaler")["spec"]["ingress"]
    assert [[p["port"] for p in r["ports"]] for r in rules] == [[9402], [9403]]
    assert rules[1]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}


def test_values_schema_rejects_typos(helm):
    r = subprocess.run([str(helm), "template", "x", str(manifests.CHART), "--set", "extender.replica=3"],
                       capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "replica" in r.stderr


def test_dockerfile_is_multistage_small_and_non_root():
    text = (manifests.ROOT / "Dockerfile").read_text()
    instr = [ln.split(None, 1) for ln in (x.strip() for x in text.replace("\\\n", " ").splitlines())
             if ln and not ln.startswith("#")]
    froms = [rest for op, rest in instr if op.upper() == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms), froms
    users = [rest.strip() for op, rest in instr if op.upper() == "USER"]
    assert users and users[-1] in ("65532", "65532:65532"), users
    entry = [rest for op, rest in instr if op.upper() == "ENTRYPOINT"]
    assert entry and '"gpusched"' in entry[-1]
    runs = " ".join(rest for op, rest in instr if op.upper() == "RUN")
    assert "pip" in runs and "[test" not in runs and "[bench" not in runs and "-e " not in runs
    # the chart's pods run as the image's user
    for name, _, spec in pod_specs(manifests.docs()):
        if name in ("gpusched-extender", "gpusched-autoscaler"):
            assert spec["securityContext"]["runAsUser"] == 65532
    ignore = (manifests.ROOT / ".dockerignore").read_text().split()
    for p in (".venv", ".git", "results"):
        assert any(x.strip("/") == p for x in ignore), p


@pytest.mark.parametrize("value, want", [("true", True), ("false", False)])
def test_extender_ignorable_reaches_the_scheduler_config(helm, value, want):
    docs = template(helm, "--set", f"extender.ignorable={value}")
    cfg = yaml.safe_load(by(docs, "ConfigMap", "gpusched-scheduler-config")["data"]["kube-scheduler-config.yaml"])
    assert cfg["extenders"][0]["ignorable"] is want


# kube-scheduler follows the cluster: `helm template --kube-version` stands for the API
# server's version that `helm install` reads (.Capabilities.KubeVersion).
#  --kube-version          values                                     -> kube-scheduler image tag
NO_DRA = ["--set", "agent.dra.enabled=false"]  # before 1.34 (test_dra_needs_kubernetes_1_34)
SCHEDULER_IMAGES = [
    ("1.33.4", NO_DRA, "v1.33.4"),
    ("1.36.3", [], "v1.36.3"),
    ("v1.34.2-eks-1a2b3c4", [], "v1.34.2"),  # a vendor's suffix: registry.k8s.io has upstream tags
    ("1.31.1+k3s1", NO_DRA, "v1.31.1"),
    ("1.33.4", [*NO_DRA, "--set", "scheduler.image.tag=v1.32.9"], "v1.32.9"),  # pinned (one minor older: the skew)
]


@pytest.mark.parametrize("kube,values,tag", SCHEDULER_IMAGES, ids=[r[0] + ("-pinned" if "--set" in r[1][2:] else "")
                                                                   for r in SCHEDULER_IMAGES])
def test_scheduler_image_follows_the_clusters_version(helm, kube, values, tag):
    docs = template(helm, "--kube-version", kube, *values)
    pod = by(docs, "Deployment", "gpusched-scheduler")["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "kube-scheduler"]
    assert c["image"] == f"registry.k8s.io/kube-scheduler:{tag}"
    # nothing else follows the cluster's version
    other = template(helm, "--kube-version", "1.36.3", *values)
    for d in (docs, other):
        sched = by(d, "Deployment", "gpusched-scheduler")["spec"]["template"]["spec"]["containers"]
        for c in sched:
            c.pop("image")
    assert docs == other


def test_committed_manifests_are_rendered_for_the_testbeds_kubernetes():
    mod = manifests.render_module()
    text = (manifests.ROOT / "benchmarks/testbed/gobuild/kubernetes/go.mod").read_text()
    assert f"require k8s.io/kubernetes v{mod.testbed_kube_version()}\n" in text
    assert f"image: registry.k8s.io/kube-scheduler:v{mod.testbed_kube_version()}\n" in \
        (manifests.ROOT / "deploy/manifests/gpusched.yaml").read_text()


DRA_PATHS = ["/var/lib/kubelet/plugins/gpu.gpusched.io", "/var/lib/kubelet/plugins_registry", "/var/run/cdi"]


def test_the_dra_plugin_is_root_with_nothing_else():
    """UID 0 because the three host directories belong to root; every capability dropped
    (test_plugin_privileges.py shows none is needed), read-only root, RuntimeDefault seccomp,
    no host namespace, exactly those three hostPaths, mounted where the kubelet sees them."""
    ds = manifests.one("DaemonSet", "gpusched-dra-plugin")
    assert ds["metadata"]["namespace"] == manifests.AGENT_NAMESPACE
    spec = ds["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "gpusched-dra-plugin"  # not the agent's token
    assert spec["securityContext"] == {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    assert not spec.get("initContainers") and not spec.get("shareProcessNamespace")
    (c,) = spec["containers"]
    assert c["name"] == "dra-plugin" and "command" not in c
    assert c["securityContext"] == {"runAsNonRoot": False, "runAsUser": 0, "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "privileged": False,
                                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert not [p for p in c.get("ports", []) if p.get("hostPort")]
    assert "lifecycle" not in c and "exec" not in c["livenessProbe"]
    host = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert [h["path"] for h in host.values()] == DRA_PATHS
    assert [h["type"] for h in host.values()] == ["DirectoryOrCreate", "Directory", "DirectoryOrCreate"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for name, h in host.items():  # same path inside: the registration names the socket by it
        assert mounts[name]["mountPath"] == h["path"] and not mounts[name].get("subPath")
    assert [v for v in spec["volumes"] if "hostPath" not in v] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    # the agent's own pod stays non-root
    assert manifests.one("DaemonSet", "gpusched-agent")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_the_dra_plugin_args_are_the_drivers_flags_on_those_paths():
    import argparse

    from scheduler.agent.cli import add_arguments
    (c,) = manifests.one("DaemonSet", "gpusched-dra-plugin")["spec"]["template"]["spec"]["containers"]
    assert c["args"][0] == "agent"
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(c["args"][1:])
    assert args.dra_only and args.require_gpus and not args.cache_dir and not args.dra
    assert [args.dra_plugin_dir, args.dra_registry_dir, args.cdi_dir] == DRA_PATHS
    assert args.metrics_port == c["ports"][0]["containerPort"]
    assert {e["name"] for e in c["env"]} == {"NODE_NAME", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HOME"}


def test_the_dra_rights_are_the_plugins_not_the_agents():
    rules = manifests.one("ClusterRole", "gpusched-dra-plugin")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},  # the slice's owner's UID
                     {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"],
                      "verbs": ["get", "create", "update", "delete"]},
                     {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]}]
    agent = manifests.one("ClusterRole", "gpusched-agent")["rules"]
    assert not [r for r in agent if "resource.k8s.io" in r["apiGroups"]]
    (binding,) = manifests.one("ClusterRoleBinding", "gpusched-dra-plugin")["subjects"]
    assert (binding["name"], binding["namespace"]) == ("gpusched-dra-plugin", manifests.AGENT_NAMESPACE)


def test_dra_off_renders_no_plugin_no_root_exception(helm):
    docs = template(helm, "--set", "agent.dra.enabled=false")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not {n for n in names if n[1] in ("gpusched-dra-plugin", "gpusched-agent-own-resourceslice",
                                            "gpu.gpusched.io")}
    policy = by(docs, "ValidatingAdmissionPolicy", "gpusched-agent-namespace-pods")["spec"]
    variables = {v["name"]: v["expression"] for v in policy["variables"]}
    assert variables["draPluginPod"] == "false" and variables["draPaths"] == "[]"
    text = yaml.safe_dump(policy)
    assert "/var/run/cdi" not in text and "plugins_registry" not in text


def test_dra_needs_kubernetes_1_34(helm):
    mod = manifests.render_module()
    with pytest.raises(RuntimeError, match=r"agent.dra.enabled needs Kubernetes >= 1.34.*set agent.dra.enabled=false"):
        mod.helm_template(helm, "--kube-version", "1.33.5")
    assert template(helm, "--kube-version", "1.33.5", "--set", "agent.dra.enabled=false")


def test_the_admission_exception_pins_what_the_chart_renders(helm):
    """The policy's draPluginPod carries the DaemonSet's own image and args: another kubelet
    root or image moves both, so the exception never admits a stale shape."""
    docs = template(helm, "--set", "agent.dra.kubeletDir=/var/lib/k0s/kubelet", "--set", "image.tag=9.9.9",
                    "--set", "agent.dra.nvidiaCdi=true")
    (c,) = by(docs, "DaemonSet", "gpusched-dra-plugin")["spec"]["template"]["spec"]["containers"]
    policy = by(docs, "ValidatingAdmissionPolicy", "gpusched-agent-namespace-pods")["spec"]
    variables = {v["name"]: v["expression"] for v in policy["variables"]}
    import json
    assert json.loads(variables["draPaths"])[:2] == ["/var/lib/k0s/kubelet/plugins/gpu.gpusched.io",
                                                      "/var/lib/k0s/kubelet/plugins_registry"]
    assert f"c.image == {json.dumps(c['image'])}" in variables["draPluginPod"]
    assert c["image"].endswith(":9.9.9") and "--nvidia-cdi" in c["args"]
    assert f"c.?args.orValue([]) == {json.dumps(c['args'], separators=(',', ':'))}" in variables["draPluginPod"]


@pytest.mark.parametrize("path", ["/var/lib/kubelet'] || true || ['", "relative/dir", "/var/run/cdi/"])
def test_dra_paths_that_could_break_the_policy_are_refused(helm, path):
    r = subprocess.run([str(helm), "template", "x", str(manifests.CHART), "--set", f"agent.dra.cdiDir={path}"],
                       capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "cdiDir" in r.stderr


def test_the_dra_plugin_can_be_kept_to_some_of_the_agents_nodes(helm):
    docs = template(helm, "--set", "agent.nodeSelector.pool=gpu", "--set", "agent.dra.nodeSelector.gpusched-dra=on")
    plugin = by(docs, "DaemonSet", "gpusched-dra-plugin")["spec"]["template"]["spec"]
    agent = by(docs, "DaemonSet", "gpusched-agent")["spec"]["template"]["spec"]
    assert plugin["nodeSelector"] == {"pool": "gpu", "gpusched-dra": "on"} and agent["nodeSelector"] == {"pool": "gpu"}
    assert plugin["affinity"] == agent["affinity"]  # the GPU node terms


# (values, is the refusing policy rendered): `auto` refuses annotation shares exactly where the
# DRA plugin runs (agent.enabled and agent.dra.enabled), so that claims are the one way to share
SHARES = [
    ([], True),
    (["--set", "agent.dra.enabled=false"], False),
    (["--set", "agent.enabled=false"], False),
    (["--set", "extender.annotationShares=true"], False),
    (["--set", "extender.annotationShares=false", "--set", "agent.dra.enabled=false"], True),
    (["--set", "extender.annotationShares=auto"], True),
]


@pytest.mark.parametrize("values,refused", SHARES, ids=[" ".join(v[1::2]) or "defaults" for v, _ in SHARES])
def test_annotation_shares_are_refused_where_the_dra_plugin_runs(helm, values, refused):
    names = {(d["kind"], d["metadata"]["name"]) for d in template(helm, *values)}
    policy = {(k, manifests.ANNOTATION_SHARES_POLICY)
              for k in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")}
    assert (policy <= names) == refused and (policy & names == set()) == (not refused)


def test_annotation_shares_on_differs_from_the_defaults_by_the_policy_alone(helm):
    """manifests.apply(annotation_shares=True) stands for this rendering by deleting the policy."""
    def keyed(docs):
        out = {}
        for d in docs:
            ann = d.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
            ann.pop("checksum/extender", None)  # a hash of .Values.extender: any extender value moves it
            out[(d["kind"], d["metadata"]["name"])] = d
        return out
    defaults, on = keyed(template(helm)), keyed(template(helm, "--set", "extender.annotationShares=true"))
    assert set(defaults) - set(on) == {("ValidatingAdmissionPolicy", manifests.ANNOTATION_SHARES_POLICY),
                                       ("ValidatingAdmissionPolicyBinding", manifests.ANNOTATION_SHARES_POLICY)}
    assert set(on) <= set(defaults) and all(on[k] == defaults[k] for k in on)


def test_annotation_shares_value_is_checked(helm):
    mod = manifests.render_module()
    with pytest.raises(RuntimeError, match="annotationShares"):
        mod.helm_template(helm, "--set", "extender.annotationShares=sometimes")


def _autoscaler_rules(docs: list[dict]) -> set[tuple[str, str, str, bool]]:
    """(API group, resource, verb, cluster-wide) the autoscaler's ServiceAccount is granted by
    any binding the chart renders."""
    roles = {(d["kind"], d["metadata"]["name"]): d.get("rules") or [] for d in docs if d["kind"] in ("ClusterRole", "Role")}
    out = set()
    for b in (d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == "gpusched-autoscaler"
                   for s in b.get("subjects") or []):
            continue
        for r in roles.get((b["roleRef"]["kind"], b["roleRef"]["name"]), []):
            out |= {(g, res, v, b["kind"] == "ClusterRoleBinding")
                    for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    return out


# (values, whether the autoscaler may list every namespace's ResourceClaims): RBAC cannot
# narrow that list to one DeviceClass, so it reads every driver's claims (their opaque config
# too); pre-warming is what needs it (docs/security-autoscaler.md)
PREWARM_RBAC = [
    ([], True),
    (["--set", "autoscaler.prewarm=false"], False),
    (["--set", "autoscaler.prewarm=false", "--set", "autoscaler.namespaces={llm}"], False),
]


@pytest.mark.parametrize("values,claims", PREWARM_RBAC)
def test_prewarm_off_drops_the_cluster_wide_claim_and_node_rights(helm, values, claims):
    rules = _autoscaler_rules(template(helm, *values))
    assert (("resource.k8s.io", "resourceclaims", "list", True) in rules) is claims
    assert not [r for r in rules if r[1] == "resourceclaims" and r[:3] != ("resource.k8s.io", "resourceclaims", "list")]
    assert (("", "nodes", "patch", True) in rules) is claims
