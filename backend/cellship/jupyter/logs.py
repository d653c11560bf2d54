"""A job's log lines over HTTP: server-sent events that follow the job, or one JSON page."""

from __future__ import annotations

import asyncio
import json
import time

import tornado.web
from tornado.iostream import StreamClosedError

from cellship.jupyter import views
from cellship.jupyter.base import CellshipHandler
from cellship.store import JobRecord
from cellship.train.api import Job
from cellship.watch.logstream import is_tf_noise, read_from
from cellship.watch.metrics import is_relay

LOG_POLL_SECONDS = 0.25
DONE_CHECK_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


class JobLogsHandler(CellshipHandler):
    """The job's log lines, as server-sent events (default) or one JSON page.

    The cursor (SSE event id, ``?offset=``, or the ``Last-Event-ID`` header a reconnecting
    EventSource sends) is one byte offset per streamed replica, comma-separated, each just
    past a complete line: resuming repeats and loses nothing. Relay lines (metrics) are
    never shown; TensorFlow's C++ chatter only with ``tf_noise=true``.
    """

    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        job = await self.call(self.job, job_id)
        record = await self.call(lambda: job.record)
        replicas = self._replicas(record)
        offsets = self._cursor(len(replicas))
        tf_noise = self.bool_argument("tf_noise", False)
        follow = self.bool_argument("follow", True)
        as_json = self.get_query_argument("format", "sse") == "json"
        if self.get_query_argument("format", "sse") not in ("sse", "json"):
            raise self.fail(400, "Query parameter format must be sse or json.")
        if as_json:
            lines = self._read(replicas, offsets, final=record.done, tf_noise=tf_noise)
            self.reply({"id": record.id, "status": record.status, "done": record.done,
                        "offset": _cursor_text(offsets), "lines": lines})
            return
        await self._stream(job, replicas, offsets, follow, tf_noise, record.status)

    def _replicas(self, record: JobRecord) -> list[tuple[str, str]]:
        """(label, log path) of the replicas asked for (``?replica=KEY``, default all). The
        paths come from the store, never from the request: the parameter only selects."""
        wanted = self.get_query_argument("replica", None)
        every = [(views.replica_key(r), r.label, r.log_path) for r in record.replicas]
        if wanted is None or wanted == "":
            return [(label, path) for _, label, path in every]
        if "/" in wanted or "\\" in wanted or ".." in wanted or "\0" in wanted:
            raise self.fail(400, f"Refused replica {wanted!r}: give a replica key such as "
                                 "worker-0, not a path.")
        for key, label, path in every:
            if key == wanted:
                return [(label, path)]
        keys = ", ".join(key for key, _, _ in every)
        raise self.fail(404, f"Job {record.id} has no replica {wanted!r}; it has {keys}.")

    def _cursor(self, count: int) -> list[int]:
        raw = self.get_query_argument("offset", None) or self.request.headers.get("Last-Event-ID")
        if not raw:
            return [0] * count
        try:
            offsets = [int(part) for part in raw.split(",")]
        except ValueError:
            offsets = []
        if len(offsets) != count or any(o < 0 for o in offsets):
            raise self.fail(400, f"Offset {raw!r} is not a log cursor of this stream: "
                                 f"{count} comma-separated byte offsets, as sent in event ids.")
        return offsets

    @staticmethod
    def _read(replicas: list[tuple[str, str]], offsets: list[int], final: bool,
              tf_noise: bool) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for i, (label, path) in enumerate(replicas):
            lines, offsets[i] = read_from(path, offsets[i], final=final)
            out.extend({"replica": label, "text": text} for text in lines
                       if not is_relay(text) and (tf_noise or not is_tf_noise(text)))
        return out

    async def _stream(self, job: Job, replicas: list[tuple[str, str]], offsets: list[int],
                      follow: bool, tf_noise: bool, status: str) -> None:
        """Stream from ``offsets``; ``status`` is the job's as the request found it (what the
        ``end`` event reports with ``follow=false``; following re-reads it)."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # proxies must not hold the stream back
        try:
            self.write("retry: 2000\n\n")
            await self.flush()
            done, last_check, last_write = False, 0.0, time.monotonic()
            while True:
                if follow and time.monotonic() - last_check >= DONE_CHECK_SECONDS:
                    record = await self.call(lambda: job.record)
                    done, status = record.done, record.status
                    last_check = time.monotonic()
                done = done or not follow
                before = list(offsets)
                lines = self._read(replicas, offsets, final=done, tf_noise=tf_noise)
                if offsets != before:
                    self.write(f"id: {_cursor_text(offsets)}\ndata: "
                               f"{json.dumps({'lines': lines})}\n\n")
                    await self.flush()
                    last_write = time.monotonic()
                if done:
                    self.write(f"event: end\ndata: {json.dumps({'status': status})}\n\n")
                    await self.flush()
                    break
                if time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    last_write = time.monotonic()
                await asyncio.sleep(LOG_POLL_SECONDS)
        except StreamClosedError:
            return  # the browser went away (closed the panel, reloaded): nothing to clean
        self.finish()


def _cursor_text(offsets: list[int]) -> str:
    return ",".join(str(o) for o in offsets)
