"""Certificates and keys of the throw-away test cluster, made with the openssl command.

Why openssl and not the `cryptography` package: the notes measured this exact recipe on
the machine, and openssl comes with the system packages the cluster needs anyway.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path, service_ip: str = "10.0.0.1", host_ip: str = "127.0.0.1") -> None:
    """A CA, the apiserver's serving certificate for ``host_ip`` (where it listens), the
    `kubernetes` Service's ``service_ip`` and names, and the service-account key pair (the
    apiserver verifies, the controller-manager signs)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=cellship-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    (directory / "apiserver.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,IP:{host_ip},IP:{service_ip},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
             "-keyout", "apiserver.key", "-out", "apiserver.csr", cwd=directory)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "apiserver.ext",
             "-out", "apiserver.crt", cwd=directory)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
