"""`gpusched extender`: the HTTP extender that a second kube-scheduler calls."""
from __future__ import annotations

import argparse
import ssl

import yaml

from scheduler.cli import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extender", help="serve the kube-scheduler extender (filter, prioritize, bind)",
        description="Places GPU pods by GPU memory, fragmentation and model-cache locality. A second "
                    "kube-scheduler (profile schedulerName: gpusched, see deploy/chart/gpusched) calls it at "
                    "/filter, /prioritize and /bind (with /healthz and /readyz) on --listen; /metrics, /debug/..., "
                    "/healthz and /readyz on --metrics-listen, for operators.",
        epilog="examples:\n"
               "  gpusched extender --kubeconfig ~/.kube/config --listen 127.0.0.1:8888\n"
               "  gpusched extender --config /etc/gpusched/extender.yaml     # in a cluster\n"
               "  gpusched extender --tls-cert-file tls.crt --tls-private-key-file tls.key \\\n"
               "      --tls-client-ca-file ca.crt          # HTTPS, callers with a certificate from ca.crt only\n"
               "  gpusched extender --print-config                           # the defaults",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else the in-cluster service "
                                        "account, else ~/.kube/config)")
    p.add_argument("--listen", help="HOST:PORT to serve on (default 0.0.0.0:8888)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="HOST:PORT for /metrics, /debug, /healthz and /readyz (default 0.0.0.0:8889; port 0: any)")
    p.add_argument("--config", help="YAML config: listen, metricsListen, staleAfterSeconds, weights, tls")
    p.add_argument("--tls-cert-file", metavar="PATH",
                   help="serve HTTPS with this PEM certificate (chain); kube-scheduler then needs "
                        "the extender's tlsConfig with the CA that signed it")
    p.add_argument("--tls-private-key-file", metavar="PATH", help="the PEM private key of --tls-cert-file")
    p.add_argument("--tls-client-ca-file", metavar="PATH",
                   help="require every caller of --listen to present a certificate signed by this PEM CA "
                        "(kube-scheduler's extender tlsConfig certFile/keyFile)")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scheduler.extender.config import ConfigError, load

    try:
        cfg = load(args.config, args.listen, args.tls_cert_file, args.tls_private_key_file,
                   metrics_listen=args.metrics_listen, tls_client_ca_file=args.tls_client_ca_file)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from scheduler.extender.daemon import ExtenderDaemon
    from scheduler.kube.client import KubeConfigError

    try:
        daemon = ExtenderDaemon(cfg, args.kubeconfig)
    except KubeConfigError as exc:
        raise UserError(str(exc)) from None
    except ssl.SSLError as exc:
        raise UserError(f"cannot use TLS certificate {cfg.tls_cert_file} with key {cfg.tls_key_file}: "
                        f"{exc.reason or exc}") from None
    except OSError as exc:
        raise UserError(f"cannot listen on {cfg.listen[0]}:{cfg.listen[1]} or {cfg.metrics_listen[0]}:"
                        f"{cfg.metrics_listen[1]}: {exc.strerror}") from None
    daemon.run()
    return 0
