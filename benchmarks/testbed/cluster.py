"""A real Kubernetes control plane on loopback with kwok's simulated GPU nodes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as
child processes on free 127.0.0.1 ports; their pids, ports and logs live in one
state directory, so `down` stops exactly what `up` started, from any process.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import requests
import yaml

from benchmarks.testbed import pki as pkimod
from benchmarks.testbed.binaries import Binaries, ensure_binaries

log = logging.getLogger(__name__)

STAGES = Path(__file__).with_name("kwok-stages.yaml")
NODE_LEASE_S = 40  # the kubelet's default nodeLeaseDurationSeconds
STATE_FILE = "cluster.json"
# Client identities: common name -> organisations (RBAC groups).
CLIENTS = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": (),
    "system:kube-scheduler": (),
    "kwok": ("system:masters",),
}


# `unshare -Uru sh -c ... HOSTNAME argv...`: the command with a host name of its own
HOST_NAMESPACE = ["unshare", "--user", "--map-root-user", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"']


def host_namespaces_work() -> bool:
    """Whether this machine lets an unprivileged user give a process its own host name."""
    try:
        r = subprocess.run([*HOST_NAMESPACE, "probe-host", "hostname"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.strip() == "probe-host"


class ClusterError(RuntimeError):
    """The cluster could not be started or reached; the message says why and what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate_all(procs: Iterable[subprocess.Popen], wait_s: float = 10.0) -> None:
    """SIGTERM every child still running, all at once (so their shutdowns overlap), then
    wait for each; one that outlives ``wait_s`` is killed."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(wait_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot, to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Proc:
    name: str
    pid: int
    start_time: int
    argv: list[str]
    log: str

    def alive(self) -> bool:
        if _proc_start_time(self.pid) != self.start_time:
            return False
        try:  # an exited child stays a zombie until reaped: reap it, it is not alive
            if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                _reap(self.pid)
                return False
        except OSError:
            return False
        return True


@dataclass
class State:
    dir: str
    ports: dict[str, int] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    kubernetes_version: str = ""
    nodes: int = 0
    profile: str = ""

    @classmethod
    def load(cls, directory: Path) -> "State | None":
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        raw["procs"] = [Proc(**p) for p in raw.get("procs", [])]
        return cls(**raw)

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)


class LocalCluster:
    """One test-bed cluster rooted at a state directory."""

    def __init__(self, state_dir: Path | str):
        self.dir = Path(state_dir).resolve()
        self.state = State.load(self.dir) or State(dir=str(self.dir))
        self.pki = pkimod.PKI(self.dir / "pki")
        self._bins: Binaries | None = None

    # ---------- paths and clients

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def kubeconfig_for(self, user: str) -> Path:
        return self.dir / f"kubeconfig-{user.replace(':', '-')}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state.ports['apiserver']}"

    @property
    def binaries(self) -> Binaries:
        if self._bins is None:
            self._bins = ensure_binaries()
        return self._bins

    def api_client(self):
        """An official kubernetes ApiClient for the admin user."""
        from kubernetes import config as kconfig
        from kubernetes.client import ApiClient, Configuration

        cfg = Configuration()
        kconfig.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        return ApiClient(cfg)

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the test bed's own kubectl (same version as the server) as the admin user."""
        return subprocess.run([str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=timeout)

    def running(self) -> list[Proc]:
        return [p for p in self.state.procs if p.alive()]

    # ---------- lifecycle

    def up(self, apiserver_port: int | None = None, timeout: float = 120.0) -> None:
        """Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok."""
        alive = self.running()
        if alive:
            raise ClusterError(
                f"{self.dir} already holds a running cluster ({', '.join(f'{p.name}={p.pid}' for p in alive)}); "
                f"run `gpusched cluster down --state {self.dir}` first or use another --state")
        if apiserver_port is not None and not port_is_free(apiserver_port):
            raise ClusterError(f"port {apiserver_port} on 127.0.0.1 is in use; pick another with "
                               "--apiserver-port or leave it out to use a free one")
        bins = self.binaries  # may build (minutes) before anything starts
        for sub in ("etcd", "logs", "pki"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.state = State(dir=str(self.dir), kubernetes_version=bins.kubernetes_version)
        self.state.ports = {
            "etcd": free_port(), "etcd-peer": free_port(),
            "apiserver": apiserver_port or free_port(),
            "controller-manager": free_port(), "scheduler": free_port(), "kwok": free_port(),
        }
        self.state.save()
        try:
            self._write_pki_and_kubeconfigs()
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._start_controller_manager()
            self.start_default_scheduler()
            self._start_kwok()
            self.wait_for_default_service_account(timeout)
        except BaseException:
            self.down()
            raise

    def down(self, grace: float = 10.0) -> list[str]:
        """Stop every process this state directory started; returns their names."""
        stopped = []
        for proc in reversed(self.state.procs):
            if not proc.alive():
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(proc.name)
        deadline = time.monotonic() + grace
        for proc in self.state.procs:
            while proc.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.alive():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap(proc.pid)
        self.state.procs = []
        if self.dir.is_dir():
            self.state.save()
        return stopped

    def stop_process(self, name: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """Stop one named process (e.g. to test what happens when it dies)."""
        for proc in self.state.procs:
            if proc.name == name and proc.alive():
                os.killpg(proc.pid, sig)
                deadline = time.monotonic() + wait
                while proc.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if proc.alive():
                    os.killpg(proc.pid, signal.SIGKILL)
                _reap(proc.pid)
        self.state.procs = [p for p in self.state.procs if p.name != name]
        self.state.save()

    def restart_apiserver(self, down_s: float = 0.0, timeout: float = 120.0, sig: int = signal.SIGTERM) -> float:
        """Stop kube-apiserver and start it again on the same port with the same etcd (what an
        upgrade or a crash of the control plane does to clients); returns the seconds it was
        unreachable. Clients (informers, leader election) must reconnect by themselves."""
        t0 = time.monotonic()
        self.stop_process("kube-apiserver", sig)
        if down_s:
            time.sleep(down_s)
        # The port may still have connections in TIME_WAIT (so a plain bind() test says "in use"),
        # but Go listens with SO_REUSEADDR: start at once.
        self._start_apiserver(timeout)
        return time.monotonic() - t0

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        """Start a long-running child in its own session, logging to logs/<name>.log."""
        logpath = self.dir / "logs" / f"{name}.log"
        logpath.parent.mkdir(parents=True, exist_ok=True)
        with open(logpath, "ab") as out:
            popen = subprocess.Popen(
                list(map(str, argv)), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd)
        start = None
        for _ in range(100):
            start = _proc_start_time(popen.pid)
            if start is not None:
                break
            time.sleep(0.01)
        proc = Proc(name, popen.pid, start or 0, list(map(str, argv)), str(logpath))
        self.state.procs = [p for p in self.state.procs if p.name != name] + [proc]
        self.state.save()
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.dir / "logs" / f"{name}.log"
        if not path.is_file():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until(self, name: str, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            proc = next((p for p in self.state.procs if p.name == name), None)
            if proc is not None and not proc.alive():
                raise ClusterError(f"{name} exited while starting; last lines of {proc.log}:\n{self.log_tail(name)}")
            try:
                if check():
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.2)
        raise ClusterError(f"{name} did not become {what} within {timeout:.0f}s ({last}); "
                           f"last lines of its log:\n{self.log_tail(name)}")

    # ---------- components

    def _write_pki_and_kubeconfigs(self) -> None:
        pkimod.create(self.pki.dir, CLIENTS)
        for user in CLIENTS:
            path = self.kubeconfig if user == "admin" else self.kubeconfig_for(user)
            write_kubeconfig(path, self.server, self.pki.ca_cert, self.pki.cert(user), self.pki.key(user), user)

    def _https_ok(self, port: int, path: str) -> bool:
        r = requests.get(f"https://127.0.0.1:{port}{path}", verify=str(self.pki.ca_cert),
                         cert=(str(self.pki.cert("admin")), str(self.pki.key("admin"))), timeout=2)
        return r.status_code == 200

    def _start_etcd(self, timeout: float) -> None:
        p = self.state.ports
        client, peer = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd-peer']}"
        self.spawn("etcd", [
            self.binaries.etcd, "--name=testbed", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}", "--unsafe-no-fsync", "--log-level=warn",
            "--quota-backend-bytes=8589934592",
        ])
        self.wait_until("etcd", lambda: requests.get(f"{client}/health", timeout=2).ok, timeout, "healthy")

    def _start_apiserver(self, timeout: float) -> None:
        p, k = self.state.ports, self.pki
        self.spawn("kube-apiserver", [
            self.binaries.kube_apiserver,
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={k.cert('apiserver')}", f"--tls-private-key-file={k.key('apiserver')}",
            f"--client-ca-file={k.ca_cert}",
            f"--service-account-key-file={k.sa_pub}", f"--service-account-signing-key-file={k.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            # 1,000 kwok nodes heartbeat and two schedulers bind at once: room for that.
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--profiling=false", "--v=1",
        ])
        self.wait_until("kube-apiserver", lambda: self._https_ok(p["apiserver"], "/readyz"), timeout, "ready")

    def _start_controller_manager(self) -> None:
        p, k = self.state.ports, self.pki
        kc = self.kubeconfig_for("system:kube-controller-manager")
        self.spawn("kube-controller-manager", [
            self.binaries.kube_controller_manager,
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={p['controller-manager']}",
            "--leader-elect=false", f"--service-account-private-key-file={k.sa_key}",
            f"--root-ca-file={k.ca_cert}", "--use-service-account-credentials=true",
            "--kube-api-qps=200", "--kube-api-burst=400", "--concurrent-replicaset-syncs=10",
            "--controllers=*,-nodeipam", "--v=1",
        ])

    def scheduler_config(self, kubeconfig: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A KubeSchedulerConfiguration; both schedulers of the test bed share these client settings,
        so throughput comparisons between them are fair."""
        cfg: dict[str, Any] = {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig), "qps": 500, "burst": 1000},
            "leaderElection": {"leaderElect": False},
        }
        cfg.update(extra or {})
        return cfg

    def start_scheduler(self, name: str, config: dict[str, Any], port: int | None = None,
                        hostname: str | None = None) -> Proc:
        """Start a kube-scheduler with the given KubeSchedulerConfiguration (e.g. gpusched's).
        ``hostname``: run it in a UTS namespace of its own with that host name (an unprivileged
        user namespace, `unshare -Ur`), as a pod has: its leader-election identity is
        ``<hostname>_<uuid>``, and a sidecar extender knows its partner by that host name."""
        port = port or free_port()
        self.state.ports[name] = port
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        kc = self.kubeconfig_for("system:kube-scheduler")
        wrap = [] if hostname is None else [*HOST_NAMESPACE, hostname]
        proc = self.spawn(name, [
            *wrap, self.binaries.kube_scheduler, f"--config={path}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--v=1",
        ])
        return proc

    def wait_scheduler_ready(self, name: str, timeout: float = 60.0) -> None:
        """Until kube-scheduler ``name`` answers /readyz with 200: its informers have synced
        (the sched-handler-sync check) and it schedules. A pod created before then waits for
        it, so a case that starts a burst right after a restart would otherwise see the whole
        burst created before the first bind. Its serving certificate is self-signed in
        memory, and /readyz needs no client identity."""
        port = self.state.ports[name]

        def ready() -> bool:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unverified TLS to a self-signed loopback port, on purpose
                return requests.get(f"https://127.0.0.1:{port}/readyz", verify=False, timeout=2).status_code == 200
        self.wait_until(name, ready, timeout, "ready (/readyz)")

    def start_default_scheduler(self) -> None:
        """(Re)start the default kube-scheduler, e.g. after stop_process("kube-scheduler")."""
        cfg = self.scheduler_config(self.kubeconfig_for("system:kube-scheduler"))
        self.start_scheduler("kube-scheduler", cfg, self.state.ports["scheduler"])

    def _start_kwok(self) -> None:
        p = self.state.ports
        self.spawn("kwok", [
            self.binaries.kwok, f"--kubeconfig={self.kubeconfig_for('kwok')}",
            f"--config={STAGES}",
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{p['kwok']}", "--node-ip=10.0.0.1", "--cidr=10.0.0.1/16",
            # Node Leases are the heartbeat kube-controller-manager watches (the stages' node
            # status heartbeat is every 10 minutes); without them every node turns NotReady
            # after the 50 s grace period and the node lifecycle controller marks every pod on
            # it not Ready. kwok renews at a quarter of the duration, as the kubelet does.
            f"--node-lease-duration-seconds={NODE_LEASE_S}",
        ])

    def wait_for_default_service_account(self, timeout: float) -> None:
        from kubernetes import client

        api = client.CoreV1Api(self.api_client())
        self.wait_until("kube-controller-manager",
                        lambda: api.read_namespaced_service_account("default", "default") is not None,
                        timeout, "ready (no default ServiceAccount yet)")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "gpusched-testbed", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "gpusched-testbed", "context": {"cluster": "gpusched-testbed", "user": user}}],
        "current-context": "gpusched-testbed",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)
