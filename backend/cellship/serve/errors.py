"""The error a serving request can end in: an HTTP status plus a sentence for the client.

TF Serving answers every failure as ``{"error": "<message>"}``; the status says whose fault
it was (400 the request, 404 the model or version, 413 the size, 503 the load) so a client
can tell a bug in its request from a reason to retry.
"""

from __future__ import annotations

from cellship.errors import CellshipError


class RequestError(CellshipError):
    """A request the server answers with ``status`` and ``{"error": str(self)}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def bad_request(message: str) -> RequestError:
    return RequestError(message, 400)


def not_found(message: str) -> RequestError:
    return RequestError(message, 404)


def unavailable(message: str) -> RequestError:
    return RequestError(message, 503)
