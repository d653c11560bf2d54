"""Graceful drain: how a server leaves a rolling update without dropping a request.

On SIGTERM the order matters, and it is Kubernetes' (and KServe's) order:

1. readiness goes false at once (``/healthz``, ``/v2/health/ready``, gRPC ServerReady), so
   load balancers stop sending new work here; liveness stays true;
2. for ``grace_s`` seconds new requests are still answered as usual (endpoints are removed
   asynchronously: requests already routed here keep arriving for a moment);
3. then new requests are refused with 503 (gRPC UNAVAILABLE) and a sentence saying why, so
   a client or proxy that retries 503 sends them to another replica;
4. requests in flight all finish (up to ``timeout_s``), and only then are listeners closed.

The gate counts requests in flight for every protocol (REST v1, v2, gRPC) alike.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import Iterator

from cellship.serve.errors import RequestError

SERVING, DRAINING, REFUSING = "serving", "draining", "refusing"


class DrainGate:
    """Counts requests in flight and says whether new ones are still welcome."""

    def __init__(self) -> None:
        self.state = SERVING
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self.started_at: float | None = None

    @property
    def ready(self) -> bool:
        """False from the first moment of a drain: what readiness probes read."""
        return self.state == SERVING

    def refusal(self) -> str:
        return ("This server is shutting down (it got SIGTERM) and takes no new requests; "
                "send this one to another replica, or retry once the new one is ready.")

    def check(self) -> None:
        """Raise the 503 a new request gets once the server refuses work."""
        if self.state == REFUSING:
            raise RequestError(self.refusal(), 503)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Around one request: refused while refusing, counted while in flight."""
        self.check()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def drain(self, grace_s: float, timeout_s: float) -> int:
        """Steps 1-4 above (on the server's loop). Returns how many requests were still in
        flight when ``timeout_s`` ran out (0: all finished)."""
        self.state = DRAINING
        self.started_at = time.monotonic()
        if grace_s > 0:
            await asyncio.sleep(grace_s)
        self.state = REFUSING
        self._idle = asyncio.Event()
        if self.in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except asyncio.TimeoutError:
                return self.in_flight
        return 0
