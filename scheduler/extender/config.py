"""The extender's configuration file (YAML), with defaults that work without one.

    listen: 0.0.0.0:8888          # where kube-scheduler calls: /filter, /prioritize, /bind
    metricsListen: 0.0.0.0:8889   # /metrics, /debug/..., /healthz, /readyz (plain HTTP)
    schedulerName: gpusched       # /bind refuses pods whose spec.schedulerName is another
    staleAfterSeconds: 600        # a node report older than this is not trusted for new GPU pods
    weights: {...}                # scheduler.core.Weights fields; see `gpusched extender --print-config`
    leaderElection:               # optional: a sidecar of a leader-elected kube-scheduler (the chart's)
      resourceNamespace: gpusched-system   # kube-scheduler's Lease
      resourceName: gpusched-scheduler
      renewDeadlineSeconds: 10    # kube-scheduler's renewDeadline: no bind later than this after a renewal
      identity: ""                # this pod's host name (the default): kube-scheduler's is <hostname>_<uuid>
    tls:                          # optional: serve HTTPS (kube-scheduler's extender tlsConfig)
      certFile: /etc/gpusched/tls/tls.crt
      keyFile: /etc/gpusched/tls/tls.key
      clientCAFile: /etc/gpusched/tls/ca.crt   # require a client certificate signed by it
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.core import Weights
from scheduler.names import is_subdomain


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class LeaderElection:
    """kube-scheduler's Lease, which this extender follows (scheduler/extender/leadership.py)."""
    namespace: str
    name: str
    renew_deadline_s: float = 10.0
    identity: str = ""  # empty: socket.gethostname(), which is the pod's name in a pod

    def to_dict(self) -> dict[str, Any]:
        return {"resourceNamespace": self.namespace, "resourceName": self.name,
                "renewDeadlineSeconds": self.renew_deadline_s, "identity": self.identity}


@dataclass(frozen=True)
class ExtenderConfig:
    listen: tuple[str, int] = ("0.0.0.0", 8888)
    metrics_listen: tuple[str, int] = ("0.0.0.0", 8889)
    stale_after_s: float = 600.0
    scheduler_name: str = "gpusched"
    weights: Weights = field(default_factory=Weights)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    leader_election: LeaderElection | None = None  # None: answer whenever called (one replica, no Lease)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"listen": f"{self.listen[0]}:{self.listen[1]}",
                               "metricsListen": f"{self.metrics_listen[0]}:{self.metrics_listen[1]}",
                               "schedulerName": self.scheduler_name, "staleAfterSeconds": self.stale_after_s, "weights": dataclasses.asdict(self.weights)}
        if self.leader_election is not None:
            out["leaderElection"] = self.leader_election.to_dict()
        if self.tls_cert_file:
            out["tls"] = {"certFile": self.tls_cert_file, "keyFile": self.tls_key_file}
            if self.tls_client_ca_file:
                out["tls"]["clientCAFile"] = self.tls_client_ca_file
        return out


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"listen address {text!r} must look like HOST:PORT, e.g. 0.0.0.0:8888")
    return host or "0.0.0.0", int(port)


