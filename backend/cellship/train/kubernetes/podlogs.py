"""A cluster job's log lines: read from its pods (``kubectl logs``), or followed until the
job ends, reconnecting when a stream breaks (API down, container restarted, pod made again)
and skipping lines already delivered; what cellship did to the job meanwhile (restarts,
replicas made again) joins the stream as the ``cellship`` replica's lines."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesError, KubernetesUnreachable
from cellship.kube.waiting import wait_changed
from cellship.store import JobRecord, Store
from cellship.train.kubernetes import recovery
from cellship.watch.logstream import LogLine, collapse, is_tf_noise

if TYPE_CHECKING:
    from cellship.train.kubernetes.backend import KubernetesBackend

LOG_RETRY_FIRST_SECONDS = 0.5
LOG_RETRY_MAX_SECONDS = 5.0
LOOK_SECONDS = 2.0  # how often a follower looks at the job's pods (recovery, restarts)


def recovery_events(store: Store, job: JobRecord) -> list[str]:
    return [message for _, kind, message in store.events(job.id) if kind == recovery.EVENT_KIND]


def read_all(client: KubeAPI, namespace: str, names: list[tuple[str, str]],
             tf_noise: bool) -> Iterator[LogLine]:
    """Every line each replica's pod has logged so far (a pod not started, or gone, has none)."""
    for label, pod in names:
        try:
            for text in client.pod_log(namespace, pod, follow=False):
                text = collapse(text)
                if tf_noise or not is_tf_noise(text):
                    yield LogLine(label, text)
        except KubernetesError:
            continue  # not started yet, or already gone: nothing to show


def follow(backend: "KubernetesBackend", job: JobRecord, client: KubeAPI, namespace: str,
           names: list[tuple[str, str]], tf_noise: bool,
           on_idle: Callable[[], None] | None) -> Iterator[LogLine]:
    """One thread per pod streams its log into a queue; a stream that breaks (API
    error, container not started yet, container restarted) reconnects as soon as the
    pod changes (a watch), at the latest after a backoff, and skips the lines it
    already delivered, by the kubelet's timestamps."""
    lines: queue.Queue[LogLine | None] = queue.Queue()
    stop = threading.Event()

    def done() -> bool:
        try:
            return stop.is_set() or backend.refresh(job).done
        except KubernetesError:  # the API is down: not known to be done, keep following
            return stop.is_set()

    def pump(label: str, pod: str) -> None:
        last: tuple[str, int] | None = None
        delay = LOG_RETRY_FIRST_SECONDS
        while not stop.is_set():
            try:
                for raw in client.pod_log(namespace, pod, follow=True, timestamps=True):
                    stamp, text = split_timestamp(raw)
                    if stamp is not None:
                        if last is not None and stamp <= last:
                            continue
                        last = stamp
                    lines.put(LogLine(label, collapse(text)))
                    if stop.is_set():
                        return
                delay = LOG_RETRY_FIRST_SECONDS
            except KubernetesError:
                pass
            if done():
                return
            try:
                wait_changed(client, "Pod", namespace, name=pod, timeout=delay, stop=stop)
            except KubernetesError:  # the API is down or refuses: just wait
                stop.wait(delay)
            delay = min(delay * 2, LOG_RETRY_MAX_SECONDS)

    threads = [threading.Thread(target=pump, args=n, daemon=True) for n in names]
    for thread in threads:
        thread.start()
    live = backend.mirror(job)  # TensorBoard over the job's logdir is live while it is followed
    told = len(recovery_events(backend.store, job))  # what happened before this follow began
    looked = time.monotonic()
    unreachable_since: float | None = None
    try:
        while any(t.is_alive() for t in threads) or not lines.empty():
            if time.monotonic() - looked > LOOK_SECONDS:
                # Lost replicas are made again by a look (refresh), whether or not a
                # log stream broke; what was done shows in the cell as it happens.
                looked = time.monotonic()
                try:
                    backend.refresh(job)
                except KubernetesUnreachable as err:  # the next look tries again
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        yield LogLine("cellship", f"the Kubernetes API server does not answer "
                                      f"({err}); the pods train on, cellship reconnects")
                except KubernetesError:
                    pass  # refused for once (a 5xx, a 429): the next look tries again
                else:
                    if unreachable_since is not None:
                        yield LogLine("cellship", "the Kubernetes API server answers again, "
                                      f"after {time.monotonic() - unreachable_since:.0f} s")
                        unreachable_since = None
                news = recovery_events(backend.store, job)
                for message in news[told:]:
                    yield LogLine("cellship", message)
                told = len(news)
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                if on_idle is not None:
                    on_idle()
                continue
            if line is not None and (tf_noise or not is_tf_noise(line.text)):
                yield line
    finally:
        stop.set()
        if live is not None:
            live.stop()


def split_timestamp(raw: str) -> tuple[tuple[str, int] | None, str]:
    """``2026-11-25T15:00:00.123Z text`` -> (a comparable time, ``text``). RFC 3339 with
    nanoseconds drops trailing zeros, so the fraction is compared as a number."""
    stamp, sep, text = raw.partition(" ")
    if not sep or len(stamp) < 20 or stamp[4] != "-" or stamp[10] != "T":
        return None, raw
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    digits = "".join(c for c in fraction if c.isdigit())[:9]
    return (whole, int(digits.ljust(9, "0") or 0)), text
