"""The gpusched extender and its kube-scheduler on the test bed, configured as deploy/ deploys them.

Used by the integration tests, the demo and the benchmarks alike."""
from __future__ import annotations

import base64
import sys
from pathlib import Path

import requests
import yaml

from benchmarks.testbed import pki as pkimod
from benchmarks.testbed.cluster import LocalCluster, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "gpusched" / "files" / "kube-scheduler-config.yaml"


class GpuschedScheduler:
    """With ``tls`` (the default, as the chart deploys it), the extender serves HTTPS and asks
    every caller of its verbs for a client certificate; kube-scheduler's extender tlsConfig
    carries the CA (caData) and its client certificate (certFile, keyFile), all from a CA of
    their own. /metrics, /debug, /healthz and /readyz are on a plain-HTTP port of their own."""

    def __init__(self, cluster: LocalCluster, *, tls: bool = True, name: str = "gpusched",
                 nodes_to_score: int | None = None):
        self.cluster = cluster
        # percentageOfNodesToScore for its kube-scheduler, in place of the chart's (0: adaptive)
        self.nodes_to_score = nodes_to_score
        self.name = name
        self.port = free_port()
        self.ops_port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self.config = cluster.dir / f"{name}-extender.yaml"
        # The test bed reports nodes once, at creation; trust that for the whole session.
        self.config.write_text(f"staleAfterSeconds: 86400\nschedulerName: {name}\n")
        self.verify: str | bool = True
        self.cert: tuple[str, str] | None = None  # kube-scheduler's client certificate, for tests calling verbs
        self._tls_args: list[str] = []
        self.pki: pkimod.ExtenderTLS | None = None
        self.proc = None  # the extender's process, once started
        if tls:
            self.pki = pkimod.create_extender_tls(cluster.dir / "extender-pki", name)
            self._tls_args = ["--tls-cert-file", str(self.pki.cert), "--tls-private-key-file", str(self.pki.key),
                              "--tls-client-ca-file", str(self.pki.ca_cert)]
            self.verify = str(self.pki.ca_cert)
            self.cert = (str(self.pki.client_cert), str(self.pki.client_key))

    def get(self, path: str, timeout: float = 5) -> requests.Response:
        """An operator's GET (/metrics, /debug/..., /healthz, /readyz), on the metrics port."""
        return requests.get(f"{self.ops_url}{path}", timeout=timeout)

    def post(self, path: str, timeout: float = 5, **kw) -> requests.Response:
        """A verb, as kube-scheduler calls it: with its client certificate when TLS is on."""
        return requests.post(f"{self.url}{path}", timeout=timeout, verify=self.verify, cert=self.cert, **kw)

    def start_extender(self) -> None:
        self.proc = self.cluster.spawn(f"{self.name}-extender", [
            sys.executable, "-m", "scheduler.cli", "extender", "--kubeconfig", str(self.cluster.kubeconfig),
            "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{self.ops_port}",
            "--config", str(self.config), *self._tls_args])
        self.cluster.wait_until(f"{self.name}-extender", lambda: self.get("/readyz", 2).status_code == 200,
                                60, "ready")

    def stop_extender(self) -> None:
        self.cluster.stop_process(f"{self.name}-extender")

    def scheduler_config(self) -> dict:
        cfg = yaml.safe_load(DEPLOY.read_text())
        cfg["extenders"][0]["urlPrefix"] = self.url
        if self.pki is not None:
            ca = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
            cfg["extenders"][0]["tlsConfig"] = {"insecure": False, "caData": ca, "certFile": str(self.pki.client_cert),
                                                "keyFile": str(self.pki.client_key)}
        if self.name != "gpusched":
            cfg["profiles"][0]["schedulerName"] = self.name
        if self.nodes_to_score is not None:  # the profile's value wins over a global one
            if self.nodes_to_score:
                cfg["profiles"][0]["percentageOfNodesToScore"] = self.nodes_to_score
            else:
                cfg["profiles"][0].pop("percentageOfNodesToScore", None)
                cfg.pop("percentageOfNodesToScore", None)
        cfg["clientConnection"]["kubeconfig"] = str(self.cluster.kubeconfig_for("system:kube-scheduler"))
        cfg["leaderElection"] = {"leaderElect": False}
        return cfg

    def start(self) -> None:
        self.start_extender()
        self.cluster.start_scheduler(f"{self.name}-scheduler", self.scheduler_config())

    def stop(self) -> None:
        self.cluster.stop_process(f"{self.name}-scheduler")
        self.stop_extender()

    def metrics(self) -> str:
        return self.get("/metrics").text

    def debug_node(self, name: str) -> dict:
        r = self.get(f"/debug/nodes/{name}")
        return r.json() if r.status_code == 200 else {}
