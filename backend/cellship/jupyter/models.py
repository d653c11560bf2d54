"""The model endpoints: exported models in the model repository (``cellship export``)."""

from __future__ import annotations

from typing import Any

import tornado.web

from cellship.jupyter import views
from cellship.jupyter.base import CellshipHandler


def _models(name: str | None, root_dir: str | None) -> dict[str, Any]:
    from cellship.serve.export import get_model, list_models

    if name is not None:
        get_model(name)  # ModelNotFound (404) with the models there are
    versions = list_models(name)
    return {"models": [views.model_version(v, root_dir) for v in versions], "count": len(versions)}


class ModelsHandler(CellshipHandler):
    """Exported models in the model repository (``cellship export``), every version."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.reply(await self.call(_models, None, self.root_dir))


class ModelHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        self.reply(await self.call(_models, name, self.root_dir))
