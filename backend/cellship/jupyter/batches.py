"""The batch endpoints: list, start a notebook as a batch (the toolbar's button), one
batch's detail, cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tornado.web

from cellship.errors import PathRefused
from cellship.jupyter import views
from cellship.jupyter.base import CellshipHandler, inside, store


def _batch_list(limit: int | None) -> dict[str, Any]:
    records = store().list_batches(limit)
    return {"batches": [views.batch_summary(r) for r in records], "count": len(records)}


def _batch_detail(batch_id: str, root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import Batch

    record = store().get_batch(batch_id)
    handle = Batch(record, store())
    return views.batch_detail(record, handle.rows(), root_dir)


def _start_batch(notebook: Path, options: dict[str, Any], root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import create

    handle = create(notebook, store=store(), warn=lambda _text: None, **options)
    handle.start_detached()
    return _batch_detail(handle.id, root_dir)


def _cancel_batch(batch_id: str, root_dir: str | None) -> dict[str, Any]:
    from cellship.runs.api import Batch

    Batch(store().get_batch(batch_id), store()).cancel()
    return _batch_detail(batch_id, root_dir)


class BatchesHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        limit = self.int_argument("limit", None, low=1, high=100_000)
        self.reply(await self.call(_batch_list, limit))

    @tornado.web.authenticated
    async def post(self) -> None:
        """Run a notebook of the Jupyter root as a batch (the notebook toolbar's button)."""
        body = self.body()
        notebook = body.get("notebook")
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise self.fail(400, "Give notebook: the path of an .ipynb file, relative to the "
                                 "Jupyter root.")
        if not self.root_dir:
            raise self.fail(409, "This Jupyter server has no file-system root to find notebooks in.")
        try:
            path = inside(self.root_dir, notebook)
        except PathRefused as err:
            raise self.fail(400, str(err)) from None
        options: dict[str, Any] = {}
        for key, kind in (("parameters", dict), ("grid", dict), ("parallel", int),
                          ("name", str), ("backend", str)):
            if body.get(key) is not None:
                if not isinstance(body[key], kind) or isinstance(body[key], bool):
                    raise self.fail(400, f"{key} must be a JSON {kind.__name__}.")
                options[key] = body[key]
        for name, values in options.get("grid", {}).items():
            if not isinstance(values, list) or not values:
                raise self.fail(400, f"grid.{name} must be a non-empty list of values.")
        self.reply(await self.call(_start_batch, path, options, self.root_dir), status=201)


class BatchHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, batch_id: str) -> None:
        self.reply(await self.call(_batch_detail, batch_id, self.root_dir))


class BatchCancelHandler(CellshipHandler):
    @tornado.web.authenticated
    async def post(self, batch_id: str) -> None:
        self.reply(await self.call(_cancel_batch, batch_id, self.root_dir))
