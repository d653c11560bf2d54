"""The first thing every cellship pod runs (shipped in the job's ConfigMap; stdlib only).

Why it exists: a pod's DNS name (``<job>-worker-1.<svc>.<ns>.svc``) resolves only once
that pod exists and the cluster DNS has caught up. TensorFlow resolves its peers once,
early, and a worker that starts before its peers resolve fails or blocks for 10+ minutes
(the DNS race is a known TFJob failure). So this script waits until every peer in
TF_CONFIG resolves, fails with a clear message after ``CELLSHIP_PEER_TIMEOUT`` seconds,
then copies shipped values into the writable job directory and execs Python on the
program. The image needs nothing but Python and TensorFlow: cellship's in-job modules
come from the shim package, which this script puts first on PYTHONPATH (before the
image's own entries, which a pod env var would replace).

Two more things before the exec: in the chief pod (``CELLSHIP_KEEPER`` set) it takes the
lock that tells the keeper container the program runs (see ``cellship/inside/keeper.py``:
the descriptor stays open across exec, so the lock lasts exactly as long as the program);
and a pod given GPUs (``CELLSHIP_GPUS``) in which no NVIDIA device is visible says that
TensorFlow will run on the CPU, rather than leaving the user to wonder.

The image need not contain cellship, so this file must not import it.
"""

import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import sys
import time

EXIT_PEERS_UNRESOLVED = 3


def peer_hosts(tf_config, own=None):
    """Every host name of the cluster except this replica's own, in order."""
    cluster = tf_config.get("cluster", {})
    task = tf_config.get("task", {})
    hosts = []
    for task_type, addresses in cluster.items():
        for index, address in enumerate(addresses):
            if task_type == task.get("type") and index == task.get("index"):
                continue
            host = address.rsplit(":", 1)[0]
            if host != own and host not in hosts:
                hosts.append(host)
    return hosts


def unresolved(hosts, resolve=None):
    resolve = resolve or socket.getaddrinfo
    missing = []
    for host in hosts:
        try:
            resolve(host, None)
        except (socket.gaierror, OSError):
            missing.append(host)
    return missing


def wait_for_peers(hosts, timeout, interval=1.0, resolve=None, clock=time.monotonic,
                   sleep=time.sleep):
    """Return [] once every host resolves, else the hosts still unresolved at timeout."""
    end = clock() + timeout
    while True:
        missing = unresolved(hosts, resolve)
        if not missing or clock() >= end:
            return missing
        sleep(min(interval, max(0.0, end - clock())))


def gpu_notice(env, devices=None):
    """The line to print when GPUs were allocated but none is visible, else None."""
    try:
        count = int(env.get("CELLSHIP_GPUS") or 0)
    except ValueError:
        return None
    if count <= 0:
        return None
    found = glob.glob("/dev/nvidia[0-9]*") if devices is None else devices
    if found:
        return None
    return (f"cellship: this pod was given {count} nvidia.com/gpu, but no GPU device is "
            "visible in its container (no /dev/nvidia*: the node advertises the resource "
            "without an NVIDIA driver or device plugin); TensorFlow will find no GPU and run "
            "on the CPU.")


def hold_running_lock(job_dir):
    """Lock ``.cellship/running.lock`` for as long as this process (after exec: the
    program) lives; the keeper container reads the lock's state. Returns the descriptor."""
    folder = os.path.join(job_dir, ".cellship")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, "running.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.set_inheritable(fd, True)
    with open(os.path.join(folder, "started"), "w"):
        pass
    return fd


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # PID 1 of its container ignores SIGTERM unless it handles it: a pod deleted while it
    # waits for its peers (a cancelled job) would sit out its whole grace period. The
    # program's own handling applies after the exec.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    program = argv[0] if argv else "/cellship/program/program.py"
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    timeout = float(os.environ.get("CELLSHIP_PEER_TIMEOUT", "300"))
    hosts = peer_hosts(tf_config)
    if hosts:
        print(f"cellship: waiting up to {timeout:g}s for {len(hosts)} peer(s) to resolve",
              flush=True)
        missing = wait_for_peers(hosts, timeout)
        if missing:
            sys.stderr.write(
                f"cellship: after {timeout:g}s these peers still do not resolve in DNS: "
                f"{', '.join(missing)}. Their pods may not be scheduled yet (see `cellship "
                "status`), the cluster may have no DNS add-on, or the headless Service is "
                "missing. Raise the wait with the peer_timeout option.\n")
            sys.stderr.flush()
            return EXIT_PEERS_UNRESOLVED
    job_dir = os.environ.get("CELLSHIP_JOB_DIR")
    shipped = os.path.join(os.path.dirname(program), "shipped.pkl")
    if job_dir and os.path.exists(shipped):
        os.makedirs(job_dir, exist_ok=True)
        shutil.copy(shipped, os.path.join(job_dir, "shipped.pkl"))
    for name in ("CELLSHIP_OUTPUT_DIR", "CELLSHIP_LOGDIR"):
        if os.environ.get(name):
            os.makedirs(os.environ[name], exist_ok=True)
    notice = gpu_notice(os.environ)
    if notice:
        print(notice, flush=True)
    if job_dir and os.environ.get("CELLSHIP_KEEPER"):
        hold_running_lock(job_dir)
    shim = os.environ.get("CELLSHIP_SHIM")
    if shim:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (shim, os.environ.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-u", program])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
