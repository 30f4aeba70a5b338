"""`gpusched agent`: the node agent (a DaemonSet on GPU nodes; see deploy/chart/gpusched)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from scheduler.ops_http import port_arg
from scheduler.quantity import QuantityError, parse_bytes

log = logging.getLogger("scheduler.agent")

DESCRIPTION = """\
Report this node's GPUs (through NVML) and its model cache on the Node object
(annotations gpusched.io/gpus, gpusched.io/model-cache, gpusched.io/reported-at
and labels nvidia.com/gpu.{product,memory,count} unless GPU feature discovery
runs), export them as Prometheus metrics (DCGM names, unless dcgm-exporter
runs), and prefetch models the Node's gpusched.io/prefetch
annotation asks for.

Writes are rate-limited: on change (memory used moving by more than
--mem-threshold, GPU health, the set of cached models) at most once per
--min-write-interval, plus a heartbeat every --heartbeat.

Without a GPU driver the agent says so in one line and runs in no-GPU mode (the
cache is still published); --require-gpus makes that an error instead."""

EPILOG = """\
examples:
  # what the agent sees on this node, as JSON, writing nothing
  gpusched agent --once --no-publish --cache-dir /var/cache/gpusched/hf --output json

  # the same against a recorded 8x H100 node (no GPU needed)
  gpusched agent --once --no-publish --output json \\
      --nvml-recording tests/scheduler/agent/data/nvml-8xh100-10gib.json

  # as the DaemonSet runs it (NODE_NAME from the downward API); the cache dir is
  # the HF_HOME the serving pods mount, models land in its hub/ subdirectory
  gpusched agent --cache-dir /var/cache/gpusched/hf --require-gpus \\
      --model-store hf --hf-token-file /var/run/secrets/hf/token \\
      --cache-quota 500Gi --metrics-port 9401

  # ask node gpu-7 to prefetch a model (JSON list; "source" and "revision" optional)
  kubectl annotate node gpu-7 --overwrite \\
      gpusched.io/prefetch='[{"model": "meta-llama/Llama-3.1-8B-Instruct"}]'
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agent", help="node agent: publish GPUs and model cache, prefetch models",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number of seconds between 0 and 86400")
    return v


