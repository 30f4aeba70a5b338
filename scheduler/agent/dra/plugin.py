"""The kubelet's side of driver gpu.gpusched.io: the gRPC services of the vendored protos
(kubeletapi/), served on unix sockets as the kubelet expects them.

- Registration (pluginregistration.Registration) on `<registry dir>/gpu.gpusched.io-reg.sock`:
  the kubelet's plugin watcher finds the socket, calls GetInfo and learns the DRA
  endpoint and the service it speaks, `v1.DRAPlugin` (the kubelet 1.36 takes the first
  service the plugin lists that it knows, pkg/kubelet/cm/dra/plugin).
- DRAPlugin v1 on `<plugin dir>/dra.sock`: NodePrepareResources reads each claim from the
  API server, plans it (claims.plan), writes its CDI spec and returns the CDI device IDs;
  NodeUnprepareResources removes the spec. Both are idempotent: the kubelet retries.

A claim that cannot be prepared gets its reason in the response's `error` (the kubelet
records it on the pod and retries); nothing a caller sends stops the server.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from scheduler import contract
from scheduler.agent.dra import cdi
from scheduler.agent.dra.claims import ClaimRef, ClaimRefused, plan, ref_problem
from scheduler.agent.dra.devices import GPU
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2 as dra_pb
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2_grpc as dra_grpc
from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2 as reg_pb
from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

DRA_SERVICE = "v1.DRAPlugin"  # k8s.io/kubelet/pkg/apis/dra/v1 DRAPluginService
PLUGIN_TYPE = "DRAPlugin"  # k8s.io/kubelet/pkg/apis/pluginregistration/v1 DRAPlugin
DEFAULT_PLUGIN_DIR = f"/var/lib/kubelet/plugins/{contract.DRA_DRIVER}"
DEFAULT_REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
DEFAULT_CDI_DIR = "/var/run/cdi"
MAX_CLAIMS = 256  # per call; the kubelet sends a pod's claims, a handful

# (namespace, name) -> the ResourceClaim as JSON, or None when there is none
ClaimReader = Callable[[str, str], Any]


class DraPlugin(dra_grpc.DRAPluginServicer):
    def __init__(self, node: str, read_claim: ClaimReader, gpus: Callable[[], Sequence[GPU]],
                 specs: cdi.SpecDir, *, nvidia_cdi: bool = False):
        self.node = node
        self.read_claim = read_claim
        self.gpus = gpus
        self.specs = specs
        self.nvidia_cdi = nvidia_cdi
        self._lock = threading.Lock()  # one claim's prepare and unprepare never interleave

    def prepare(self, namespace: str, name: str, uid: str) -> dra_pb.NodePrepareResourceResponse:
        bad = ref_problem(namespace, name, uid)
        if bad is not None:
            return dra_pb.NodePrepareResourceResponse(error=f"refused: {bad}")
        ref = ClaimRef(namespace, name, uid)
        try:
            claim = self.read_claim(namespace, name)
            p = plan(claim, ref, self.node, self.gpus())
            with self._lock:
                self.specs.write(p)
        except ClaimRefused as exc:
            log.warning("NodePrepareResources refused: %s", exc)
            return dra_pb.NodePrepareResourceResponse(error=f"refused: {exc}")
        except Exception as exc:  # noqa: BLE001 - API down, disk full: the kubelet retries
            log.exception("NodePrepareResources failed for %s", ref)
            return dra_pb.NodePrepareResourceResponse(error=f"{ref}: {type(exc).__name__}: {exc}"[:1000])
        # one Device per allocation result: the kubelet gives a container the CDI devices of the
        # requests it names, and keys shares by (pool, device, shareID) as the claim's status does
        devices = [dra_pb.Device(request_names=[request], pool_name=g.pool, device_name=g.device, share_id=share,
                                 cdi_device_ids=cdi.cdi_ids(p, g.uuid, self.nvidia_cdi))
                   for g in p.gpus for request, share in g.results]
        log.info("prepared %s: %s", ref, ", ".join(f"{g.uuid} ({'whole' if g.whole else f'{g.consumed} bytes'})"
                                                   for g in p.gpus))
        return dra_pb.NodePrepareResourceResponse(devices=devices)

    def unprepare(self, namespace: str, name: str, uid: str) -> dra_pb.NodeUnprepareResourceResponse:
        bad = ref_problem(namespace, name, uid)
        if bad is not None:
            return dra_pb.NodeUnprepareResourceResponse(error=f"refused: {bad}")
        try:
            with self._lock:
                removed = self.specs.remove(uid)
        except OSError as exc:
            return dra_pb.NodeUnprepareResourceResponse(error=f"removing the CDI spec of {uid}: {exc}")
        log.info("unprepared claim %s/%s (uid %s)%s", namespace, name, uid, "" if removed else ": had no spec")
        return dra_pb.NodeUnprepareResourceResponse()

    # --- gRPC -------------------------------------------------------------------------

    def NodePrepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's name
        return _each_claim(request, context, dra_pb.NodePrepareResourcesResponse(), self.prepare)

    def NodeUnprepareResources(self, request: Any, context: Any) -> Any:  # noqa: N802
        return _each_claim(request, context, dra_pb.NodeUnprepareResourcesResponse(), self.unprepare)


def _each_claim(request: Any, context: Any, out: Any, one: Callable[[str, str, str], Any]) -> Any:
    """`out` with one answer per claim of the kubelet's request, keyed by claim UID."""
    if len(request.claims) > MAX_CLAIMS:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"more than {MAX_CLAIMS} claims in one call")
    for c in request.claims:
        out.claims[c.uid].CopyFrom(one(c.namespace, c.name, c.uid))
    return out


class Registration(reg_grpc.RegistrationServicer):
    """What the kubelet's plugin watcher asks first: who this is and where to call it."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.registered: bool | None = None  # the kubelet's last word, None before it spoke
        self.error = ""

    def GetInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return reg_pb.PluginInfo(type=PLUGIN_TYPE, name=contract.DRA_DRIVER, endpoint=self.endpoint,
                                 supported_versions=[DRA_SERVICE])

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.registered, self.error = request.plugin_registered, request.error
        if request.plugin_registered:
            log.info("registered with the kubelet as DRA driver %s", contract.DRA_DRIVER)
        else:
            log.error("the kubelet refused DRA driver %s: %s", contract.DRA_DRIVER, request.error)
        return reg_pb.RegistrationStatusResponse()


def _listen(server: grpc.Server, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a socket left by the previous agent refuses the bind
    if server.add_insecure_port(f"unix://{path}") == 0:
        raise OSError(f"cannot listen on {path}")


def serve(plugin: DraPlugin, plugin_dir: str | Path = DEFAULT_PLUGIN_DIR,
          registry_dir: str | Path | None = DEFAULT_REGISTRY_DIR, workers: int = 4) -> tuple[grpc.Server, Registration]:
    """Start both services (the registration one only with `registry_dir`); returns the started
    server and the registration servicer. Stop with server.stop(grace)."""
    sock = Path(plugin_dir) / "dra.sock"
    registration = Registration(str(sock))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dra"))
    dra_grpc.add_DRAPluginServicer_to_server(plugin, server)
    _listen(server, sock)
    if registry_dir is not None:
        reg_grpc.add_RegistrationServicer_to_server(registration, server)
        _listen(server, Path(registry_dir) / f"{contract.DRA_DRIVER}-reg.sock")
    server.start()
    os.chmod(sock, 0o600)  # the kubelet runs as root; no one else needs the plugin
    return server, registration
