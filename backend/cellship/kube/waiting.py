"""Waiting for the cluster with the client's watch streams, written once for every feature.

:func:`observe` is the one loop: it keeps the matching objects from a watch (list, then
changes) and hands them over as they are at first, after every change, and at least every
``every`` seconds (a fresh list then: a waiter's clock-driven checks, such as a startup
timeout, need a turn even when nothing changes). A watch that ends early (the server closed
it, its history expired, the connection broke) is simply opened again, which lists afresh,
so no change is lost; one that RBAC refuses (a Role with get/list but no watch) falls back
to looking every ``every`` seconds (a list, or a get of the one object), as cellship did
before it watched, so no user needs more rights than then.

:func:`wait_gone`, :func:`wait_changed` and the features' own waits (a rollout, a batch
run's pod, a log follower waiting for its container) are small loops over it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Iterator

from cellship.kube.api import BOOKMARK, DELETED, KubeAPI, Obj
from cellship.kube.errors import KubernetesForbidden, KubernetesNotFound

Key = tuple[str, str]  # (namespace, name)
State = dict[Key, Obj]
Clock = Callable[[], float]
FALLBACK_POLL_SECONDS = 1.0  # how often to list when watching is not allowed
WATCH_MAX_SECONDS = 300.0  # one watch request at most this long (then a fresh list)
EARLY_END_SECONDS = 0.5  # a watch that ends this much before its time is reopened after a pause


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def observe(client: KubeAPI, kind: str, namespace: str | None, *, name: str | None = None,
            label_selector: str = "", timeout: float = math.inf, every: float | None = None,
            stop: threading.Event | None = None, clock: Clock = time.monotonic) -> Iterator[State]:
    """The objects of ``kind`` named ``name`` or matching ``label_selector``, keyed by
    (namespace, name): as they are now (always, even with ``timeout`` 0), then after every
    change and at least every ``every`` seconds, until ``timeout`` seconds have passed or
    ``stop`` is set. API failures raise (typed), except a refused watch (see the module)."""
    end = clock() + timeout
    first = True
    while first or (clock() < end and not (stop is not None and stop.is_set())):
        left = max(0.0, end - clock())
        chunk = min(left, every if every is not None else WATCH_MAX_SECONDS)
        first = False
        began = clock()
        try:
            state: State = {}
            synced = False
            for event in client.watch(kind, namespace, name=name,
                                      label_selector=label_selector, timeout=chunk):
                if event["type"] == BOOKMARK:
                    synced = True
                elif event["type"] == DELETED:
                    state.pop(_key(event["object"]), None)
                else:
                    state[_key(event["object"])] = event["object"]
                if synced:
                    yield dict(state)
                    if stop is not None and stop.is_set():
                        return
        except KubernetesForbidden as err:
            # Who may not watch (or, for one object, not list) is served by what was
            # asked of them before cellship watched: lists, or gets of that object.
            if not (err.verb == "watch" or (err.verb == "list" and name is not None)):
                raise
            yield from _polled(client, kind, namespace, name, label_selector, end,
                               every or FALLBACK_POLL_SECONDS, stop, clock)
            return
        if clock() - began < chunk - EARLY_END_SECONDS:  # ended early: do not spin on it
            (stop or threading.Event()).wait(min(EARLY_END_SECONDS, max(0.0, end - clock())))


def _polled(client: KubeAPI, kind: str, namespace: str | None, name: str | None,
            label_selector: str, end: float, every: float, stop: threading.Event | None,
            clock: Clock) -> Iterator[State]:
    """:func:`observe` for those who may list but not watch: a look every ``every`` s."""
    pause = stop or threading.Event()
    while True:
        if name is not None and namespace is not None:
            try:
                found = [client.get(kind, namespace, name)]
            except KubernetesNotFound:
                found = []
        else:
            found = [o for o in client.list(kind, namespace, label_selector)
                     if name is None or _key(o)[1] == name]
        yield {_key(o): o for o in found}
        left = end - clock()
        if left <= 0 or pause.wait(min(every, left)):
            return


def wait_gone(client: KubeAPI, kind: str, namespace: str, name: str, timeout: float) -> bool:
    """Wait until the object no longer exists (a Foreground deletion finished, so its
    dependents are gone too); whether it is gone within ``timeout`` seconds."""
    for state in observe(client, kind, namespace, name=name, timeout=timeout):
        if not state:
            return True
    return False


def wait_changed(client: KubeAPI, kind: str, namespace: str, *, name: str | None = None,
                 label_selector: str = "", timeout: float,
                 stop: threading.Event | None = None) -> bool:
    """Wait until the matching objects change (or ``timeout`` seconds pass, or ``stop`` is
    set); whether they did. E.g. a log follower whose container has not started yet
    reconnects as soon as its pod changes rather than after a fixed pause."""
    started = None
    for state in observe(client, kind, namespace, name=name, label_selector=label_selector,
                         timeout=timeout, stop=stop):
        if started is None:
            started = state
        elif state != started:
            return True
    return False