def _bytes(text: str) -> int:
    try:
        return parse_bytes(text, what="--mem-threshold")
    except QuantityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quota(text: str) -> int:
    try:
        return parse_bytes(text, what="--cache-quota")
    except QuantityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to read")
    g.add_argument("--cache-dir", action="append", default=[], metavar="DIR",
                   help="model cache directory to scan: an HF_HOME (its hub/ is read), a hub cache, or an "
                        "<org>/<name> tree; repeatable. Prefetch writes into the first, in the hub layout")
    g.add_argument("--loaded-model", action="append", default=[], metavar="ID",
                   help="model a local inference server has loaded on the GPU (tier 'gpu'); repeatable")
    g.add_argument("--no-residency", action="store_true",
                   help="do not measure page-cache residency (every cached model reports tier 'disk')")
    g.add_argument("--require-gpus", action="store_true",
                   help="exit with an error when there is no GPU or NVIDIA driver (default: no-GPU mode)")
    g.add_argument("--nvml-recording", metavar="FILE",
                   help="read GPUs from a recording of NVML answers instead of the driver (demos, tests)")
    g = p.add_argument_group("publishing")
    g.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""), metavar="NAME",
                   help="this node's name (default: $NODE_NAME, set from the downward API)")
    g.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig to use (default: $KUBECONFIG, else in-cluster, else ~/.kube/config)")
    g.add_argument("--no-publish", action="store_true", help="do not write the Node or record Events")
    g.add_argument("--interval", type=_seconds, default=10.0, metavar="S",
                   help="seconds between reads of GPUs and cache (default 10)")
    g.add_argument("--min-write-interval", type=_seconds, default=30.0, metavar="S",
                   help="at most one Node write per this many seconds (default 30)")
    g.add_argument("--heartbeat", type=_seconds, default=120.0, metavar="S",
                   help="write at least this often, refreshing gpusched.io/reported-at (default 120)")
    g.add_argument("--mem-threshold", type=_bytes, default=2**30, metavar="QTY",
                   help="GPU memory used must move by more than this to cause a write (default 1Gi)")
    g = p.add_argument_group("prefetch")
    g.add_argument("--model-store", action="append", default=[], metavar="STORE",
                   help="where models may be prefetched from: 'hf' (the Hugging Face Hub), another http(s) "
                        "endpoint speaking the Hub's API (a mirror), s3://bucket/prefix, or an absolute "
                        "directory; the last two hold <org>/<name>/. The first is the default source; "
                        "repeatable. Without one, prefetch is off")
    g.add_argument("--hf-token-file", metavar="FILE",
                   help="file holding the Hub token (a mounted Secret), read at each prefetch; sent only to "
                        "the Hub endpoint stores (gated and private models)")
    g.add_argument("--s3-endpoint", metavar="URL",
                   help="endpoint of an S3-compatible store for s3:// model stores (MinIO, Ceph RGW, ...); "
                        "credentials from boto3's usual chain (AWS_* variables, AWS_SHARED_CREDENTIALS_FILE, "
                        "IRSA)")
    g.add_argument("--cache-quota", type=_quota, metavar="QTY",
                   help="keep the prefetch directory's hub/ within this size (e.g. 500Gi): before a prefetch, "
                        "evict least recently used models no pod on this node uses (needs RBAC to list pods)")
    g.add_argument("--prefetch-dir", metavar="DIR", help="cache directory prefetch writes into (default: first "
                   "--cache-dir)")
    g = p.add_argument_group("dynamic resource allocation (docs/ownership.md)")
    g.add_argument("--dra", action="store_true",
                   help="be the DRA driver gpu.gpusched.io on this node: publish its GPUs as a ResourceSlice and "
                        "serve the kubelet's DRA plugin API (needs the kubelet's plugin directories and the "
                        "runtime's CDI directory)")
    g.add_argument("--dra-only", action="store_true",
                   help="be only the DRA driver: no Node report, cache, prefetch or GPU metrics. The chart runs it "
                        "so, as root with no capability, in a DaemonSet of its own (gpusched-dra-plugin): the "
                        "kubelet's plugin directories and the CDI directory belong to root; the agent stays non-root")
    g.add_argument("--dra-plugin-dir", default="/var/lib/kubelet/plugins/gpu.gpusched.io", metavar="DIR",
                   help="where the plugin's socket dra.sock is made (default %(default)s)")
    g.add_argument("--dra-registry-dir", default="/var/lib/kubelet/plugins_registry", metavar="DIR",
                   help="the kubelet's plugin registry directory (default %(default)s)")
    g.add_argument("--cdi-dir", default="/var/run/cdi", metavar="DIR",
                   help="where CDI specs of prepared claims are written (default %(default)s)")
    g.add_argument("--nvidia-cdi", action="store_true",
                   help="also hand containers NVIDIA's CDI device nvidia.com/gpu=<UUID> (nodes where the "
                        "GPU Operator or nvidia-ctk generated NVIDIA's CDI specs)")
    g = p.add_argument_group("output")
    g.add_argument("--metrics-port", type=port_arg, default=9401, metavar="PORT",
                   help="serve Prometheus /metrics on this port (default 9401; 0: off; off with --once)")
    g.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR", help="address for /metrics (default 0.0.0.0)")
    g.add_argument("--stale-after", type=_seconds, default=300.0, metavar="S",
                   help="/healthz (same port as /metrics) answers 503 when no tick finished for this long "
                        "(default 300): the liveness probe then restarts a stuck agent")
    g.add_argument("--gpu-metrics", choices=("auto", "always", "never"), default="auto",
                   help="export DCGM_FI_* GPU metrics; auto (default): not on Nodes where the GPU Operator runs "
                        "dcgm-exporter (label nvidia.com/gpu.deploy.dcgm-exporter=true)")
    g.add_argument("--no-gpu-metrics", action="store_true", help="the same as --gpu-metrics=never")
    g.add_argument("--proc-root", default="/proc", metavar="DIR",
                   help="the host's /proc, for GPU processes' cgroups (gpusched_pod_gpu_* metrics); the chart "
                        "mounts it read-only at /host/proc. Default /proc: right only with hostPID")
    g.add_argument("--gpu-labels", choices=("auto", "always", "never"), default="auto",
                   help="write the nvidia.com/gpu.{product,memory,count} labels; auto (default): not on Nodes "
                        "GPU feature discovery labels (it owns them there)")
    g.add_argument("--once", action="store_true", help="read, publish (unless --no-publish), print and exit")
    g.add_argument("--output", choices=("text", "json"), default="text",
                   help="with --once: 'json' prints inventory, cache, annotations and labels as JSON")


