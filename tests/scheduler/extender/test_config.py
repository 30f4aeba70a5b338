"""The extender's config file and flags: defaults, overrides and the errors a user sees."""
from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.extender.config import ConfigError, load


def _files(tmp_path: Path) -> tuple[str, str]:
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_text("cert")
    key.write_text("key")
    return str(crt), str(key)


def test_defaults_work_without_a_file():
    cfg = load(None)
    assert cfg.listen == ("0.0.0.0", 8888)
    assert cfg.tls_cert_file is None and "tls" not in cfg.to_dict()


@pytest.mark.parametrize("text, error", [
    ("listen: nope\n", "must look like HOST:PORT"),
    ("listen: 0.0.0.0:70000\n", "must look like HOST:PORT"),
    ("staleAfterSeconds: -1\n", "positive number"),
    ("weights: {locality: 1, gravity: 2}\n", "weights accepts only"),
    ("colour: blue\n", "unknown config keys: colour"),
    ("- a list\n", "must be a mapping"),
    ("tls: {certFile: /x, keyFile: /y, ca: /z}\n", "tls accepts only certFile, keyFile and clientCAFile"),
    ("tls: {certFile: /nonexistent.crt, keyFile: /nonexistent.key}\n", "certificate /nonexistent.crt does not exist"),
    ("tls: {certFile: /nonexistent.crt}\n", "needs both a certificate and its private key"),
    ("tls: {clientCAFile: /etc/hostname}\n", "needs TLS: a certificate and key"),
    ("listen: 0.0.0.0:9000\nmetricsListen: 0.0.0.0:9000\n", "metricsListen must differ from listen"),
    ("schedulerName: Not/A/Name\n", "schedulerName must be a DNS-1123 subdomain"),
])
def test_bad_config_files_say_what_is_wrong(tmp_path, text, error):
    path = tmp_path / "extender.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load(str(path))


def test_tls_from_the_file(tmp_path):
    crt, key = _files(tmp_path)
    path = tmp_path / "extender.yaml"
    path.write_text(f"tls: {{certFile: {crt}, keyFile: {key}}}\n")
    cfg = load(str(path))
    assert (cfg.tls_cert_file, cfg.tls_key_file) == (crt, key)
    assert cfg.to_dict()["tls"] == {"certFile": crt, "keyFile": key}


def test_tls_flags_override_the_file(tmp_path):
    crt, key = _files(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    crt2, key2 = _files(other)
    path = tmp_path / "extender.yaml"
    path.write_text(f"tls: {{certFile: {crt}, keyFile: {key}}}\n")
    cfg = load(str(path), None, crt2, key2)
    assert (cfg.tls_cert_file, cfg.tls_key_file) == (crt2, key2)


@pytest.mark.parametrize("cert, key", [(True, False), (False, True)])
def test_tls_flag_without_its_pair_is_refused(tmp_path, cert, key):
    crt, k = _files(tmp_path)
    with pytest.raises(ConfigError, match="--tls-cert-file and --tls-private-key-file"):
        load(None, None, crt if cert else None, k if key else None)
