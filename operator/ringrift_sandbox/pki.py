"""Certificates and keys for the sandbox's API server, made with the ``openssl`` command.

A CA, a serving certificate for kube-apiserver (loopback and the in-cluster service names), a
service-account signing key pair, and a static admin bearer token (in ``system:masters``, shared
by the components of this throwaway cluster). Written once per sandbox directory.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVICE_IP = "10.96.0.1"  # first address of the service range the API server is given


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the sandbox's key material."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def tokens(self) -> Path:
        return self.directory / "tokens.csv"

    def admin_token(self) -> str:
        return _token_of(self.tokens, "admin")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _token_of(tokens: Path, user: str) -> str:
    for line in tokens.read_text().splitlines():
        token, name, *_ = line.split(",")
        if name == user:
            return token
    raise KeyError(f"no token for {user!r} in {tokens}")


def ensure_pki(directory: Path) -> Pki:
    """Create the key material in ``directory`` unless it is already there."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.exists():
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-keyout", str(pki.ca_key), "-out", str(pki.ca_cert),
            "-subj", "/CN=ringrift-sandbox-ca",
        )  # fmt: skip
    if not pki.serving_cert.exists():
        csr = directory / "apiserver.csr"
        ext = directory / "apiserver.ext"
        sans = [
            "IP:127.0.0.1",
            f"IP:{SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
        ext.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki.serving_key),
            "-out", str(csr), "-subj", "/CN=kube-apiserver",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
            "-CAcreateserial", "-out", str(pki.serving_cert), "-days", "3650", "-extfile", str(ext),
        )  # fmt: skip
    if not pki.sa_key.exists():
        _openssl("genrsa", "-out", str(pki.sa_key), "2048")
        _openssl("rsa", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    if not pki.tokens.exists():
        # token,user,uid,"groups": a static token is the simplest credential that kopf,
        # kubectl, the controller-manager, the scheduler and KWOK all accept.
        rows = [f'{secrets.token_hex(24)},admin,admin,"system:masters"']
        pki.tokens.write_text("\n".join(rows) + "\n")
        pki.tokens.chmod(0o600)
    return pki


def token_for(pki: Pki, user: str) -> str:
    """The static bearer token of one of the sandbox's users."""
    return _token_of(pki.tokens, user)