def _user_error(msg: str) -> Exception:
    from scheduler.cli import UserError
    return UserError(msg)


def _core_v1(kubeconfig: str | None) -> Any:
    try:
        from kubernetes import client

        from scheduler.kube.client import KubeConfigError, api_client
    except ImportError as exc:
        raise _user_error(f"the kubernetes client is not installed ({exc}); use --no-publish") from None
    try:
        return client.CoreV1Api(api_client(kubeconfig))
    except KubeConfigError as exc:
        raise _user_error(f"{exc} (or use --no-publish)") from None


def build_agent(args: argparse.Namespace) -> Any:
    from scheduler.agent.cache import cache_dir_problem
    from scheduler.agent.daemon import Agent, AgentConfig
    from scheduler.agent.metrics import AgentMetrics
    from scheduler.agent.nvml import RecordedNVML
    from scheduler.agent.pod_source import PodGpuSource
    from scheduler.agent.prefetch import Prefetcher
    from scheduler.agent.publish import NodePublisher

    if args.min_write_interval > args.heartbeat:
        raise _user_error("--min-write-interval must not exceed --heartbeat")
    if args.stale_after <= args.interval:
        raise _user_error("--stale-after must exceed --interval, or /healthz fails between two ticks")
    cache_dirs = tuple(os.path.abspath(d) for d in args.cache_dir)
    for d in cache_dirs:
        bad = cache_dir_problem(d)
        if bad is not None:  # not fatal: the agent reports it on every scan until it is fixed
            log.warning("%s", bad[1])
    nvml = None
    if args.nvml_recording:
        try:
            nvml = RecordedNVML.load(args.nvml_recording)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
    publisher = pod_gpu = dra = None
    dra_only = getattr(args, "dra_only", False)
    if (getattr(args, "dra", False) or dra_only) and (args.no_publish or args.once):
        raise _user_error("--dra needs the API server and a long-running agent: not with --no-publish or --once")
    if dra_only:
        extra = [f for f, v in (("--cache-dir", args.cache_dir), ("--model-store", args.model_store),
                                ("--loaded-model", args.loaded_model), ("--cache-quota", args.cache_quota)) if v]
        if extra:
            raise _user_error(f"--dra-only runs the DRA driver alone: not with {', '.join(extra)}")
        if not args.node_name:
            raise _user_error("no node name: pass --node-name or set NODE_NAME")
        from scheduler.agent.dra.node import DraNode
        dra = DraNode(_core_v1(args.kubeconfig).api_client, args.node_name, plugin_dir=args.dra_plugin_dir,
                      registry_dir=args.dra_registry_dir, cdi_dir=args.cdi_dir, nvidia_cdi=args.nvidia_cdi)
    elif not args.no_publish:
        if not args.node_name:
            raise _user_error("no node name: pass --node-name or set NODE_NAME (or use --no-publish)")
        core = _core_v1(args.kubeconfig)
        publisher = NodePublisher(core, args.node_name)
        pod_gpu = PodGpuSource(core, args.node_name, proc_root=args.proc_root)
        if getattr(args, "dra", False):
            from scheduler.agent.dra.node import DraNode
            dra = DraNode(core.api_client, args.node_name, plugin_dir=args.dra_plugin_dir,
                          registry_dir=args.dra_registry_dir, cdi_dir=args.cdi_dir, nvidia_cdi=args.nvidia_cdi)
    prefetcher = None
    if args.model_store and not args.once:
        target = os.path.abspath(args.prefetch_dir) if args.prefetch_dir else (cache_dirs[0] if cache_dirs else None)
        if target is None:
            raise _user_error("--model-store needs a --cache-dir (or --prefetch-dir) to prefetch into")
        if target not in cache_dirs:
            cache_dirs += (target,)  # what is prefetched must be scanned, or it is fetched again
        try:
            prefetcher = Prefetcher(target, args.model_store, token_file=args.hf_token_file,
                                    s3_endpoint=args.s3_endpoint)
        except ValueError as exc:
            raise _user_error(str(exc)) from None
    config = AgentConfig(
        node_name=args.node_name, cache_dirs=cache_dirs, interval_s=args.interval,
        min_interval_s=args.min_write_interval, heartbeat_s=args.heartbeat, mem_threshold_bytes=args.mem_threshold,
        require_gpus=args.require_gpus, loaded_models=tuple(args.loaded_model),
        measure_residency=not args.no_residency, model_stores=tuple(args.model_store),
        prefetch_dir=args.prefetch_dir, cache_quota_bytes=args.cache_quota, stale_after_s=args.stale_after, gpu_labels=args.gpu_labels,
        gpu_metrics="never" if args.no_gpu_metrics or dra_only else args.gpu_metrics)
    if dra_only:  # the agent beside it writes the Node's labels
        config.gpu_labels = "never"
    metrics = AgentMetrics(args.node_name, gpu_metrics=config.gpu_metrics != "never")
    return Agent(config, nvml=nvml, publisher=publisher, metrics=metrics, prefetcher=prefetcher, pod_gpu=pod_gpu,
                 dra=dra)


