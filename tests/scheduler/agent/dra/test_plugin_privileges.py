"""What the chart's gpusched-dra-plugin container needs, checked with the kernel rather than
assumed: UID 0 with every capability dropped (setpriv: empty bounding, inheritable and
ambient sets, no_new_privs) can make the plugin's unix sockets, replace a stale one and
write and remove CDI specs in directories that root owns with mode 0755 (as the kubelet's
plugins/, plugins_registry/ and /var/run/cdi are), because it is their owner; no
CAP_DAC_OVERRIDE is involved.

The controls show the capabilities really are gone: the same process cannot write a root-owned
0555 directory, which root with its capabilities can (CAP_DAC_OVERRIDE). Run as root where
the tests run as root; elsewhere in a user namespace whose root is the test's user (the
kernel's permission checks are the same there: the directories' owner is UID 0 inside it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scheduler import contract

ROOT = Path(__file__).resolve().parents[4]

CHILD = textwrap.dedent("""
    import json, os, socket, sys
    from pathlib import Path
    import grpc
    from scheduler.agent.dra import cdi
    from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2 as dra_pb, api_pb2_grpc as dra_grpc
    from scheduler.agent.dra.plugin import DraPlugin, serve
    from tests.scheduler.agent.dra.gpus import claim, h100s, result

    base = Path(sys.argv[1])
    status = dict(line.split(":\\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\\t" in line)
    out = {"uid": os.geteuid(), "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
           "no_new_privs": status.get("NoNewPrivs", "").strip()}
    gpus = h100s()
    uid = "0b6f3d52-9c1e-4a27-8d1f-5e2a7c9b1001"
    dev = gpus[2].uuid.lower()
    store = {("team-a", "llama-gpu"): claim(uid, [result(dev, "n", memory="20Gi")])}
    specs = cdi.SpecDir(base / "cdi")
    plugin = DraPlugin("n", lambda ns, name: store.get((ns, name)), lambda: gpus, specs)
    sock = base / "plugins" / "gpu.gpusched.io" / "dra.sock"
    for attempt in ("first", "replacing-a-stale-socket"):
        server, _ = serve(plugin, base / "plugins" / "gpu.gpusched.io", base / "plugins_registry")
        out[attempt + "-sockets"] = sorted(p.name for p in base.rglob("*.sock"))
        out[attempt + "-dra-sock-mode"] = oct(sock.stat().st_mode & 0o777)
        with grpc.insecure_channel(f"unix://{base / 'plugins' / 'gpu.gpusched.io' / 'dra.sock'}") as ch:
            stub = dra_grpc.DRAPluginStub(ch)
            req = [dra_pb.Claim(namespace="team-a", name="llama-gpu", uid=uid)]
            prep = stub.NodePrepareResources(dra_pb.NodePrepareResourcesRequest(claims=req), timeout=10)
            out[attempt + "-prepare-error"] = prep.claims[uid].error
            out[attempt + "-spec-written"] = specs.path(uid).exists()
            unprep = stub.NodeUnprepareResources(dra_pb.NodeUnprepareResourcesRequest(claims=req), timeout=10)
            out[attempt + "-unprepare-error"] = unprep.claims[uid].error
            out[attempt + "-spec-removed"] = not specs.path(uid).exists()
        server.stop(None).wait()
        for path in (sock, base / "plugins_registry" / "gpu.gpusched.io-reg.sock"):
            stale = socket.socket(socket.AF_UNIX)  # what a killed plugin leaves: a socket file no one serves
            stale.bind(str(path))
            stale.close()
    try:
        (base / "read-only" / "probe").write_text("x")
        out["read_only_dir_written"] = True
    except PermissionError:
        out["read_only_dir_written"] = False
    print(json.dumps(out))
""")


def _root_prefix() -> list[str]:
    """How to be UID 0 here: as we are, or in a user namespace mapping us to root."""
    if os.geteuid() == 0:
        return []
    if shutil.which("unshare") is None:
        pytest.skip("not root and no unshare(1) for a user namespace")
    r = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"not root and no user namespace here: {r.stderr.decode().strip()}")
    return ["unshare", "--user", "--map-root-user"]


NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs"]


def _run(base: Path, drop: bool) -> dict:
    """The child as UID 0, with every capability dropped or (the control) with root's own."""
    if drop and shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) (util-linux) is needed to drop capabilities")
    for d in (base, base / "plugins", base / "read-only"):
        d.mkdir(exist_ok=True)
    base.chmod(0o755)
    (base / "plugins").chmod(0o755)
    (base / "read-only").chmod(0o555)
    # plugins/<driver> and cdi/ the pod's DirectoryOrCreate makes; plugins_registry/ the kubelet
    cmd = [*_root_prefix(), *(NO_CAPS if drop else []), sys.executable, "-c", CHILD, str(base)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _made_by_root_0755(base: Path) -> None:
    for sub in ("plugins/gpu.gpusched.io", "plugins_registry", "cdi"):
        d = base / sub
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)


def test_uid_0_without_any_capability_serves_the_kubelet_and_writes_cdi_specs(tmp_path):
    _made_by_root_0755(tmp_path)
    out = _run(tmp_path, drop=True)
    # really no capability left, and none to regain (bounding set empty, no_new_privs)
    assert (out["uid"], out["cap_eff"], out["cap_bnd"], out["no_new_privs"]) == (0, "0" * 16, "0" * 16, "1")
    for attempt in ("first", "replacing-a-stale-socket"):
        assert out[attempt + "-prepare-error"] == "" and out[attempt + "-spec-written"], out
        assert out[attempt + "-unprepare-error"] == "" and out[attempt + "-spec-removed"], out
        assert out[attempt + "-sockets"] == ["dra.sock", f"{contract.DRA_DRIVER}-reg.sock"]
        assert out[attempt + "-dra-sock-mode"] == "0o600"  # only root (the kubelet) may connect
    # the control: without CAP_DAC_OVERRIDE even root cannot write a 0555 directory it owns
    assert out["read_only_dir_written"] is False


def test_the_control_root_with_its_capabilities_overrides_the_mode(tmp_path):
    _made_by_root_0755(tmp_path)
    out = _run(tmp_path, drop=False)
    assert out["uid"] == 0 and out["cap_eff"] != "0" * 16
    assert out["read_only_dir_written"] is True  # CAP_DAC_OVERRIDE: what the plugin goes without
