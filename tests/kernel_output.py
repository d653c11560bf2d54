"""What a cell shows, read from a kernel's iopub messages the way a notebook renders them
(shared by the local kernel driver of the integration tests and the remote one of the
cluster tier)."""

from __future__ import annotations

from typing import Any


def add_output(msg: dict[str, Any], out: list[str]) -> dict[str, Any] | None:
    """Append the text of one iopub message to ``out``; its content when it is an error."""
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        out.append(content["text"])
    elif kind in ("execute_result", "display_data"):
        out.append(content["data"].get("text/plain", "") + "\n")
    elif kind == "error":
        out.append("\n".join(content["traceback"]))
        return content
    return None


def is_idle(msg: dict[str, Any]) -> bool:
    """The kernel's "done with this request" message."""
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
