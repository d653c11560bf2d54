"""The ``cellship serve`` endpoints: the running servers of this machine (the registry of
:mod:`cellship.serve.registry`) and stopping one (the panel's Stop button)."""

from __future__ import annotations

from typing import Any

import tornado.web

from cellship.jupyter.base import CellshipHandler


def _server_list() -> dict[str, Any]:
    from cellship.serve import registry

    servers = [s.to_dict() for s in registry.running()]
    return {"servers": servers, "count": len(servers)}


def _stop(pid: int) -> dict[str, Any]:
    from cellship.serve import registry

    return registry.stop(registry.find(pid)).to_dict()


class ServersHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(_server_list))


class ServerStopHandler(CellshipHandler):
    @tornado.web.authenticated
    async def post(self, pid: str) -> None:
        if not pid.isdigit() or len(pid) > 10:
            raise self.fail(400, f"A server is named by its pid, a whole number; got {pid!r}.")
        self.reply(await self.call(_stop, int(pid)))
