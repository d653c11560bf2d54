"""Other projects' serving clients, each in a venv of its own under ~/.cache/cellship.

Why a venv apart: KServe 0.21 and tritonclient pin ``protobuf<7`` (and tritonclient
``ml-dtypes<=0.5.4``), which fights the versions TensorFlow's environment resolves to; so
the conformance tests run these clients as a subprocess against the server in the test
process. The venv is keyed by the pinned versions and the Python version, built once per
machine (about three minutes from PyPI), and reused until the pins change.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
from pathlib import Path

PINS = ("kserve==0.21.0", "tritonclient[http,grpc]==2.73.0")


def client_python(pins: tuple[str, ...] = PINS) -> Path:
    """The ``python`` of a venv holding ``pins``, built now if this machine has none."""
    key = hashlib.sha256("\n".join((sys.version.split()[0], *pins)).encode()).hexdigest()[:12]
    root = Path.home() / ".cache" / "cellship" / f"serving-clients-{key}"
    python = root / "bin" / "python"
    done = root / ".complete"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"serving-clients-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse
        if done.exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                 *pins], capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            raise RuntimeError(f"Could not install the serving clients ({', '.join(pins)}) into {root}: "
                               f"pip exited {result.returncode}:\n{result.stderr[-3000:]}")
        done.write_text("\n".join(pins) + "\n")
    return python


if __name__ == "__main__":
    print(client_python())
