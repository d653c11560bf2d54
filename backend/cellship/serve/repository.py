"""The versions a server holds for each model, kept in step with the disk.

TF Serving's layout: a model's base directory holds numbered version directories, each a
SavedModel. A watcher polls the base directory; a new number is loaded (on a thread of its
own, so answering never pauses) and served as soon as it is AVAILABLE; a number that
disappears is unloaded after its queued requests are answered. Requests without a version
go to the newest AVAILABLE one; all loaded versions stay addressable by number.

``cellship export`` renames a finished version into place, so the watcher never sees half
a version; a directory copied by hand that fails to load is retried when it changes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cellship.serve.batching import Batcher, BatchingConfig
from cellship.serve.errors import RequestError, not_found, unavailable
from cellship.serve.export import version_dirs

if TYPE_CHECKING:  # the module imports TensorFlow: only a loaded version brings it in
    from cellship.serve.signatures import LoadedModel

# TF Serving's ManagerState names, as GetModelStatusResponse spells them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


def _fingerprint(path: Path) -> tuple:
    try:
        pb = (path / "saved_model.pb").stat()
        return (pb.st_mtime_ns, pb.st_size, (path / "variables").stat().st_mtime_ns
                if (path / "variables").exists() else 0)
    except OSError:
        return ()


@dataclass
class VersionState:
    version: int
    path: Path
    state: str = START
    error: str = ""
    fingerprint: tuple = ()
    model: LoadedModel | None = None  # once AVAILABLE
    batchers: dict[str, Batcher] = field(default_factory=dict)

    def loaded(self) -> LoadedModel:
        """The model of an AVAILABLE version (what :meth:`ServedModel.resolve` returns);
        a version unloaded in between answers 503, as a request racing an unload does."""
        if self.model is None:
            raise unavailable(f"Version {self.version} is being unloaded; retry the request.")
        return self.model

    def status_json(self) -> dict:
        code = "OK" if not self.error else "UNKNOWN"
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": code, "error_message": self.error}}


@dataclass
class ServedModel:
    name: str
    base: Path
    versions: dict[int, VersionState] = field(default_factory=dict)

    def available(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s.state == AVAILABLE)

    def resolve(self, version: int | None) -> VersionState:
        """The version a request names, or the newest available one."""
        if version is None:
            ready = self.available()
            if not ready:
                loading = [v for v, s in self.versions.items() if s.state in (START, LOADING)]
                if loading:
                    raise unavailable(f"Model {self.name} is still loading (version "
                                      f"{max(loading)}); retry in a moment.")
                raise not_found(f"Servable not found for request: Latest({self.name}): no "
                                f"version of it is available{self._why()}.")
            return self.versions[ready[-1]]
        state = self.versions.get(version)
        if state is None or state.state != AVAILABLE:
            have = ", ".join(map(str, self.available())) or "none"
            detail = f" (it is {state.state}{': ' + state.error if state.error else ''})" if state else ""
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})"
                            f"{detail}; available versions: {have}.")
        return state

    def _why(self) -> str:
        errors = [f"version {v}: {s.error}" for v, s in sorted(self.versions.items()) if s.error]
        if errors:
            return " (" + "; ".join(errors) + ")"
        return f" (no numbered SavedModel directories in {self.base})"


class Repository:
    """Every model a server serves, and the watcher that keeps their versions current."""

    def __init__(self, models: dict[str, Path], batching: BatchingConfig, run_executor: Executor,
                 *, max_versions: int = 0, on_batch: Callable[[str, int, int], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.models = {name: ServedModel(name, Path(base)) for name, base in models.items()}
        self.batching = batching
        self.max_versions = max_versions
        self._run_executor = run_executor
        self._load_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellship-load")
        self._on_batch = on_batch
        self._log = log or (lambda text: print(f"cellship: {text}", file=sys.stderr, flush=True))
        self._task: asyncio.Task | None = None

    def model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise not_found(f"Servable not found for request: no model named {name!r} is served "
                            f"here (served: {known}).")
        return model

    def ready(self) -> bool:
        return all(m.available() for m in self.models.values())

    def batcher(self, state: VersionState, model_name: str, signature: str) -> Batcher:
        batcher = state.batchers.get(signature)
        if batcher is None:
            if state.state != AVAILABLE or state.model is None:  # unloaded meanwhile
                raise unavailable(f"Model {model_name} version {state.version} is being "
                                  "unloaded; retry the request.")
            sig = state.model.signature(signature)
            version = state.version

            def counted(rows: int) -> None:
                if self._on_batch:
                    self._on_batch(model_name, version, rows)

            batcher = Batcher(sig.run, self.batching, self._run_executor,
                              label=f"model {model_name} version {version}", on_batch=counted)
            state.batchers[signature] = batcher
        return batcher

    # -- watching ---------------------------------------------------------------------------
    async def sync(self) -> None:
        """Compare every model's base directory with what is loaded; load and unload."""
        for model in self.models.values():
            on_disk = version_dirs(model.base)
            wanted = sorted(on_disk)[-self.max_versions:] if self.max_versions else sorted(on_disk)
            for version in wanted:
                state = model.versions.get(version)
                fingerprint = _fingerprint(on_disk[version])
                if state is None or (state.state == END and state.error
                                     and state.fingerprint != fingerprint):
                    state = VersionState(version, on_disk[version], fingerprint=fingerprint)
                    model.versions[version] = state
                    await self._load(model, state)
            for version, state in list(model.versions.items()):
                if version not in wanted and state.state == AVAILABLE:
                    await self._unload(model, state)

    async def _load(self, model: ServedModel, state: VersionState) -> None:
        from cellship.serve import signatures

        state.state = LOADING
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            state.model = await loop.run_in_executor(self._load_executor, signatures.load,
                                                     state.path, model.name, state.version)
        except Exception as err:
            state.state, state.error = END, str(err)
            self._log(f"model {model.name} version {state.version} failed to load: {err}")
            return
        state.state, state.error = AVAILABLE, ""
        self._log(f"model {model.name} version {state.version} is available "
                  f"({time.monotonic() - started:.1f} s to load from {state.path})")

    async def _unload(self, model: ServedModel, state: VersionState) -> None:
        state.state = UNLOADING
        for batcher in state.batchers.values():
            await batcher.close()
        state.batchers.clear()
        state.model = None
        state.state = END
        self._log(f"model {model.name} version {state.version} was removed from disk; unloaded")

    async def watch(self, interval_s: float) -> None:
        """Load what is on disk now, then look again every ``interval_s`` seconds."""
        while True:
            try:
                await self.sync()
            except Exception as err:
                self._log(f"checking the model directories failed: {type(err).__name__}: {err}")
            await asyncio.sleep(interval_s)

    def start(self, interval_s: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch(interval_s))

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for model in self.models.values():
            for state in model.versions.values():
                for batcher in state.batchers.values():
                    await batcher.close()
        self._load_executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["Repository", "ServedModel", "VersionState", "version_dirs", "RequestError",
           "START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
