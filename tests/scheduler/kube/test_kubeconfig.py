"""Where the daemons find their cluster (scheduler.kube.client.load_configuration): kubectl's
order, one-line errors, and a refused connection reported once, without urllib3's retries."""
from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from scheduler.kube.client import ApiUnreachable, KubeConfigError, api_client, load_configuration, request


def kubeconfig(path: Path, server: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: t0ken}}
contexts:
- name: ctx
  context: {{cluster: c, user: u}}
current-context: ctx
""")
    return path


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A kubeconfig in each place, each naming its own server, and none of them in use
    until a test turns it on."""
    flag = kubeconfig(tmp_path / "flag.yaml", "https://flag:6443")
    env = kubeconfig(tmp_path / "env.yaml", "https://env:6443")
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config", "https://home:6443")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")  # read, not parsed here
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    return {"flag": str(flag), "env": str(env), "home": str(home), "tmp": tmp_path}


# Each row turns some places on; the first in kubectl's order wins.
#   flag  $KUBECONFIG  in-cluster  ~/.kube/config  -> server
ORDER = [
    (True, True, True, True, "https://flag:6443"),
    (False, True, True, True, "https://env:6443"),
    (False, False, True, True, "https://incluster:443"),
    (False, False, False, True, "https://home:6443"),
]


@pytest.mark.parametrize("flag,env,incluster,home,server", ORDER)
def test_kubectls_order(places, monkeypatch, flag, env, incluster, home, server):
    if env:
        monkeypatch.setenv("KUBECONFIG", places["env"])
    if incluster:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "incluster")
    if home:
        monkeypatch.setenv("HOME", places["home"])
    cfg = load_configuration(places["flag"] if flag else None)
    assert cfg.host == server


def test_kubeconfig_list_skips_missing_files_and_merges(places, monkeypatch):
    other = kubeconfig(places["tmp"] / "other.yaml", "https://other:6443")
    monkeypatch.setenv("KUBECONFIG", f"{places['tmp']}/missing.yaml:{places['env']}:{other}")
    assert load_configuration().host == "https://env:6443"  # the first file that names the context wins


def test_in_cluster_without_a_token_falls_through_to_home(places, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "incluster")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(places["tmp"] / "no-token"))
    monkeypatch.setenv("HOME", places["home"])
    assert load_configuration().host == "https://home:6443"


BAD = [
    ("flag", "/nonexistent", "--kubeconfig /nonexistent: no such file"),
    ("env", "/nope/a:/nope/b", "$KUBECONFIG /nope/a:/nope/b: no such file"),
    ("flag", "not: [yaml", "--kubeconfig {path}: "),
    ("flag", "apiVersion: v1\nkind: Config\n", "--kubeconfig {path}: "),  # no current-context
    ("home", None, "no Kubernetes configuration: pass --kubeconfig, set $KUBECONFIG, run in a cluster, or create"),
]


@pytest.mark.parametrize("where,content,message", BAD)
def test_errors_are_one_line(places, monkeypatch, tmp_path, where, content, message):
    arg = None
    if where == "flag" and content.startswith("/"):
        arg = content
    elif where == "flag":
        bad = tmp_path / "bad.yaml"
        bad.write_text(content)
        arg = str(bad)
        message = message.format(path=bad)
    elif where == "env":
        monkeypatch.setenv("KUBECONFIG", content)
    with pytest.raises(KubeConfigError) as err:
        load_configuration(arg)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text and len(text) > len(message) - 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_one_clear_error_without_urllib3_retries(tmp_path, caplog):
    port = closed_port()
    api = api_client(str(kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}")))
    caplog.set_level(logging.DEBUG)
    for _ in range(2):
        with pytest.raises(ApiUnreachable) as err:
            request(api, "GET", "/api/v1/nodes", timeout=5)
        assert str(err.value) == f"cannot reach the API server at https://127.0.0.1:{port}: [Errno 111] " \
                                 "Connection refused"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text  # urllib3's "Retrying"
    assert isinstance(err.value, OSError)  # callers that retry on OSError/Exception still do
