"""The autoscaler's flags that shape its Prometheus queries (label names, the recent rate's
window): today's by default, checked before the daemon starts."""
from __future__ import annotations

import argparse

import pytest

from autoscaler.cli import add_arguments, config_from
from autoscaler.signals import Labels


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--prometheus-url", "http://prom:9090", *argv])


@pytest.mark.parametrize("argv, labels", [
    ((), Labels()),
    (("--pod-label", "kubernetes_pod_name", "--namespace-label", "kubernetes_namespace"),
     Labels(pod="kubernetes_pod_name", namespace="kubernetes_namespace")),
    (("--host-label", "node, Hostname", "--model-label", "model"), Labels(hosts=("node", "Hostname"), model_name="model")),
])
def test_label_flags(argv, labels):
    assert config_from(parse(*argv)).labels == labels


@pytest.mark.parametrize("argv", [("--pod-label", "pod-name"), ("--host-label", ","), ("--model-label", "")])
def test_bad_label_names_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2 and "label name" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_bad_metrics_port_is_a_usage_error(port, capsys):
    # was type=int: 70000 reached bind() and ended in an OverflowError traceback
    with pytest.raises(SystemExit) as e:
        parse("--metrics-port", port)
    assert e.value.code == 2 and "use a port number" in capsys.readouterr().err


@pytest.mark.parametrize("argv, window", [
    ((), 30.0), (("--recent-window", "10"), 10.0), (("--recent-window", "0"), 0.0)])
def test_recent_window(argv, window):
    assert config_from(parse(*argv)).recent_window_s == window


@pytest.mark.parametrize("value", ["60", "-5", "nan", "inf", "30s"])
def test_bad_recent_window_is_a_usage_error(value, capsys):
    # 60 s or more is the 1 m rate itself, not a recent one
    with pytest.raises(SystemExit) as e:
        parse("--recent-window", value)
    assert e.value.code == 2 and "--recent-window" in capsys.readouterr().err
