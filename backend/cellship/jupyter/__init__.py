"""The jupyter_server extension behind the JupyterLab panel: a REST API under
``/cellship/api/`` (the route table in :mod:`.routes`; one handler per endpoint, one
module per resource: :mod:`.jobs`, :mod:`.logs`, :mod:`.batches`, :mod:`.models`,
:mod:`.servers` (running ``cellship serve``), :mod:`.deployments` (Kubernetes), :mod:`.events`
(the panel's push channel), shared
pieces in :mod:`.base`; the contract in ``openapi.yaml``).

Enabled on install: the wheel ships ``etc/jupyter/jupyter_server_config.d/cellship.json``.
Importing this package is cheap (no tornado until the server loads the extension), so
``import cellship`` in a kernel never pays for it.
"""

from __future__ import annotations

from typing import Any

OPENAPI = __file__.rsplit("/", 1)[0] + "/openapi.yaml"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "cellship.jupyter"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    import threading

    from cellship.jupyter.jobs import prewarm
    from cellship.jupyter.routes import handlers

    web_app = server_app.web_app
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    threading.Thread(target=prewarm, args=(server_app.log,), name="cellship-prewarm",
                     daemon=True).start()
    server_app.log.info("cellship: REST API at %scellship/api/", web_app.settings["base_url"])


# jupyter_server < 2 and `jupyter serverextension` name
load_jupyter_server_extension = _load_jupyter_server_extension
