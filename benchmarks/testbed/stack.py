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
    """With ``tls``, the extender serves HTTPS with a certificate from the test bed's CA and
    kube-scheduler verifies it through the extender's tlsConfig, as the chart's TLS option does."""

    def __init__(self, cluster: LocalCluster, *, tls: bool = False, name: str = "gpusched"):
        self.cluster = cluster
        self.name = name
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.config = cluster.dir / f"{name}-extender.yaml"
        # The test bed reports nodes once, at creation; trust that for the whole session.
        self.config.write_text("staleAfterSeconds: 86400\n")
        self.verify: str | bool = True
        self._tls_args: list[str] = []
        if tls:
            self._tls_args = self._issue_serving_cert()
            self.verify = str(cluster.pki.ca_cert)

    def _issue_serving_cert(self) -> list[str]:
        ca_key, ca_cert = pkimod.load_ca(self.cluster.pki)
        crt, key = pkimod.issue(ca_key, ca_cert, f"{self.name}-extender", server=True,
                                dns=("localhost",), ips=("127.0.0.1",))
        cert_path, key_path = self.cluster.dir / f"{self.name}-extender.crt", self.cluster.dir / f"{self.name}-extender.key"
        cert_path.write_bytes(crt)
        key_path.write_bytes(key)
        key_path.chmod(0o600)
        return ["--tls-cert-file", str(cert_path), "--tls-private-key-file", str(key_path)]

    def get(self, path: str, timeout: float = 5) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=timeout, verify=self.verify)

    def start_extender(self) -> None:
        self.cluster.spawn(f"{self.name}-extender", [
            sys.executable, "-m", "scheduler.cli", "extender", "--kubeconfig", str(self.cluster.kubeconfig),
            "--listen", f"127.0.0.1:{self.port}", "--config", str(self.config), *self._tls_args])
        self.cluster.wait_until(f"{self.name}-extender", lambda: self.get("/readyz", 2).status_code == 200,
                                60, "ready")

    def stop_extender(self) -> None:
        self.cluster.stop_process(f"{self.name}-extender")

    def scheduler_config(self) -> dict:
        cfg = yaml.safe_load(DEPLOY.read_text())
        cfg["extenders"][0]["urlPrefix"] = self.url
        if self.tls:
            ca = base64.b64encode(self.cluster.pki.ca_cert.read_bytes()).decode()
            cfg["extenders"][0]["tlsConfig"] = {"insecure": False, "caData": ca}
        if self.name != "gpusched":
            cfg["profiles"][0]["schedulerName"] = self.name
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
