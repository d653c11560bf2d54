"""The panel's push channel: ``GET /cellship/api/events`` with ``Accept: text/event-stream``
streams a ``changed`` event whenever what the panel shows changed in the job store (a job's
status, a replica's state or node, a batch run), so a state change reaches the panel in
well under a second instead of at its next poll. The panel then asks the REST API as it
would on a poll; its ``Poll`` stays as the fallback (a proxy that buffers streams, a server
without this endpoint).

How it watches, cheaply: :class:`cellship.store.db.ChangeWatch` - SQLite's ``PRAGMA
data_version`` read every :data:`CHECK_SECONDS` on a connection held open for the stream
(microseconds; it moves on any commit of any process), and only when it moved a digest of
the rows the panel shows, so a write the panel cannot see (an event row, a refresh that
wrote the same values) sends nothing.

Without ``Accept: text/event-stream`` the endpoint answers one JSON snapshot (``version``,
``state``) at once: what a client that cannot stream, a script or the REST fuzzer gets.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import tornado.web
from tornado.iostream import StreamClosedError

from cellship.jupyter.base import CellshipHandler, store
from cellship.store.db import ChangeWatch

CHECK_SECONDS = 0.1       # how often data_version is read
KEEPALIVE_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream
RETRY_MS = 1000           # what a reconnecting client waits (the panel keeps its own backoff)


def _snapshot(watch: ChangeWatch) -> dict[str, Any]:
    return {"version": watch.version(), "state": watch.state()}


def _open() -> ChangeWatch:
    return store().watch_changes()


def _once() -> dict[str, Any]:
    watch = _open()
    try:
        return _snapshot(watch)
    finally:
        watch.close()


class EventsHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        if "text/event-stream" not in self.request.headers.get("Accept", ""):
            self.reply(await self.call(_once))
            return
        watch = await self.call(_open)
        try:
            await self._stream(watch)
        finally:
            watch.close()

    async def _stream(self, watch: ChangeWatch) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # proxies must not hold the stream back
        try:
            snapshot = await self.call(_snapshot, watch)
            # `hello` first: the client knows it is connected (and refreshes once, for what
            # changed while it was not).
            self.write(f"retry: {RETRY_MS}\n\nevent: hello\ndata: {json.dumps(snapshot)}\n\n")
            await self.flush()
            version, state = snapshot["version"], snapshot["state"]
            last_write = time.monotonic()
            while True:
                await asyncio.sleep(CHECK_SECONDS)
                now_version = await self.call(watch.version)
                if now_version != version:
                    version = now_version
                    now_state = await self.call(watch.state)
                    if now_state != state:
                        state = now_state
                        data = json.dumps({"version": version, "state": state})
                        self.write(f"event: changed\ndata: {data}\n\n")
                        await self.flush()
                        last_write = time.monotonic()
                if time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    last_write = time.monotonic()
        except StreamClosedError:
            return  # the browser went away (closed the tab, reloaded): nothing to clean
