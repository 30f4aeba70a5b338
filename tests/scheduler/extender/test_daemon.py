"""ExtenderDaemon's wiring that no verb test sees (the daemon is otherwise run whole by the
integration tests, where a missing wire would still pass)."""
from __future__ import annotations

from pathlib import Path

from scheduler import contract
from scheduler.extender.config import ExtenderConfig
from scheduler.extender.daemon import ExtenderDaemon

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_the_pending_pods_informer_feeds_the_learned_shapes(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    d = ExtenderDaemon(ExtenderConfig(listen=("127.0.0.1", 0), metrics_listen=("127.0.0.1", 0)), str(kubeconfig))
    try:
        d.pending.on_pod("ADDED", {"metadata": {"name": "p", "namespace": "ns"},
                                   "spec": {"containers": [{"resources": {"limits": {contract.GPU_RESOURCE: "8"}}}]}})
        assert [(key, req.whole_gpus) for key, req in d.live.pending_requests()] == [("ns/p", 8)]
    finally:
        d.http.server_close()
        d.ops.server_close()
