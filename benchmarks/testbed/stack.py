"""The gpusched extender and its kube-scheduler on the test bed, configured as deploy/ deploys them.

Used by the integration tests, the demo and the benchmarks alike."""
from __future__ import annotations

import sys
from pathlib import Path

import requests
import yaml

from benchmarks.testbed.cluster import LocalCluster, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "scheduler" / "kube-scheduler-config.yaml"


class GpuschedScheduler:
    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = cluster.dir / "extender.yaml"
        # The test bed reports nodes once, at creation; trust that for the whole session.
        self.config.write_text("staleAfterSeconds: 86400\n")

    def start_extender(self) -> None:
        self.cluster.spawn("gpusched-extender", [
            sys.executable, "-m", "scheduler.cli", "extender", "--kubeconfig", str(self.cluster.kubeconfig),
            "--listen", f"127.0.0.1:{self.port}", "--config", str(self.config)])
        self.cluster.wait_until("gpusched-extender",
                                lambda: requests.get(f"{self.url}/readyz", timeout=2).status_code == 200,
                                60, "ready")

    def stop_extender(self) -> None:
        self.cluster.stop_process("gpusched-extender")

    def scheduler_config(self) -> dict:
        cfg = yaml.safe_load(DEPLOY.read_text())
        cfg["extenders"][0]["urlPrefix"] = self.url
        cfg["clientConnection"]["kubeconfig"] = str(self.cluster.kubeconfig_for("system:kube-scheduler"))
        cfg["leaderElection"] = {"leaderElect": False}
        return cfg

    def start(self) -> None:
        self.start_extender()
        self.cluster.start_scheduler("gpusched-scheduler", self.scheduler_config())

    def stop(self) -> None:
        self.cluster.stop_process("gpusched-scheduler")
        self.stop_extender()

    def metrics(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=5).text

    def debug_node(self, name: str) -> dict:
        r = requests.get(f"{self.url}/debug/nodes/{name}", timeout=5)
        return r.json() if r.status_code == 200 else {}
