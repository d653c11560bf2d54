"""A kernel of a remote Jupyter server, driven the way JupyterLab drives one: created through
the REST API, code sent as ``execute_request`` messages over the kernel's websocket
(``/api/kernels/ID/channels``), output read from the iopub messages of that request.

The token goes in the ``Authorization`` header, never in a URL. websocket-client is a
dependency of jupyter_server (its own tests drive kernels with it).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import requests
import websocket

from tests.kernel_output import add_output, is_idle


class RemoteKernel:
    """``run(code)`` returns (text the cell printed or displayed, the error content or None)."""

    def __init__(self, base_url: str, token: str, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"token {token}"}
        answer = requests.post(f"{self.base_url}/api/kernels", json={"name": "python3"},
                               headers=self.headers, timeout=timeout)
        answer.raise_for_status()
        self.id = answer.json()["id"]
        self.session = uuid.uuid4().hex
        ws_url = self.base_url.replace("http", "ws", 1) + f"/api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"{k}: {v}" for k, v in self.headers.items()], timeout=timeout)
        self.messages: list[dict[str, Any]] = []

    def _request(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        return msg_id

    def run(self, code: str, timeout: float = 120) -> tuple[str, dict[str, Any] | None]:
        msg_id = self._request(code)
        out: list[str] = []
        error = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ws.settimeout(max(0.1, end - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            self.messages.append(msg)
            if msg.get("channel") != "iopub" or msg["parent_header"].get("msg_id") != msg_id:
                continue
            error = add_output(msg, out) or error
            if is_idle(msg):
                return "".join(out), error
        raise AssertionError(f"cell did not finish in {timeout} s; output so far:\n{''.join(out)}")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            requests.delete(f"{self.base_url}/api/kernels/{self.id}", headers=self.headers,
                            timeout=30)
