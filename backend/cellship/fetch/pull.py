"""One copy of a job's files home: list them, send what is new, resume what broke.

A :class:`Root` pairs a folder in the replica with a local one. Files of an ordinary root
are written to a staging folder and renamed into place only once their size and CRC-32 matched,
so a local output dir never holds a half file that looks complete (after a broken
stream, a full disk or a kill). An ``append`` root (the TensorBoard logdir: event files
only grow) is written in place from the local file's size, so a running job's logdir
gets its new bytes only and TensorBoard reads them as they come.

What was fetched is remembered in ``<staging>/fetched.json`` (size and mtime per file), so
a second fetch sends only what changed; a broken stream is retried with backoff, each
time from the bytes already on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cellship.errors import BackendError
from cellship.fetch.progress import Progress, Quiet, human
from cellship.fetch.receive import CHECK, DiskFull, Mismatch, StreamBroken, receive
from cellship.kube.errors import KubernetesNotFound, KubernetesUnreachable

Run = Callable[[list[str]], Iterator[bytes]]  # a command's argv -> its stdout, in chunks
MANIFEST = "fetched.json"
BATCH_FILES = 200  # files per send command (an exec's argv stays far below its limit)
STREAMS = 2  # sends at once (see Puller._send_all)


class FetchError(BackendError):
    """A copy that could not be completed; the message says what to do."""


@dataclass(frozen=True)
class Root:
    remote: str
    local: Path
    append: bool = False


@dataclass
class Outcome:
    files: int = 0  # copied (new or changed) this time
    bytes: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)  # roots that do not exist remotely

    @property
    def rate(self) -> float:
        return self.bytes / max(self.seconds, 1e-6)


@dataclass
class _File:
    remote: str
    local: Path
    size: int
    mtime: float
    append: bool


class Puller:
    """Copies roots with ``run`` (e.g. exec in the pod) and the sender's command line."""

    def __init__(self, run: Run, sender: Sequence[str], staging: Path, *,
                 progress: Progress | None = None, attempts: int = 5,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 streams: int | None = None) -> None:
        self.run = run
        self.sender = list(sender)
        self.staging = staging
        self.progress = progress or Quiet("fetch")
        self.attempts = attempts
        self.backoff = backoff
        self.sleep = sleep
        self.streams = streams or STREAMS

    # -- bookkeeping ----------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        try:
            return json.loads((self.staging / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}

    def _save_manifest(self, data: dict[str, Any]) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = self.staging / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.staging / MANIFEST)

    def _staged(self, remote: str) -> Path:
        return self.staging / ("part-" + hashlib.sha1(remote.encode()).hexdigest()[:20])

    def _where(self, item: _File) -> Path:
        return item.local if item.append else self._staged(item.remote)

    def _offset(self, item: _File) -> int:
        where = self._where(item)
        try:
            have = where.stat().st_size
        except OSError:
            return 0
        return have if have <= item.size else 0

    # -- the copy -------------------------------------------------------------------------
    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except (KubernetesUnreachable, StreamBroken) as err:
                if attempt == self.attempts:
                    raise FetchError(f"{what} failed {self.attempts} times, the last time "
                                     f"because: {err}") from err
                self.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise AssertionError("not reached")

    def listing(self, roots: Sequence[Root]) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            out = b"".join(self.run(self.sender + ["list", *[r.remote for r in roots]]))
            return json.loads(out)

        return self._retrying("Listing the job's files", call)

    def pull(self, roots: Sequence[Root]) -> Outcome:
        started = time.monotonic()
        outcome = Outcome()
        listing = self.listing(roots)
        manifest = self._manifest()
        todo: list[_File] = []
        for root in roots:
            files = listing.get(root.remote)
            if files is None:
                outcome.missing.append(root.remote)
                continue
            for rel, size, mtime in files:
                remote = f"{root.remote.rstrip('/')}/{rel}"
                local = root.local / rel
                item = _File(remote, local, int(size), float(mtime), root.append)
                seen = manifest.get(remote)
                if seen == [item.size, item.mtime] and local.exists() and \
                        local.stat().st_size == item.size:
                    outcome.unchanged += 1
                    continue
                todo.append(item)
        self.progress.start(sum(i.size - self._offset(i) for i in todo))
        try:
            self._send_all(todo, manifest, outcome)
        finally:
            self._save_manifest(manifest)
        outcome.seconds = time.monotonic() - started
        outcome.bytes = self.progress.done
        return outcome

    def _send_all(self, todo: list[_File], manifest: dict[str, Any], outcome: Outcome) -> None:
        """Up to ``streams`` sends at once, the files dealt out by size: one stream is
        bound by one process's reading and hashing, while the API server and kubelet
        relay several streams side by side."""
        groups: list[list[_File]] = [[] for _ in range(max(1, min(self.streams, len(todo))))]
        loads = [0] * len(groups)
        for item in sorted(todo, key=lambda i: i.size - self._offset(i), reverse=True):
            least = loads.index(min(loads))
            groups[least].append(item)
            loads[least] += item.size - self._offset(item)
        lock = threading.Lock()
        if len(groups) == 1:
            self._send_group(groups[0], manifest, outcome, lock)
            return
        failures: list[BaseException] = []

        def work(group: list[_File]) -> None:
            try:
                self._send_group(group, manifest, outcome, lock)
            except BaseException as err:  # handed to the caller's thread below
                failures.append(err)

        threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    def _send_group(self, todo: list[_File], manifest: dict[str, Any], outcome: Outcome,
                    lock: threading.Lock) -> None:
        by_remote = {i.remote: i for i in todo}
        pending = list(todo)
        restarted: set[str] = set()

        def done(remote: str, _where: Path) -> None:
            item = by_remote[remote]
            if not item.append:
                item.local.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._staged(remote), item.local)
            os.utime(item.local, (item.mtime, item.mtime))
            with lock:
                manifest[remote] = [item.size, item.mtime]
                outcome.files += 1
            pending.remove(item)

        def added(count: int) -> None:
            with lock:
                self.progress.add(count)

        def once() -> None:
            while pending:
                batch = pending[:BATCH_FILES]
                request = [[i.remote, self._offset(i)] for i in batch]
                targets = {i.remote: self._where(i) for i in batch}
                stream = self.run(self.sender + ["send", json.dumps(request), CHECK])
                try:
                    got = receive(stream, targets, added, done)
                except Mismatch as err:
                    if err.remote in restarted:
                        raise FetchError(f"{err} twice; the file may be changing while it "
                                         "is copied.") from err
                    restarted.add(err.remote)
                    self._where(by_remote[err.remote]).unlink(missing_ok=True)
                    continue
                for remote, what in got.outcome.items():
                    if what == "missing":  # deleted since the listing: nothing to copy
                        pending.remove(by_remote[remote])

        try:
            self._retrying("Copying the job's files", once)
        except DiskFull as err:
            raise FetchError(str(err)) from err
        except KubernetesNotFound as err:
            raise FetchError(f"The pod went away during the copy ({err}).") from err


def describe(outcome: Outcome) -> str:
    """One line for the end of a copy."""
    moved = (f"{outcome.files} file(s), {human(outcome.bytes)} in {outcome.seconds:.1f} s "
             f"({human(outcome.rate)}/s)")
    if outcome.unchanged:
        moved += f"; {outcome.unchanged} unchanged"
    return moved
