"""REST tests against a real in-process Jupyter server (pytest-jupyter's ``jp_fetch``),
with the cellship server extension loaded, every response checked against openapi.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - jp_fetch and its fixtures
from tornado.httpclient import HTTPClientError

from cellship.jupyter import OPENAPI
from cellship.store import Store


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"cellship.jupyter": True}}}


@pytest.fixture(scope="session")
def openapi():
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(OPENAPI)


@pytest.fixture
def store(cellship_home: Path) -> Store:
    from cellship.paths import store_path

    return Store(store_path())


class Reply:
    def __init__(self, code: int, body: bytes, content_type: str) -> None:
        self.code = code
        self.body = body
        self.content_type = content_type

    def json(self) -> Any:
        return json.loads(self.body)


def sse_events(text: str) -> list[dict[str, Any]]:
    """The events of a server-sent event stream (blocks with data), as field -> value."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[key] = fields[key] + "\n" + value if key == "data" and key in fields else value
        if "data" in fields:
            fields.setdefault("event", "message")
            events.append(fields)
    return events


def validate_events(text: str, code: int) -> None:
    """Each event of a log stream against openapi.yaml's LogEvent schema."""
    import yaml
    from openapi_schema_validator import OAS30Validator

    assert code == 200, code
    spec = yaml.safe_load(Path(OPENAPI).read_text())
    schema = spec["components"]["schemas"]["LogEvent"]
    events = sse_events(text)
    assert events, f"no events in the stream: {text!r}"
    for event in events:
        OAS30Validator(schema).validate(event)


@pytest.fixture
def call(jp_fetch, openapi):
    """``await call(METHOD, "jobs/ID", params=..., body=...)``: a Reply whose request and
    response were validated against openapi.yaml (the contract)."""
    from openapi_core.testing import MockRequest, MockResponse

    async def request(method: str, path: str, *, params: dict | None = None,
                      body: Any = None, headers: dict | None = None,
                      validate: bool = True) -> Reply:
        kwargs: dict[str, Any] = {"method": method, "headers": dict(headers or {})}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = b""
        try:
            response = await jp_fetch("cellship", "api", *path.split("/"), params=params,
                                      **kwargs)
            code, data = response.code, response.body
            content_type = response.headers.get("Content-Type", "")
        except HTTPClientError as err:
            code, data = err.code, err.response.body if err.response else b""
            content_type = err.response.headers.get("Content-Type", "") if err.response else ""
        reply = Reply(code, data, content_type.split(";")[0])
        if validate:
            mock_request = MockRequest(
                "http://localhost", method.lower(), f"/cellship/api/{path}",
                args=params or {}, headers=headers or {},
                data=json.dumps(body) if body is not None else None)
            if reply.content_type == "text/event-stream":
                # OpenAPI 3.0 reads an event stream's schema per event: check each one.
                validate_events(data.decode(), code)
            else:
                mock_response = MockResponse(data, status_code=code, content_type=reply.content_type)
                openapi.validate_response(mock_request, mock_response)
        return reply

    return request
