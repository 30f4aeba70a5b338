"""A real Prometheus (Debian's `prometheus` package) on a free loopback port.

Targets come from a file_sd JSON file that tests and the fleet simulator rewrite at
will; Prometheus picks up changes without a restart.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

import requests
import yaml

from benchmarks.testbed.cluster import ClusterError, LocalCluster, free_port

PROMETHEUS_HINT = "install it with `apt-get install prometheus` (the README's commands do)"


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not path:
        raise ClusterError(f"the prometheus binary is not installed; {PROMETHEUS_HINT}")
    return path


class Prometheus:
    def __init__(self, cluster: LocalCluster, scrape_interval_s: int = 1):
        self.cluster = cluster
        self.dir = cluster.dir / "prometheus"
        self.targets_file = self.dir / "targets.json"
        self.scrape_interval_s = scrape_interval_s
        self.port = cluster.state.ports.get("prometheus", 0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, groups: Iterable[tuple[list[str], dict[str, str]]]) -> None:
        """Replace the scraped targets: each group is (["host:port", ...], labels)."""
        body = [{"targets": t, "labels": labels} for t, labels in groups]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.targets_file)  # atomic, so Prometheus never reads half a file

    def start(self, timeout: float = 60.0) -> None:
        binary = prometheus_binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.targets_file.exists():
            self.set_targets([])
        config = {
            "global": {"scrape_interval": f"{self.scrape_interval_s}s",
                       "evaluation_interval": f"{self.scrape_interval_s}s"},
            "scrape_configs": [{
                "job_name": "gpusched-testbed",
                # pod/namespace labels come from the targets, as a Kubernetes SD config would set them
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = self.port or free_port()
        self.cluster.state.ports["prometheus"] = self.port
        self.cluster.spawn("prometheus", [
            binary, f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d", "--log.level=warn",
        ])
        self.cluster.wait_until("prometheus", lambda: requests.get(f"{self.url}/-/ready", timeout=2).ok,
                                timeout, "ready")

    def stop(self) -> None:
        self.cluster.stop_process("prometheus")

    def query(self, promql: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]
