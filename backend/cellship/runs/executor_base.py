"""The interface every place batch runs execute implements (the backend seam for batches).

The coordinator calls :meth:`RunExecutor.start`, polls :meth:`RunExecutor.running` and, on
cancel, :meth:`RunExecutor.kill`; the executor (or what it starts) writes each run's
outcome to the store. Options of a backend (``kubernetes={...}``) are checked once when the
batch is created and kept as ``<output_dir>/<backend>.json``, so a detached coordinator and
``batch retry`` find them again. Its own module so executors can live in modules of their
own without import cycles with the registry in :mod:`.executors`.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, Mapping

from cellship.errors import UsageError
from cellship.store import BatchRecord, RunRecord, Store


class RunExecutor(abc.ABC):
    name = ""

    def __init__(self, store: Store) -> None:
        self.store = store

    @abc.abstractmethod
    def start(self, run: RunRecord) -> None:
        """Start the run; return at once."""

    @abc.abstractmethod
    def running(self, run: RunRecord) -> bool:
        """Whether the run is still going (once False, its outcome is in the store)."""

    @abc.abstractmethod
    def kill(self, run: RunRecord) -> None:
        """Stop the run and everything it started (its kernel included)."""

    # -- options ---------------------------------------------------------------------------
    def check_options(self, options: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Validate a new batch's backend options before anything runs; return the
        JSON-able form to keep with the batch. The base takes none."""
        if options:
            raise UsageError(f"Backend options ({', '.join(sorted(options))}) were given, but "
                             f"batch runs on the {self.name!r} backend take none; they apply "
                             "to backend='kubernetes' (--backend kubernetes).")
        return None

    def options_path(self, output_dir: str | Path) -> Path:
        return Path(output_dir) / f"{self.name}.json"

    def save_options(self, output_dir: str | Path, options: Mapping[str, Any] | None) -> None:
        if options is not None:
            self.options_path(output_dir).write_text(json.dumps(dict(options), indent=2))

    def load_options(self, batch: BatchRecord) -> dict[str, Any]:
        path = self.options_path(batch.output_dir)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise UsageError(f"The {self.name} options of batch {batch.name} ({batch.id}) in "
                             f"{path} are damaged ({err}); fix or delete the file.") from None

    def abandon(self, batch: BatchRecord) -> None:  # noqa: B027 - optional hook
        """Clean up after a batch whose coordinator is gone (it died before it could stop
        its runs). The base has nothing outside this machine to clean."""
