"""The supervisor of one job on the embedded local backend: ``python -m cellship.train.local.supervisor``.

It runs in its own session, independent of the kernel that submitted the job (a job
survives a kernel restart and can be re-attached). It starts one process per replica with
its TF_CONFIG on free loopback ports, writes each replica's output to its own log file,
records every state change in the job store, restarts the whole cluster up to
``max_restarts`` times (a MultiWorkerMirrored cluster cannot take back a single lost
worker), and on failure, timeout or cancel kills every replica: SIGTERM, then SIGKILL after
a grace period, since TensorFlow installs its own SIGTERM handler.

It must stay small (no TensorFlow import; the benchmark holds it under 80 MB RSS).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cellship.processes import die_with_parent
from cellship.store import Store
from cellship.train.spec import JobSpec, Replica
from cellship.train.tfconfig import tf_configs
from cellship.watch.logstream import last_error_line

POLL_SECONDS = 0.1
KILL_GRACE_SECONDS = 2.0


def free_ports(count: int) -> tuple[list[int], list[socket.socket]]:
    """Reserve ``count`` free loopback ports; the caller closes the sockets just before the
    replicas bind them (a busy port makes TensorFlow fail fast, not hang)."""
    socks, ports = [], []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    return ports, socks


def visible_gpus() -> list[str]:
    """GPU ids this machine offers (respecting an inherited CUDA_VISIBLE_DEVICES)."""
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [g.strip() for g in inherited.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def assign_gpus(spec: JobSpec, available: list[str]) -> dict[Replica, str]:
    """CUDA_VISIBLE_DEVICES per replica: disjoint sets of ``spec.gpus`` for each worker and
    the chief; parameter servers get none. Empty string hides every GPU (so N workers do
    not all grab the same card)."""
    computing = [r for r in spec.replicas() if r.type != "ps"]
    needed = spec.gpus * len(computing)
    if needed > len(available):
        raise ValueError(f"the job asks for {spec.gpus} GPU(s) for each of {len(computing)} "
                         f"replicas ({needed} in all) but this machine has {len(available)}")
    out: dict[Replica, str] = {}
    for i, replica in enumerate(computing):
        out[replica] = ",".join(available[i * spec.gpus:(i + 1) * spec.gpus])
    for replica in spec.replicas():
        out.setdefault(replica, "")
    return out


@dataclass
class _Running:
    replica: Replica
    process: subprocess.Popen
    log_path: str
    exit_code: int | None = None


@dataclass
class _Outcome:
    status: str  # succeeded | failed | cancelled
    error: str | None = None
    retryable: bool = False
    failed: list[str] = field(default_factory=list)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job = store.get_job(job_id)
        self.spec = JobSpec.from_dict(self.job.spec)
        self.job_dir = Path(self.job.job_dir)
        self.cancel_requested = False
        self.started_at = time.monotonic()

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        self.cancel_requested = True

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> int:
        self.install_signal_handlers()
        job_id = self.job.id
        self.store.update_job(job_id, supervisor_pid=os.getpid())
        if not self.store.transition(job_id, "running", started=time.time()):
            return 0  # cancelled before we started
        outcome = _Outcome("failed", "the supervisor stopped unexpectedly")
        try:
            attempt = 0
            while True:
                outcome = self.run_attempt(attempt)
                if (outcome.status == "failed" and outcome.retryable
                        and attempt < self.spec.max_restarts and not self.cancel_requested):
                    attempt += 1
                    self.store.update_job(job_id, restarts=attempt)
                    self.store.add_event(job_id, "restart",
                                         f"restart {attempt} of {self.spec.max_restarts}: "
                                         f"{outcome.error}")
                    continue
                break
        except BaseException as err:
            outcome = _Outcome("failed", f"the supervisor failed: {type(err).__name__}: {err}")
            raise
        finally:
            self.store.transition(job_id, outcome.status, ended=time.time(), error=outcome.error)
        return 0

    def _env_for(self, replica: Replica, tf_config: str, gpus: str, attempt: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"})
        env.update(self.spec.env)
        env.update({
            "TF_CONFIG": tf_config,
            "CUDA_VISIBLE_DEVICES": gpus,
            "PYTHONUNBUFFERED": "1",
            "CELLSHIP_JOB_ID": self.job.id,
            "CELLSHIP_JOB_NAME": self.job.name,
            "CELLSHIP_JOB_DIR": str(self.job_dir),
            "CELLSHIP_OUTPUT_DIR": self.job.output_dir,
            "CELLSHIP_LOGDIR": self.job.logdir,
            "CELLSHIP_TASK_TYPE": replica.type,
            "CELLSHIP_TASK_INDEX": str(replica.index),
            "CELLSHIP_ATTEMPT": str(attempt),
        })
        return env

    def run_attempt(self, attempt: int) -> _Outcome:
        spec, job = self.spec, self.job
        replicas = spec.replicas()
        try:
            gpus = assign_gpus(spec, visible_gpus() if spec.gpus else [])
        except ValueError as err:
            return _Outcome("failed", f"{err}; drop --gpus, or run on a cluster with "
                                      "--backend kubernetes")
        ports, socks = free_ports(len(replicas))
        addresses = {r: f"127.0.0.1:{p}" for r, p in zip(replicas, ports)}
        configs = tf_configs(spec, addresses)
        program = str(self.job_dir / "program.py")
        cwd = job.spec.get("cwd") or os.getcwd()
        running: list[_Running] = []
        for sock in socks:
            sock.close()
        for replica in replicas:
            log_path = str(self.job_dir / "logs" / f"{replica.key}.log")
            log = open(log_path, "ab")
            if attempt:
                log.write(f"---- cellship: restart {attempt} of {spec.max_restarts} ----\n".encode())
                log.flush()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-u", program], cwd=cwd, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env=self._env_for(replica, configs[replica], gpus[replica], attempt),
                    preexec_fn=die_with_parent)
            except OSError as err:
                log.close()
                self._kill(running)
                return _Outcome("failed", f"could not start {replica.label}: {err}")
            log.close()
            running.append(_Running(replica, proc, log_path))
            self.store.update_replica(job.id, replica.type, replica.index, state="running",
                                      pid=proc.pid, address=addresses[replica],
                                      restarts=attempt, exit_code=None)
        return self._watch(running, attempt)

    # -- watching -----------------------------------------------------------------------
    def _required_to_join(self) -> list[Replica]:
        if self.spec.ps:
            return [Replica("chief", 0)]
        return self.spec.replicas() if self.spec.workers > 1 else []

    def _joined_check(self, attempt: int) -> str | None:
        """An error if peers have been awaited longer than the startup timeout."""
        required = self._required_to_join()
        if not required:
            return None
        markers = self.job_dir / "state" / f"attempt-{attempt}"
        try:
            names = {p.name: p for p in markers.iterdir()}
        except FileNotFoundError:
            return None
        waiting = [p for n, p in names.items() if n.endswith(".connecting")]
        if not waiting:
            return None
        # The markers' mtimes, not their text: a marker being written reads empty.
        first = min(p.stat().st_mtime for p in waiting)
        if time.time() - first < self.spec.startup_timeout:
            return None
        joined = {n.rsplit(".", 1)[0] for n in names if n.endswith(".connected")}
        if all(r.key in joined for r in required):
            return None
        present = {n.rsplit(".", 1)[0] for n in names if n.endswith(".connecting")}
        absent = [r for r in self.spec.replicas() if r.key not in present and r.key not in joined]
        who = ", ".join(r.label for r in absent) or "some replicas"
        return (f"the cluster did not come up within the startup timeout "
                f"({self.spec.startup_timeout:g} s): {who} never reached the distribution "
                "strategy; check their logs, or raise --startup-timeout")

    def _watch(self, running: list[_Running], attempt: int) -> _Outcome:
        spec, job = self.spec, self.job
        deadline = None if spec.timeout is None else self.started_at + spec.timeout
        last_join_check = 0.0
        while True:
            if self.cancel_requested:
                self._kill(running)
                return _Outcome("cancelled", "cancelled by the user")
            if deadline is not None and time.monotonic() > deadline:
                self._kill(running)
                return _Outcome("failed", f"timed out after {spec.timeout:g} s (--timeout)")
            for item in running:
                if item.exit_code is None:
                    code = item.process.poll()
                    if code is not None:
                        item.exit_code = code
                        state = "succeeded" if code == 0 else "failed"
                        self.store.update_replica(job.id, item.replica.type, item.replica.index,
                                                  state=state, exit_code=code)
            outcome = self._judge(running)
            if outcome is not None:
                self._kill(running)
                return outcome
            now = time.monotonic()
            if now - last_join_check > 1.0:
                last_join_check = now
                error = self._joined_check(attempt)
                if error:
                    self._kill(running)
                    return _Outcome("failed", error, retryable=True)
            time.sleep(POLL_SECONDS)

    def _judge(self, running: list[_Running]) -> _Outcome | None:
        """Decide from the replicas' exit codes whether the attempt is over."""
        for item in running:
            code = item.exit_code
            if code is None:
                continue
            is_server = self.spec.ps and item.replica.type in ("worker", "ps")
            if code != 0 or is_server:
                detail = last_error_line(item.log_path)
                what = "exited unexpectedly" if (is_server and code == 0) else _describe_exit(code)
                message = f"{item.replica.label} {what}" + (f": {detail}" if detail else "")
                return _Outcome("failed", message, retryable=True, failed=[item.replica.key])
        if self.spec.ps:
            chief = next(i for i in running if i.replica.type == "chief")
            return _Outcome("succeeded") if chief.exit_code == 0 else None
        if all(item.exit_code == 0 for item in running):
            return _Outcome("succeeded")
        return None

    def _kill(self, running: list[_Running]) -> None:
        """Stop every replica still alive: SIGTERM to its process group, SIGKILL after the
        grace period, then reap."""
        alive = [i for i in running if i.process.poll() is None]
        for item in alive:
            try:
                os.killpg(item.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < end and any(i.process.poll() is None for i in alive):
            time.sleep(0.05)
        for item in running:
            try:
                os.killpg(item.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            code = item.process.wait()
            if item.exit_code is None:
                item.exit_code = code
                self.store.update_replica(self.job.id, item.replica.type, item.replica.index,
                                          state="killed", exit_code=code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m cellship.train.local.supervisor STORE_PATH JOB_ID", file=sys.stderr)
        return 2
    store = Store(args[0])
    supervisor = Supervisor(store, args[1])
    print(json.dumps({"supervisor": os.getpid(), "job": args[1]}), flush=True)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
