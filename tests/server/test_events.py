"""The panel's push channel (``GET /cellship/api/events``) against a real in-process Jupyter
server: a job's state change in the store (written by another connection, as a supervisor
or the CLI would) reaches the stream within a second; a write the panel cannot see (an
event row) sends nothing; without ``Accept: text/event-stream`` one snapshot is answered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml
from openapi_schema_validator import OAS30Validator
from tornado.httpclient import HTTPClientError

from cellship.jupyter import OPENAPI
from tests.server.conftest import sse_events
from tests.server.records import fake_job

StoreEvent = OAS30Validator(yaml.safe_load(Path(OPENAPI).read_text())["components"]["schemas"]["StoreEvent"])


async def test_snapshot_without_the_stream_accept_header(call, store, cellship_home: Path) -> None:
    first = (await call("GET", "events")).json()
    assert set(first) == {"version", "state"}
    fake_job(store, cellship_home, status="running")
    assert (await call("GET", "events")).json()["state"] != first["state"]


async def test_a_state_change_is_pushed_within_a_second(jp_fetch, store, cellship_home: Path) -> None:
    job = fake_job(store, cellship_home, status="running")
    arrivals: list[tuple[float, bytes]] = []
    marks: dict[str, float] = {}

    async def change() -> None:
        await asyncio.sleep(0.8)  # connected and said hello by now
        marks["invisible"] = time.monotonic()
        store.add_event(job.id, "note", "nothing the panel lists")
        await asyncio.sleep(0.8)
        marks["changed"] = time.monotonic()
        store.transition(job.id, "succeeded", ended=time.time())

    writer = asyncio.ensure_future(change())
    try:
        await jp_fetch("cellship", "api", "events", headers={"Accept": "text/event-stream"},
                       streaming_callback=lambda chunk: arrivals.append((time.monotonic(), chunk)),
                       request_timeout=3.0)
        raise AssertionError("the stream ended by itself")
    except HTTPClientError as err:
        assert err.code == 599  # the client's timeout: the stream stays open
    await writer
    text = b"".join(chunk for _, chunk in arrivals).decode()
    events = sse_events(text)
    for event in events:
        StoreEvent.validate(event)
    assert [e["event"] for e in events] == ["hello", "changed"], events
    (when,) = [t for t, chunk in arrivals if b"event: changed" in chunk]
    assert when > marks["changed"] and when - marks["changed"] < 1.0