def load(path: str | None, listen: str | None = None, tls_cert_file: str | None = None,
         tls_key_file: str | None = None, *, metrics_listen: str | None = None,
         tls_client_ca_file: str | None = None) -> ExtenderConfig:
    """The file's settings, with command-line values (when given) taking precedence."""
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a mapping")
    unknown = set(raw) - {"listen", "metricsListen", "schedulerName", "staleAfterSeconds", "weights", "tls",
                          "leaderElection"}
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
    cfg = ExtenderConfig()
    if listen or raw.get("listen"):
        cfg = dataclasses.replace(cfg, listen=parse_listen(listen or str(raw["listen"])))
    if metrics_listen or raw.get("metricsListen"):
        cfg = dataclasses.replace(cfg, metrics_listen=parse_listen(metrics_listen or str(raw["metricsListen"])))
    if cfg.metrics_listen[1] and cfg.metrics_listen == cfg.listen:
        raise ConfigError("metricsListen must differ from listen: /metrics and /debug have a port of their own")
    if "schedulerName" in raw:
        v = raw["schedulerName"]
        if not isinstance(v, str) or not is_subdomain(v):
            raise ConfigError("schedulerName must be a DNS-1123 subdomain, as kube-scheduler profiles' names are")
        cfg = dataclasses.replace(cfg, scheduler_name=v)
    if "staleAfterSeconds" in raw:
        v = raw["staleAfterSeconds"]
        if not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError("staleAfterSeconds must be a positive number")
        cfg = dataclasses.replace(cfg, stale_after_s=float(v))
    if "weights" in raw:
        w = raw["weights"]
        names = {f.name for f in dataclasses.fields(Weights)}
        if not isinstance(w, dict) or set(w) - names:
            raise ConfigError(f"weights accepts only: {', '.join(sorted(names))}")
        try:
            cfg = dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, **w))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"weights: {exc}") from None
    if raw.get("leaderElection") is not None:
        cfg = dataclasses.replace(cfg, leader_election=_leader_election(raw["leaderElection"]))
    return _with_tls(cfg, raw.get("tls"), tls_cert_file, tls_key_file, tls_client_ca_file)


def _leader_election(section: Any) -> LeaderElection:
    keys = {"resourceNamespace", "resourceName", "renewDeadlineSeconds", "identity"}
    if not isinstance(section, dict) or set(section) - keys:
        raise ConfigError(f"leaderElection accepts only {', '.join(sorted(keys))}")
    names: list[str] = []
    for what in ("resourceNamespace", "resourceName"):
        v = section.get(what)
        if not isinstance(v, str) or not is_subdomain(v):
            raise ConfigError(f"leaderElection.{what} must name kube-scheduler's Lease (a DNS-1123 name)")
        names.append(v)
    deadline = section.get("renewDeadlineSeconds", 10)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool) or not 0 < deadline <= 600:
        raise ConfigError("leaderElection.renewDeadlineSeconds must be a number of seconds in (0, 600], "
                          "kube-scheduler's renewDeadline")
    identity = section.get("identity") or ""
    if not isinstance(identity, str) or len(identity) > 253:
        raise ConfigError("leaderElection.identity must be a host name (kube-scheduler's Lease identity "
                          "is <hostname>_<uuid>)")
    return LeaderElection(names[0], names[1], float(deadline), identity)


def _with_tls(cfg: ExtenderConfig, section: Any, cert: str | None, key: str | None,
              client_ca: str | None) -> ExtenderConfig:
    if section is not None:
        if not isinstance(section, dict) or set(section) - {"certFile", "keyFile", "clientCAFile"}:
            raise ConfigError("tls accepts only certFile, keyFile and clientCAFile")
        cert = cert or section.get("certFile")
        key = key or section.get("keyFile")
        client_ca = client_ca or section.get("clientCAFile")
    if client_ca and not cert:
        raise ConfigError("a client CA (tls.clientCAFile, --tls-client-ca-file) needs TLS: a certificate and key")
    if client_ca and not Path(client_ca).is_file():
        raise ConfigError(f"TLS client CA {client_ca} does not exist or is not a file")
    if not cert and not key:
        return cfg
    if not cert or not key:
        raise ConfigError("TLS needs both a certificate and its private key "
                          "(--tls-cert-file and --tls-private-key-file, or tls.certFile and tls.keyFile)")
    for what, f in (("certificate", cert), ("private key", key)):
        if not Path(f).is_file():
            raise ConfigError(f"TLS {what} {f} does not exist or is not a file")
    return dataclasses.replace(cfg, tls_cert_file=str(cert), tls_key_file=str(key),
                               tls_client_ca_file=str(client_ca) if client_ca else None)
