"""`gpusched autoscaler`: the InferenceAutoscaler controller."""
from __future__ import annotations

import argparse
import logging
import re
import signal
import threading

from scheduler.ops_http import port_arg

DESCRIPTION = """\
Scales inference Deployments named by InferenceAutoscaler objects (kubectl get ias)
on queue depth, GPU utilisation, KV-cache usage or a PromQL query read from
Prometheus, keeps warm replicas (pods loaded but held out of traffic by the
readiness gate gpusched.io/serving) and promotes them in about a second on a burst,
and asks node agents to prefetch the model where the forecast says replicas will go.

Every --interval seconds, for each InferenceAutoscaler: read the spec and the target
Deployment, count ready/pending/warm pods, read the signals (an unknown signal holds
the replica count; it never scales down), decide, then promote/demote pods and scale
the Deployment to serving + warm replicas. Status (kubectl get ias -o wide), Events
(kubectl describe ias NAME) and the log say what was decided and why.

Run two replicas: they elect a leader through the Lease gpusched-autoscaler in
--namespace; only the leader acts, the other takes over within --lease-duration.
"""

EPILOG = """\
examples:
  # on a workstation, against a cluster and a port-forwarded Prometheus:
  # (the cluster of --kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config)
  gpusched autoscaler --prometheus-url http://127.0.0.1:9090 --namespace default

  # see what it would do without changing anything (Events "DryRun" + log):
  gpusched autoscaler --kubeconfig ~/.kube/config --prometheus-url http://prometheus:9090 --dry-run

  # in a cluster (deploy/chart, or deploy/manifests/gpusched.yaml): the in-cluster service account is used
  gpusched autoscaler --prometheus-url http://prometheus-operated.monitoring:9090

a minimal InferenceAutoscaler (deploy/examples/vllm-autoscaled.yaml has a full one):
  apiVersion: gpusched.io/v1alpha1
  kind: InferenceAutoscaler
  metadata: {name: llama, namespace: llm}
  spec:
    scaleTargetRef: {name: llama}          # an apps/v1 Deployment whose pods have
    minReplicas: 1                         #   readinessGates: [{conditionType: gpusched.io/serving}]
    maxReplicas: 8
    warmReplicas: 1
    model: meta-llama/Llama-3.1-8B-Instruct
    signals: [{type: queueDepth, target: 5}]   # vllm:num_requests_waiting per replica

endpoints on --metrics-port: /metrics (gpusched_autoscaler_*), /healthz
on --activation-port: POST /activate/NAMESPACE/NAME wakes a model at zero (minReplicas 0) at once,
  answering 503 with Retry-After (docs/benchmarks.md, "scale to zero", has the gateway recipe)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autoscaler", help="scale inference Deployments with warm replicas (InferenceAutoscaler)",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .daemon import LEASE_NAME, default_identity

    p.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else the in-cluster service "
                                        "account, else ~/.kube/config)")
    p.add_argument("--prometheus-url", required=True, metavar="URL",
                   help="Prometheus base URL, e.g. http://prometheus.monitoring:9090")
    p.add_argument("--prometheus-timeout", type=_positive, default=3.0, metavar="S",
                   help="seconds per Prometheus query before the signal counts as unknown (default 3)")
    p.add_argument("--interval", type=_positive, default=5.0, metavar="S",
                   help="seconds between decisions (default 5); keep it steady: the forecast assumes "
                        "evenly spaced samples")
    p.add_argument("--recent-window", type=_recent_window, default=30.0, metavar="S",
                   help="window of the arrival rate read beside the 1 m rate, for scale-ups only (with an "
                        "SLO): twice the scrape interval of the model servers' PodMonitor, so that it holds "
                        "the last two scrapes (default 30, for 15 s; 10 for deploy/examples/"
                        "vllm-podmonitor.yaml's 5 s). A burst after a quiet minute shows there one scrape "
                        "after it starts; it asks only past its counting noise at the SLO's percentile (most "
                        "of a steady rate's blips ask nothing; the margin assumes two scrapes in the "
                        "window, and more make it wider), and what it asks for is held one cold start. "
                        "Keep it a multiple of "
                        "the scrape interval (the query compares the requests in flight now with their count "
                        "this long ago). A window of under two scrapes holds one sample at times: no rate, "
                        "and the rule sits that tick out; with 30 s scrapes no window below the 1 m rate's "
                        "works: set 0. 0: off. While no recent rate is read, Holt's forecast asks for "
                        "replicas instead (held one cold start), unless the InferenceAutoscaler sets "
                        "spec.forecast.scaleUp")
    p.add_argument("--namespace", default="gpusched-system",
                   help=f"namespace of the leader-election Lease {LEASE_NAME} (default gpusched-system)")
    p.add_argument("--watch-namespace", default=None, metavar="NS[,NS...]", type=_namespaces,
                   help="only InferenceAutoscalers of these namespaces, comma-separated; the chart passes "
                        "autoscaler.namespaces, and an empty value watches none (default: all namespaces)")
    p.add_argument("--identity", default=None,
                   help=f"this replica's name in the Lease (default hostname-pid, e.g. {default_identity()})")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and report (log lines, Events 'DryRun') but change nothing: no scaling, no "
                        "promotions, no prefetch, no status; uses its own Lease, so it can run beside a live one")
    p.add_argument("--metrics-port", type=port_arg, default=9402, metavar="PORT",
                   help="serve /metrics and /healthz on this port (default 9402; 0: off)")
    p.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR", help="address to serve on (default 0.0.0.0)")
    p.add_argument("--activation-port", type=port_arg, default=0, metavar="PORT",
                   help="serve the wake endpoint for models at zero on this port: POST /activate/NS/NAME, or "
                        "ingress-nginx's custom-errors default backend; reach it from the gateway only "
                        "(docs/security.md) (default 0: off)")
    p.add_argument("--activation-addr", default="0.0.0.0", metavar="ADDR",
                   help="address of the wake endpoint (default 0.0.0.0)")
    p.add_argument("--lease-duration", type=_positive, default=15.0, metavar="S",
                   help="Lease duration: a standby takes over at most this long after the leader dies "
                        "(default 15; renew deadline 2/3 of it, retry every 2/15)")
    p.add_argument("--workers", type=int, default=4, metavar="N",
                   help="InferenceAutoscalers reconciled in parallel within a tick (default 4)")
    g = p.add_argument_group("label names on Prometheus's series (docs/metrics.md)")
    g.add_argument("--pod-label", default="pod", metavar="NAME", type=_label,
                   help="the pod's name on vLLM/TGI/Triton targets and dcgm-exporter series (default pod; "
                        "exported_NAME is read too)")
    g.add_argument("--namespace-label", default="namespace", metavar="NAME", type=_label,
                   help="the pod's namespace (default namespace; exported_NAME is read too)")
    g.add_argument("--host-label", default="Hostname,hostname", metavar="NAME[,NAME...]", type=_labels,
                   help="dcgm-exporter's node label, any of these (default Hostname,hostname)")
    g.add_argument("--model-label", default="model_name", metavar="NAME", type=_label,
                   help="the served model's label on vLLM series (default model_name)")
    p.add_argument("--no-prewarm", action="store_true",
                   help="never ask node agents to prefetch models (no Node writes at all)")


def _recent_window(text: str) -> float:
    from .signals import recent_window_problem

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    problem = recent_window_problem(v)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return v


def _namespaces(text: str) -> str:
    """Checked here so a bad list is a usage error, not a traceback from the daemon."""
    from autoscaler.daemon import watched_namespaces

    try:
        watched_namespaces(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--watch-namespace: ")) from None
    return text


def _label(text: str) -> str:
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Prometheus label name")
    return text


def _labels(text: str) -> tuple[str, ...]:
    names = tuple(_label(t.strip()) for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one label name")
    return names


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def config_from(args: argparse.Namespace):
    from .daemon import Config, default_identity
    from .signals import Labels

    return Config(
        prometheus_url=args.prometheus_url.rstrip("/"),
        interval_s=args.interval,
        recent_window_s=args.recent_window,
        namespace=args.namespace,
        identity=args.identity or default_identity(),
        dry_run=args.dry_run,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        activation_port=args.activation_port,
        activation_addr=args.activation_addr,
        lease_duration_s=args.lease_duration,
        prometheus_timeout_s=args.prometheus_timeout,
        watch_namespace=args.watch_namespace,
        workers=max(1, args.workers),
        prewarm=not args.no_prewarm,
        labels=Labels(pod=args.pod_label, namespace=args.namespace_label, hosts=args.host_label,
                      model_name=args.model_label),
    )


def run(args: argparse.Namespace) -> int:
    from scheduler.cli import UsageError, UserError
    from scheduler.kube.client import KubeConfigError, api_client

    from .daemon import Autoscaler

    if not args.prometheus_url.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus-url {args.prometheus_url!r}: give an http:// or https:// URL")
    if not 0 <= args.metrics_port < 65536:
        raise UsageError(f"--metrics-port {args.metrics_port}: not a port")
    cfg = config_from(args)
    try:
        api = api_client(args.kubeconfig)
    except KubeConfigError as exc:
        raise UserError(str(exc)) from None
    daemon = Autoscaler(api, cfg)
    stop = threading.Event()

    def on_signal(signum, _frame):
        logging.getLogger(__name__).info("signal %d: releasing the Lease and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.run(stop)
    except OSError as exc:
        raise UserError(f"cannot serve on {cfg.metrics_addr}:{cfg.metrics_port} or {cfg.activation_addr}:"
                        f"{cfg.activation_port}: {exc.strerror}") from None
    return 0
