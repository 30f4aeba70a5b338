"""Certificates for the local test bed: one CA, the API server's serving certificate,
client certificates for the admin and the components, and the service-account key.

Everything is loopback-only and short-lived (the state directory is deleted with the
cluster), so keys are unencrypted files readable by the owner only.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = dt.timedelta(days=30)


@dataclass(frozen=True)
class PKI:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def issue(
    ca_key, ca_cert: x509.Certificate, common_name: str, *, orgs: tuple[str, ...] = (),
    dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool = False,
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA; returns (cert PEM, key PEM)."""
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    name = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    name += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if dns or ips:
        san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _new_ca(common_name: str):
    ca_key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def create(directory: Path, clients: dict[str, tuple[str, ...]]) -> PKI:
    """Create the CA, the API server's serving certificate and one client certificate
    per entry of `clients` (common name -> organisations)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = PKI(directory)
    ca_key, ca_cert = _new_ca("gpusched-testbed-ca")
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(pki.key("ca"), _pem_key(ca_key))
    crt, key = issue(ca_key, ca_cert, "kube-apiserver", server=True,
                     dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
                     ips=("127.0.0.1", "10.96.0.1"))
    _write(pki.cert("apiserver"), crt)
    _write(pki.key("apiserver"), key)
    for cn, orgs in clients.items():
        crt, key = issue(ca_key, ca_cert, cn, orgs=orgs)
        _write(pki.cert(cn), crt)
        _write(pki.key(cn), key)
    # Service-account tokens are signed with RSA, which every consumer accepts.
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.sa_key, sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()))
    _write(pki.sa_pub, sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def load_ca(pki: PKI):
    """The CA key and certificate, to issue more leaves later (e.g. the extender's TLS)."""
    ca_key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), password=None)
    return ca_key, x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())


@dataclass(frozen=True)
class ExtenderTLS:
    """Mutual TLS between kube-scheduler and the extender, as the chart sets it up: a CA of
    their own (not the cluster's, whose every client certificate would then be let in), the
    extender's serving certificate and kube-scheduler's client certificate."""
    ca_cert: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def create_extender_tls(directory: Path, name: str) -> ExtenderTLS:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _new_ca(f"{name}-extender-ca")
    out = ExtenderTLS(directory / f"{name}-extender-ca.crt", directory / f"{name}-extender.crt",
                      directory / f"{name}-extender.key", directory / f"{name}-scheduler-client.crt",
                      directory / f"{name}-scheduler-client.key")
    _write(out.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    crt, key = issue(ca_key, ca_cert, f"{name}-extender", server=True, dns=("localhost",), ips=("127.0.0.1",))
    _write(out.cert, crt)
    _write(out.key, key)
    crt, key = issue(ca_key, ca_cert, f"{name}-scheduler")
    _write(out.client_cert, crt)
    _write(out.client_key, key)
    return out
