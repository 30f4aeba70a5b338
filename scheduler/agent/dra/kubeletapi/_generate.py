"""Vendor the kubelet's gRPC protos from the pinned k8s.io/kubelet module and generate
their Python stubs next to them (`python -m scheduler.agent.dra.kubeletapi._generate`).

    --vendor   first copy the .proto files from `go env GOMODCACHE` (after the test
               bed's build, `./dev setup`, has downloaded k8s.io/kubelet@KUBELET_VERSION)

protoc runs with the repository root as its include path, so the generated
`*_pb2_grpc.py` import their `*_pb2.py` by the package path (scheduler.agent.dra...).
Needs grpcio-tools (a test extra); the daemons need only grpcio and protobuf.
tests/scheduler/agent/dra/test_kubeletapi.py checks that the committed stubs describe
exactly the vendored protos, and those protos are byte-identical to the pinned module's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

KUBELET_VERSION = "v0.36.3"  # k8s.io/kubelet of Kubernetes v1.36.3, the test bed's pin
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]  # the repository root: scheduler/agent/dra/kubeletapi -> ../../../..

# vendored path (relative to HERE) -> path inside the k8s.io/kubelet module
PROTOS = {
    "dra/v1/api.proto": "pkg/apis/dra/v1/api.proto",
    "pluginregistration/v1/api.proto": "pkg/apis/pluginregistration/v1/api.proto",
}


def upstream_dir() -> Path | None:
    """k8s.io/kubelet@KUBELET_VERSION in the Go module cache, or None where it is not there."""
    cache = os.environ.get("GOMODCACHE")
    if not cache and shutil.which("go"):
        cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                               check=False).stdout.strip()
    if not cache:
        return None
    d = Path(cache) / "k8s.io" / f"kubelet@{KUBELET_VERSION}"
    return d if d.is_dir() else None


def vendor() -> None:
    src = upstream_dir()
    if src is None:
        sys.exit(f"k8s.io/kubelet@{KUBELET_VERSION} is not in the Go module cache: run ./dev setup first")
    for ours, theirs in PROTOS.items():
        (HERE / ours).parent.mkdir(parents=True, exist_ok=True)
        (HERE / ours).write_bytes((src / theirs).read_bytes())
    (HERE / "LICENSE").write_bytes((src / "LICENSE").read_bytes())


def generate(out: Path = ROOT) -> list[Path]:
    """Run protoc on the vendored protos; the stubs land under `out` at their package path.
    Returns the .proto paths protoc was given (relative to ROOT)."""
    from grpc_tools import protoc  # the test extra; not needed at run time

    rel = [str((HERE / p).relative_to(ROOT)) for p in PROTOS]
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *rel])
    if rc != 0:
        raise RuntimeError(f"protoc failed ({rc}) on {rel}")
    return [Path(p) for p in rel]


def main(argv: list[str]) -> None:
    if "--vendor" in argv:
        vendor()
    for p in generate():
        print(f"generated stubs for {p}")


if __name__ == "__main__":
    main(sys.argv[1:])
