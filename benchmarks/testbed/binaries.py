"""Build the test bed's Go binaries once and cache them outside the repo.

The wrapper modules under gobuild/ pin every version (their go.mod and go.sum are
the single source of truth). A build is keyed by a hash of those files, the Go
version and the flags, so it is rebuilt only when a pin changes. A cold build
takes 10 to 25 minutes on 2 cores; GOMODCACHE and GOCACHE live in Go's usual
places under the home directory and make rebuilds fast.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GOBUILD = Path(__file__).with_name("gobuild")
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BuildError(RuntimeError):
    """The binaries could not be built; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path
    kubernetes_version: str


def cache_root() -> Path:
    if os.environ.get("GPUSCHED_CACHE"):
        return Path(os.environ["GPUSCHED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "gpusched"


def pinned_version(module: str, wrapper: str) -> str:
    text = (GOBUILD / wrapper / "go.mod").read_text()
    m = re.search(rf"^require\s+{re.escape(module)}\s+(v\S+)", text, re.M)
    if not m:
        raise BuildError(f"{GOBUILD / wrapper / 'go.mod'} does not require {module}")
    return m.group(1)


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError("Go is not installed (need Go >= 1.26 on PATH to build the test bed's control plane)")
    return go


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _key(wrapper: str, flags: list[str], go_version: str) -> str:
    h = hashlib.sha256(go_version.encode())
    for p in sorted((GOBUILD / wrapper).iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update("\0".join(flags).encode())
    return h.hexdigest()[:16]


def _k8s_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    parts = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean"]
    return " ".join(parts)


def _helm_ldflags(helm_version: str, client_go_version: str) -> str:
    """Version ldflags as helm's own Makefile sets them: `helm version` prints the pin,
    and lint/template assume the Kubernetes minor its k8s.io modules belong to
    (client-go v0.X.Y is Kubernetes 1.X), not helm's fallback of 1.20."""
    minor = client_go_version.lstrip("v").split(".")[1]
    parts = [f"-X helm.sh/helm/v3/internal/version.version={helm_version}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        parts += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(parts)


def _build(go: str, wrapper: str, packages: list[str], flags: list[str], out: Path) -> None:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    cmd = [go, "build", "-trimpath", *flags, "-o", str(out) + "/", *packages]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=GOBUILD / wrapper, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        hint = ""
        if "proxy" in proc.stderr or "dial tcp" in proc.stderr or "lookup" in proc.stderr:
            hint = " (the Go module proxy could not be reached: check GOPROXY and the network)"
        raise BuildError(f"building {wrapper} failed{hint}:\n{tail}")
    log.info("built %s in %.0f s", wrapper, time.monotonic() - started)


def _ensure(wrapper: str, packages: list[str], flags: list[str], names: list[str]) -> Path:
    go = _go()
    key = _key(wrapper, flags, _go_version(go))
    root = cache_root() / "bin"
    final = root / f"{wrapper}-{key}"
    if all((final / n).is_file() for n in names):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{wrapper}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build once
        if all((final / n).is_file() for n in names):
            return final
        print(f"gpusched: building {wrapper} ({', '.join(names)}) into {final}; "
              "the first build takes 10-25 minutes on 2 cores and is cached after", file=sys.stderr, flush=True)
        tmp = root / f"{wrapper}-{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _build(go, wrapper, packages, flags, tmp)
        missing = [n for n in names if not (tmp / n).is_file()]
        if missing:
            raise BuildError(f"building {wrapper} produced no {', '.join(missing)}")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return final


def ensure_binaries() -> Binaries:
    """Return the test bed's binaries, building any that are not cached yet."""
    version = pinned_version("k8s.io/kubernetes", "kubernetes")
    k8s_flags = ["-tags", "selinux,notest", "-ldflags", _k8s_ldflags(version)]
    k8s = _ensure("kubernetes", [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS], k8s_flags, list(K8S_COMMANDS))
    etcd = _ensure("etcd", ["."], [], ["etcd"])
    kwok = _ensure("kwok", ["sigs.k8s.io/kwok/cmd/kwok"], [], ["kwok"])
    helm = ensure_helm()
    return Binaries(
        etcd=etcd / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=kwok / "kwok",
        helm=helm,
        kubernetes_version=version,
    )


def ensure_helm() -> Path:
    """Return the helm binary (lint and template the chart under deploy/chart), building it
    once from gobuild/helm: helm is not in Debian. 153 s cold on 2 cores (empty GOCACHE,
    modules already downloaded)."""
    helm_version = pinned_version("helm.sh/helm/v3", "helm")
    client_go = re.search(r"^\s+k8s\.io/client-go\s+(v\S+)", (GOBUILD / "helm" / "go.mod").read_text(), re.M)
    if not client_go:
        raise BuildError(f"{GOBUILD / 'helm' / 'go.mod'} lists no k8s.io/client-go")
    flags = ["-ldflags", _helm_ldflags(helm_version, client_go.group(1))]
    return _ensure("helm", ["helm.sh/helm/v3/cmd/helm"], flags, ["helm"]) / "helm"
