"""The `gpusched` command line as a user meets it: --version, -v on either side of the
subcommand, a subcommand's own usage for its unknown flags, one-line errors with exit
code 1 (runtime) or 2 (usage), --debug/-vv for the traceback, and the daemons' kubeconfig
errors and unreachable API server (run as subprocesses, as a user runs them)."""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import subprocess
import sys
from importlib.metadata import EntryPoint, version

import pytest

from benchmarks.testbed.cluster import free_port
from scheduler import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def gpusched(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# A subcommand of our own, registered through the same entry-point group as the real ones.
SEEN: dict[str, object] = {}


def register_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="test subcommand")
    p.add_argument("--fail", choices=("user", "usage", "os"))
    p.add_argument("--level", type=int, default=0)
    p.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    SEEN["level"] = logging.getLogger().getEffectiveLevel()
    if args.fail == "user":
        raise cli.UserError("the user's mistake")
    if args.fail == "usage":
        raise cli.UsageError("--level and --fail disagree")
    if args.fail == "os":
        open("/nonexistent/dir/file", "w")  # noqa: SIM115 - raises
    return 0


@pytest.fixture
def probe(monkeypatch):
    eps = [EntryPoint(name="probe", value=f"{__name__}:register_probe", group="gpusched.commands")]
    monkeypatch.setattr(cli, "entry_points", lambda group: eps)
    root = logging.getLogger()
    level = root.level
    SEEN.clear()
    yield
    root.setLevel(level)


def test_version_is_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gpusched {version('gpusched')}"


# argv                                -> log level seen by the subcommand
VERBOSE = [
    (["probe"], logging.INFO),
    (["-v", "probe"], logging.DEBUG),          # before the subcommand
    (["--verbose", "probe"], logging.DEBUG),
    (["probe", "-v"], logging.DEBUG),          # after it
    (["probe", "--level", "3", "--verbose"], logging.DEBUG),
]


@pytest.mark.parametrize("argv,level", VERBOSE)
def test_verbose_before_or_after_the_subcommand(probe, argv, level):
    assert cli.main(argv) == 0
    assert SEEN["level"] == level


def test_unknown_flag_gets_the_subcommands_usage(probe, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["probe", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gpusched probe ") and "--level" in err
    assert err.strip().splitlines()[-1] == "gpusched probe: error: unrecognized arguments: --bogus"


def test_unknown_flag_of_a_nested_subcommand_gets_its_usage():
    r = gpusched("bench", "placement", "--bogus")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: gpusched bench placement ")
    assert r.stderr.strip().splitlines()[-1] == "gpusched bench placement: error: unrecognized arguments: --bogus"


def test_unknown_top_level_flag_gets_the_top_usage(probe, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--bogus", "probe"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("usage: gpusched [-h]")


# --fail   extra flags      -> exit code, last stderr line, traceback shown
ERRORS = [
    ("user", [], 1, "gpusched probe: error: the user's mistake", False),
    ("usage", [], 2, "gpusched probe: error: --level and --fail disagree", False),
    ("os", [], 1, "gpusched probe: error: /nonexistent/dir/file: No such file or directory", False),
    ("user", ["--debug"], 1, "gpusched probe: error: the user's mistake", True),
    ("user", ["-vv"], 1, "gpusched probe: error: the user's mistake", True),
    ("os", ["-v", "-v"], 1, "gpusched probe: error: /nonexistent/dir/file: No such file or directory", True),
]


@pytest.mark.parametrize("fail,flags,code,last,traceback", ERRORS)
def test_expected_failures_are_one_line_unless_debugging(probe, capsys, caplog, fail, flags, code, last,
                                                         traceback):
    assert cli.main(["probe", "--fail", fail, *flags]) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [last]
    shown = [r for r in caplog.records if r.exc_info]
    assert bool(shown) == traceback


def test_no_subcommand_prints_help_and_exits_2(probe, capsys):
    assert cli.main([]) == 2
    assert "<command>" in capsys.readouterr().out


# ---------- the daemons' Kubernetes configuration, as a user runs them

DAEMONS = [
    ["extender", "--listen", "127.0.0.1:0"],
    ["autoscaler", "--prometheus-url", "http://127.0.0.1:9", "--metrics-port", "0"],
    ["agent", "--node-name", "n1", "--metrics-port", "0"],
]


@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d[0])
def test_missing_kubeconfig_is_one_line(daemon):
    r = gpusched(*daemon, "--kubeconfig", "/nonexistent")
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"gpusched {daemon[0]}: error: --kubeconfig /nonexistent: no such file")


@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d[0])
def test_no_configuration_anywhere_is_one_line(daemon, tmp_path):
    r = gpusched(*daemon, env={"KUBECONFIG": "", "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""})
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG, run in a cluster, or create " \
           f"{tmp_path}/.kube/config" in line


def test_autoscaler_bad_url_is_a_usage_error():
    r = gpusched("autoscaler", "--prometheus-url", "prometheus:9090")
    assert r.returncode == 2 and r.stderr.strip() == (
        "gpusched autoscaler: error: --prometheus-url 'prometheus:9090': give an http:// or https:// URL")


def test_autoscaler_bad_watch_namespace_is_a_usage_error():
    r = gpusched("autoscaler", "--prometheus-url", "http://p:9090", "--watch-namespace", "llm,Team_B")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("gpusched autoscaler: error: argument --watch-namespace: "
                                                 "'Team_B' is not a DNS-1123 label (lowercase letters, digits and '-')")


@pytest.mark.parametrize("daemon", DAEMONS[:2], ids=lambda d: d[0])
def test_unreachable_api_server_is_one_line_per_retry(daemon, tmp_path):
    """$KUBECONFIG is used (no --kubeconfig); each failed attempt is one line naming the
    server, and urllib3 logs no "Retrying" warnings of its own."""
    port = free_port()
    kc = tmp_path / "kc"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    with pytest.raises(subprocess.TimeoutExpired) as run:
        gpusched(*daemon, env={"KUBECONFIG": str(kc)}, timeout=4)
    err = run.value.stderr or b""
    err = err.decode() if isinstance(err, bytes) else err
    lines = [ln for ln in err.splitlines() if "WARNING" in ln]
    assert lines, err
    assert "urllib3" not in err and "Retrying" not in err and "Traceback" not in err
    assert all(f"cannot reach the API server at https://127.0.0.1:{port}: [Errno 111] Connection refused" in ln
               for ln in lines), err


@pytest.mark.integration
def test_extender_finds_the_cluster_through_KUBECONFIG(cluster, tmp_path):
    """No --kubeconfig: the extender lists the real API server's nodes through $KUBECONFIG
    (a list whose first file is missing, as kubectl allows), with no ~/.kube/config."""
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "KUBECONFIG": f"{tmp_path}/missing.yaml:{cluster.kubeconfig}"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "extender", "--listen", f"127.0.0.1:{port}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, answer = time.monotonic() + 30, ""
        while time.monotonic() < deadline and not answer.startswith("ok"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    answer = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert answer.startswith("ok: ") and int(answer.split()[1]) >= 1, answer
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "error" not in err.lower(), err