def run(args: argparse.Namespace) -> int:
    from scheduler.agent.nvml import NVMLUnavailable

    agent = build_agent(args)
    if args.once:
        try:
            agent.start()
        except NVMLUnavailable as exc:
            raise _user_error(f"--require-gpus: {exc}") from None
        try:
            result = agent.tick(force_publish=True)
        finally:
            agent.close()
        if args.output == "json":
            json.dump(result.to_dict(args.node_name), sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
        else:
            _print_text(result)
        return 1 if (agent.publisher is not None and not result.published) else 0

    if args.metrics_port:
        try:
            agent.metrics.serve(args.metrics_port, args.metrics_addr, health=agent.healthy)
        except OSError as exc:
            raise _user_error(f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {exc}") from None
        log.info("metrics on http://%s:%d/metrics, liveness on /healthz", args.metrics_addr, args.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        agent.run(stop)
    except NVMLUnavailable as exc:
        raise _user_error(f"--require-gpus: {exc}") from None
    return 0


def _print_text(result: Any) -> None:
    from scheduler.quantity import format_bytes

    inv = result.inventory
    if inv.available:
        print(f"GPUs: {len(result.gpus)} (driver {inv.driver_version or '?'})")
    else:
        print(f"GPUs: none ({'; '.join(inv.errors) or 'NVML unavailable'})")
    for g in result.gpus:
        mem = (f"{format_bytes(g.memory_used)} / {format_bytes(g.memory_total)} used"
               if g.memory_used is not None and g.memory_total is not None else "memory unknown")
        health = "healthy" if g.healthy else "UNHEALTHY: " + "; ".join(g.health_reasons)
        print(f"  {g.index}  {g.name or '?'}  {g.uuid or '?'}  {mem}  util {g.utilization_gpu}%  {health}")
    print(f"models: {len(result.scan.models)}")
    for m in result.scan.models:
        print(f"  {m.model}  {format_bytes(m.bytes)}  {m.tier}  {m.path}")
    for p in result.scan.incomplete:
        print(f"  not counted: {p}")
    for p in result.scan.problems:
        print(f"  problem: {p}")
    print(f"published: {'yes' if result.published else 'no'} ({result.reason})")


def main(argv: list[str] | None = None) -> int:
    """`python -m scheduler.agent ...`: the same as `gpusched agent ...`."""
    from scheduler.cli import main as gpusched

    return gpusched(["agent", *(sys.argv[1:] if argv is None else argv)])
