"""The chief pod's second container: keeps the pod, and the files its program wrote, up
until cellship has copied them home (stdlib only; shipped in the job's ConfigMap).

Why a second container: a pod's emptyDir lives as long as the pod, and files can only be
read out of a container that still runs (``kubectl cp`` execs into it). The program's own
container ends as it always did, with its exit code in the pod's status for cellship to
judge; this one waits beside it, sharing the job directory, and it is what
:mod:`cellship.inside.sender` runs in.

How it knows the program ended: the pod bootstrap takes an exclusive ``flock`` on
``.cellship/running.lock`` and keeps the descriptor open across ``exec``, so the kernel
releases the lock when the program exits by any means (exit, crash, OOM kill); here the
lock is tried now and then without blocking.

It exits (and the pod with it, once the program's container has ended too) when
``python3 keeper.py release`` was run (cellship fetched the files, or gives them up), or
``CELLSHIP_LINGER`` seconds (default 600) after the program ended with nobody fetching:
then the files go with the pod, and ``cellship fetch`` says so.

With ``s3://`` places (``CELLSHIP_UPLOADS`` set, see :mod:`cellship.inside.objects`) it
also uploads them: the logdir every few seconds while the program runs, everything once
it has ended; when every folder went to the bucket it exits right after that upload
(nothing is left for cellship to copy), and when the upload failed it lingers as above so
``cellship fetch`` can still copy the files through the API server. A deleted pod
(cancel) uploads what is there before it goes.
"""

import fcntl
import os
import signal
import sys
import time

STATE_DIR = ".cellship"
LOCK = "running.lock"
STARTED = "started"
RELEASED = "released"
POLL_SECONDS = 0.5


def state_dir(job_dir):
    return os.path.join(job_dir, STATE_DIR)


def program_running(folder):
    """None before the program first started, else whether it runs now."""
    if not os.path.exists(os.path.join(folder, STARTED)):
        return None
    fd = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock at once, should the program start again
    return False


def shipper_from_env(environ=None):
    """The uploader of a job with s3:// places (None without): imported only then, from
    the shim package this file lives in."""
    environ = os.environ if environ is None else environ
    if not environ.get("CELLSHIP_UPLOADS"):
        return None
    shim = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if shim not in sys.path:
        sys.path.insert(0, shim)
    from cellship.inside import objects

    return objects.Shipper.from_env(environ)


class Stopped(Exception):
    """SIGTERM: the pod is being deleted."""


def _stop(*_):
    raise Stopped()


def keep(job_dir, linger, clock=time.monotonic, sleep=time.sleep, shipper=None):
    folder = state_dir(job_dir)
    os.makedirs(folder, exist_ok=True)
    try:
        return _keep(folder, linger, clock, sleep, shipper)
    except Stopped:
        if shipper is not None and not shipper.done:
            shipper.finish()  # a cancelled job keeps its outputs so far
        return 0


def _keep(folder, linger, clock, sleep, shipper):
    ended = None
    while True:
        if os.path.exists(os.path.join(folder, RELEASED)):
            print("cellship: the job's files were fetched; this pod may end", flush=True)
            return 0
        running = program_running(folder)
        if shipper is not None:
            shipper.tick(running)
            if shipper.done and shipper.plan.get("all"):
                print("cellship: every file of the job is in object storage; this pod may "
                      "end", flush=True)
                return 0
        if running is False:
            ended = ended if ended is not None else clock()
            if clock() - ended > linger:
                print(f"cellship: nobody fetched the job's files within {linger:g}s of the "
                      "program's end; they go with the pod", flush=True)
                return 0
        else:
            ended = None  # not started yet, or started again (a restart)
        sleep(POLL_SECONDS)


def release(job_dir):
    folder = state_dir(job_dir)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, RELEASED), "w"):
        pass
    return 0


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    job_dir = os.environ.get("CELLSHIP_JOB_DIR", "/cellship/job")
    if args[:1] == ["release"]:
        return release(job_dir)
    # PID 1 of its container ignores SIGTERM unless it handles it: a deleted pod (cancel)
    # would wait out its whole grace period.
    shipper = shipper_from_env()
    signal.signal(signal.SIGTERM, _stop if shipper is not None else (lambda *_: sys.exit(0)))
    return keep(job_dir, float(os.environ.get("CELLSHIP_LINGER", "600")), shipper=shipper)


if __name__ == "__main__":
    sys.exit(main())
