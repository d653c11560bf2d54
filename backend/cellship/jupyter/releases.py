"""The release endpoints: the records of ``cellship releases`` (every model's, or one
model's), and starting ``cellship release`` from the panel.

A release runs a notebook, gates, stages and canaries a model: minutes of work that must
never run inside the Jupyter server. POST starts ``python -m cellship.cli release ...``
with the same flags as a detached process (its own session, stdout and stderr to a log
under ``$CELLSHIP_HOME/releases/``) and answers 202 at once; the pipeline's running record
then tells the panel how it goes. The pipeline itself refuses a second release of a model
while one runs; here that is checked first, so the panel gets a 409 sentence rather than a
record of a refused start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tornado.web

from cellship.errors import PathRefused, UsageError
from cellship.jupyter import views
from cellship.jupyter.base import CellshipHandler, inside, store

TARGETS = ("local", "kubernetes")
KUBERNETES_FIELDS = ("registry", "base", "namespace")


def record_view(record: Any, root_dir: str | None) -> dict[str, Any]:
    """A release record as JSON: everything ``cellship releases --json`` shows, with the
    times as ISO strings and the notebook also as a file-browser path."""
    data = record.to_dict()
    data["started"] = views.iso(record.started)
    data["ended"] = views.iso(record.ended)
    data["notebook_path"] = (views.relative_to_root(record.notebook, root_dir)
                             if record.notebook else None)
    data["parameters"] = dict(record.parameters)
    data["gates"] = [dict(g) for g in record.gates]
    data["details"] = dict(record.details)
    return data


def _records(model: str | None, root_dir: str | None) -> dict[str, Any]:
    from cellship.release.pipeline import history, models_released

    db = store()
    models = [model] if model is not None else models_released(db)
    records = []
    for name in models:
        try:
            records += history(name, db)
        except UsageError:  # a name no release could have made (check_name): listed as is
            records += db.list_releases(name)
    records.sort(key=lambda r: r.started, reverse=True)  # newest first
    return {"releases": [record_view(r, root_dir) for r in records], "count": len(records)}


def _running(model: str) -> Any:
    from cellship.release.pipeline import history

    return next((r for r in history(model, store()) if r.outcome == "running"), None)


def _log_dir() -> Path:
    from cellship.paths import home

    path = home() / "releases"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _start(argv: list[str], model: str, example: dict[str, Any] | None,
           cwd: str) -> dict[str, Any]:
    """Check that no release of ``model`` runs, then start one detached (reaped by a
    thread of this server once it ends, so it leaves no zombie behind)."""
    from cellship.errors import ReleaseBusy

    running = _running(model)
    if running is not None:
        raise ReleaseBusy(f"Release {running.id} of {model} is running (pid {running.pid}, started "
                          f"by {running.user}); wait for it to end, then release again.", "lock")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = _log_dir()
    if example is not None:
        request = logs / f"{model}-{stamp}-example.json"
        request.write_text(json.dumps(example))
        argv.append(f"--example={request}")
    log_path = logs / f"{model}-{stamp}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cellship.cli", "release", *argv],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd)
    threading.Thread(target=proc.wait, name=f"reap-release-{proc.pid}", daemon=True).start()
    return {"model": model, "pid": proc.pid, "log": str(log_path)}


class ReleasesHandler(CellshipHandler):
    """``cellship releases`` for the panel, and ``cellship release`` started from it."""

    @tornado.web.authenticated
    async def get(self) -> None:
        model = self.get_query_argument("model", None) or None
        if model is not None:
            self._check_model(model)
        self.reply(await self.call(_records, model, self.root_dir))

    def _check_model(self, model: Any) -> str:
        from cellship.serve.export import check_name

        if not isinstance(model, str) or not model:
            raise self.fail(400, "Give model: the name of the model the new version belongs to "
                                 "(e.g. digits-cnn).")
        if model != model.strip():
            raise self.fail(400, f"Model name {model!r} is not usable: it has spaces or line breaks "
                                 "around it.")
        try:
            return check_name(model)
        except UsageError as err:
            raise self.fail(400, str(err)) from None

    def _notebook(self, notebook: Any) -> Path:
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise self.fail(400, "Give notebook: the path of an .ipynb file, relative to the "
                                 "Jupyter root.")
        if not self.root_dir:
            raise self.fail(409, "This Jupyter server has no file-system root to find notebooks in.")
        try:
            path = inside(self.root_dir, notebook)
            found = path.is_file() and path.suffix == ".ipynb"
        except PathRefused as err:
            raise self.fail(400, f"notebook: {err}") from None
        except (OSError, ValueError):  # a name too long, or not encodable as a file name
            found = False
        if not found:
            raise self.fail(400, f"notebook: there is no notebook {notebook!r} in the Jupyter root.")
        return path

    def _argv(self, body: dict[str, Any], notebook: Path, model: str) -> list[str]:
        """The command line of ``cellship release`` for ``body`` (400 naming a bad field)."""
        from cellship.release import gates as gating

        to = body.get("to") if body.get("to") is not None else "local"
        if to not in TARGETS:
            raise self.fail(400, f"to must be local or kubernetes, got {to!r}.")
        argv = [str(notebook), f"--model={model}", f"--to={to}"]
        parameters = body.get("parameters") if body.get("parameters") is not None else {}
        if not isinstance(parameters, dict):
            raise self.fail(400, "parameters must be a JSON object of name: value.")
        for name, value in parameters.items():
            if not name or name.startswith("-"):
                raise self.fail(400, f"parameters: {name!r} is not a parameter name.")
            argv += ["-p", name, json.dumps(value, allow_nan=False)]
        gates = body.get("gates") if body.get("gates") is not None else []
        if not isinstance(gates, list) or not all(isinstance(g, str) for g in gates):
            raise self.fail(400, "gates must be a list of strings such as "
                                 "'record:accuracy > 0.9'.")
        try:
            gating.parse_all(gates)
        except UsageError as err:
            raise self.fail(400, f"gates: {err}") from None
        for gate in gates:
            argv.append(f"--gate={gate}")
        for key in KUBERNETES_FIELDS:
            value = body.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or value.startswith("-"):
                raise self.fail(400, f"{key} must be a string (an image, registry or namespace).")
            if to != "kubernetes":
                raise self.fail(400, f"{key} goes with to: kubernetes (this release goes to {to}).")
            argv.append(f"--{key}={value}")
        if to == "kubernetes":
            for key in ("registry", "base"):
                if not body.get(key):
                    raise self.fail(400, f"{key} is required with to: kubernetes.")
        return argv

    @tornado.web.authenticated
    async def post(self) -> None:
        """Start a release of a notebook of the Jupyter root (the panel's Release… button)."""
        body = self.body()
        model = self._check_model(body.get("model"))
        notebook = self._notebook(body.get("notebook"))
        try:
            argv = self._argv(body, notebook, model)
        except ValueError:  # a parameter value JSON cannot carry (NaN)
            raise self.fail(400, "parameters must be JSON values (no NaN or infinity).") from None
        example = body.get("example")
        if example is not None and not isinstance(example, dict):
            raise self.fail(400, 'example must be a JSON object, a TF Serving request body such '
                                 'as {"instances": [...]}.')
        self.reply(await self.call(_start, argv, model, example, str(notebook.parent)), status=202)
