"""`gpusched cluster`: the local test bed (real control plane, kwok GPU nodes)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from scheduler.cli import UserError

DEFAULT_STATE = ".state/cluster"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="run a local control plane with simulated GPU nodes (kwok)",
        description="A real kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok on "
                    "127.0.0.1, with fake GPU nodes. Binaries are built from pinned Go modules on first "
                    "use (10-25 minutes) and cached under ~/.cache/gpusched.",
        epilog="examples:\n"
               "  gpusched cluster up --nodes 4 --gpu-profile small --state .state/cluster\n"
               "  KUBECONFIG=.state/cluster/kubeconfig kubectl get nodes\n"
               "  gpusched cluster up --nodes 1213 --gpu-profile alibaba --state /tmp/big\n"
               "  gpusched cluster down --state .state/cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="<up|down|status|build>", required=True)

    up = verbs.add_parser("up", help="start the control plane and create GPU nodes")
    up.add_argument("--nodes", type=int, default=4, help="number of fake GPU nodes (default 4)")
    up.add_argument("--gpu-profile", default="small",
                    help="small: 8 x H100 80GB per node; alibaba: nodes of the Alibaba GPU trace (default small)")
    up.add_argument("--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    up.add_argument("--apiserver-port", type=int, default=None, help="fixed API server port (default: a free one)")
    up.add_argument("--prometheus", action="store_true", help="also start Prometheus on a free port")
    up.set_defaults(func=cmd_up)

    down = verbs.add_parser("down", help="stop everything `up` started in this state directory")
    down.add_argument("--state", default=DEFAULT_STATE)
    down.set_defaults(func=cmd_down)

    status = verbs.add_parser("status", help="show the processes, ports and node count")
    status.add_argument("--state", default=DEFAULT_STATE)
    status.set_defaults(func=cmd_status)

    build = verbs.add_parser("build", help="build (or find cached) test-bed binaries and print their paths")
    build.set_defaults(func=cmd_build)


def cmd_up(args: argparse.Namespace) -> int:
    from benchmarks.testbed.binaries import BuildError
    from benchmarks.testbed.cluster import ClusterError, LocalCluster
    from benchmarks.testbed.nodes import create_nodes
    from benchmarks.testbed.profiles import ProfileError, nodes_for
    from kubernetes import client

    try:
        specs = nodes_for(args.gpu_profile, args.nodes)
    except ProfileError as exc:
        raise UserError(str(exc)) from None
    cluster = LocalCluster(Path(args.state))
    started = time.monotonic()
    try:
        cluster.up(apiserver_port=args.apiserver_port)  # cleans up after itself if it fails
    except (ClusterError, BuildError) as exc:
        raise UserError(str(exc)) from None
    try:
        api = client.CoreV1Api(cluster.api_client())
        create_nodes(api, specs)
        cluster.state.nodes, cluster.state.profile = len(specs), args.gpu_profile
        cluster.state.save()
        wait_nodes_ready(api, len(specs), timeout=max(60.0, len(specs) * 0.2))
        if args.prometheus:
            from benchmarks.testbed.prometheus import Prometheus
            Prometheus(cluster).start()
    except (ClusterError, BuildError) as exc:
        cluster.down()
        raise UserError(str(exc)) from None
    except BaseException:
        cluster.down()
        raise
    print(f"cluster up in {time.monotonic() - started:.0f}s: Kubernetes {cluster.state.kubernetes_version}, "
          f"{len(specs)} {args.gpu_profile} GPU nodes Ready, API server {cluster.server}")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    if args.prometheus:
        print(f"  Prometheus http://127.0.0.1:{cluster.state.ports['prometheus']}")
    print(f"  stop with: gpusched cluster down --state {args.state}")
    return 0


def wait_nodes_ready(api, want: int, timeout: float) -> None:
    from benchmarks.testbed.cluster import ClusterError

    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        nodes = api.list_node(label_selector="type=kwok").items
        ready = sum(1 for n in nodes for c in (n.status.conditions or []) if c.type == "Ready" and c.status == "True")
        if ready >= want:
            return
        time.sleep(0.5)
    raise ClusterError(f"only {ready} of {want} nodes became Ready within {timeout:.0f}s (is kwok running?)")


def cmd_down(args: argparse.Namespace) -> int:
    from benchmarks.testbed.cluster import LocalCluster

    state = Path(args.state)
    if not state.is_dir():
        raise UserError(f"no cluster state at {state} (nothing to stop)")
    stopped = LocalCluster(state).down()
    print(f"stopped {', '.join(stopped) if stopped else 'nothing (no process was running)'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from benchmarks.testbed.cluster import LocalCluster

    cluster = LocalCluster(Path(args.state))
    if not cluster.state.procs:
        print(f"no cluster running in {args.state}")
        return 1
    for p in cluster.state.procs:
        print(f"{p.name:26s} pid {p.pid:<8d} {'running' if p.alive() else 'STOPPED'}  log {p.log}")
    print(f"ports: {cluster.state.ports}")
    print(f"nodes: {cluster.state.nodes} ({cluster.state.profile}); kubeconfig {cluster.kubeconfig}")
    return 0 if all(p.alive() for p in cluster.state.procs) else 1


def cmd_build(args: argparse.Namespace) -> int:
    from benchmarks.testbed.binaries import BuildError, ensure_binaries

    try:
        bins = ensure_binaries()
    except BuildError as exc:
        raise UserError(str(exc)) from None
    for name, value in vars(bins).items():
        print(f"{name:24s} {value}")
    return 0
