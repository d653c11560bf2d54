"""The model repository: exported SavedModels as ``MODEL/<version>/``, the layout TF Serving
reads, each version with a ``cellship-manifest.json`` saying where it came from.

Why this shape: ``cellship serve`` (and TF Serving itself, and the container image) can
take a model's directory as it is, and a server watching it picks up a new version
without a restart. A version is written whole into a temporary directory beside its
final place and renamed into place, so a watcher never sees half a version, and two
exports racing for the same number both land (the loser of the rename takes the next).

Exporting never imports TensorFlow here: the SavedModel's signatures and the example
request are checked by ``cellship.serve.check`` in a subprocess (or in this process
when TensorFlow is already loaded, as in a notebook kernel).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from cellship.errors import ExportError, ModelNotFound, UsageError
from cellship.paths import home

if TYPE_CHECKING:
    from cellship.store import BatchRecord, RunRecord, Store

MANIFEST = "cellship-manifest.json"
EXAMPLE = "cellship-example.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", ".venv",
                        ".git", ".ipynb_checkpoints"})
_MAX_SCANNED_DIRS = 20000


def root() -> Path:
    """Where exported models live: ``$CELLSHIP_HOME/models``."""
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UsageError(f"Model name {name!r} is not usable in a URL: use 1-128 letters, digits, "
                         "'-', '_' or '.', starting with a letter or digit (e.g. digits-cnn).")
    return name


def version_dirs(base: Path) -> dict[int, Path]:
    """Numbered SavedModel directories under ``base`` (TF Serving's layout). A bare
    SavedModel directory is one version: its own number if its name is one, else 1."""
    if (base / "saved_model.pb").is_file():
        return {int(base.name) if base.name.isdigit() else 1: base}
    found: dict[int, Path] = {}
    try:
        entries = list(base.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and (entry / "saved_model.pb").is_file():
            found[int(entry.name)] = entry
    return found


# -- the repository ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelVersion:
    """One stored version of a model."""

    name: str
    version: int
    path: Path
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def created(self) -> str | None:
        return self.manifest.get("created")

    @property
    def signature(self) -> Mapping[str, Any]:
        return self.manifest.get("signature") or {}

    def describe_source(self) -> str:
        source = self.manifest.get("source") or {}
        if source.get("kind") == "notebook":
            return Path(source.get("path", "?")).name
        if source.get("kind") == "job":
            return f"job {source.get('job_name')} ({source.get('job_id')})"
        if source.get("kind") == "saved_model":
            return str(source.get("path"))
        return "-"

    def describe_signature(self) -> str:
        sig = self.signature
        if not sig:
            return "-"

        def part(specs: Iterable[Mapping[str, Any]]) -> str:
            return ", ".join(f"{s['name']}:{s['dtype'].removeprefix('DT_').lower()}"
                             f"{_shape(s.get('shape'))}" for s in specs)

        return f"{part(sig.get('inputs', []))} -> {part(sig.get('outputs', []))}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                **{k: v for k, v in self.manifest.items() if k not in ("name", "version")}}


def _shape(shape: Sequence[int] | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join("?" if d == -1 else str(d) for d in shape) + "]"


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def list_models(name: str | None = None) -> list[ModelVersion]:
    """Every stored version (of one model, with ``name``), by name then version."""
    base = root()
    names = [name] if name else sorted(p.name for p in base.iterdir()
                                       if p.is_dir() and _NAME_RE.match(p.name))
    out = []
    for model in names:
        for version, path in sorted(version_dirs(base / model).items()):
            out.append(ModelVersion(model, version, path, _read_manifest(path)))
    return out


def get_model(name: str, version: int | None = None) -> ModelVersion:
    """A stored version (the newest without ``version``)."""
    versions = list_models(check_name(name)) if (root() / name).is_dir() else []
    if not versions:
        raise ModelNotFound(_not_found_message(name))
    if version is None:
        return versions[-1]
    for entry in versions:
        if entry.version == version:
            return entry
    have = ", ".join(str(v.version) for v in versions)
    raise ModelNotFound(f"Model {name} has no version {version}; it has {have}.")


def _not_found_message(name: str) -> str:
    known = sorted({m.name for m in list_models()})
    listing = f"Models here: {', '.join(known)}." if known else "No model has been exported yet."
    return (f"No model named {name!r} in the model repository ({root()}), and no directory "
            f"{name!r}. {listing} Export one with `cellship export NOTEBOOK --name {name}`.")


def resolve(model_or_path: str | os.PathLike[str]) -> tuple[str, Path]:
    """What ``cellship serve`` takes: a model name in the repository, a SavedModel
    directory, or a directory of numbered versions -> (name in URLs, base directory)."""
    text = os.fspath(model_or_path)
    path = Path(text).expanduser()
    looks_like_path = os.sep in text or text.startswith((".", "~"))
    if not looks_like_path and _NAME_RE.match(text) and (root() / text).is_dir():
        return text, root() / text  # a bare name means the repository's model (./NAME: the dir)
    if path.exists():
        if not path.is_dir():
            raise ModelNotFound(f"{path} is a file; give a SavedModel directory (holding "
                                "saved_model.pb), a directory of numbered versions, or a model name.")
        if not version_dirs(path):
            raise ModelNotFound(f"{path} holds neither a SavedModel (saved_model.pb) nor numbered "
                                "version directories of SavedModels (1/, 2/, ...).")
        resolved = path.resolve()
        label = resolved.parent.name if resolved.name.isdigit() else resolved.name
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", label).lstrip(".-_") or "model"
        return name[:128], resolved
    raise ModelNotFound(_not_found_message(text))


# -- storing a version --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    """What ``export_*`` did: the stored version, and which SavedModel it came from."""

    model: ModelVersion
    saved_model: Path
    candidates: tuple[Path, ...]  # every SavedModel found (the chosen one among them)
    example_response: Any = None

    def summary(self) -> str:
        lines = [f"exported {self.model.name} version {self.model.version}: "
                 f"{self.model.describe_signature()}",
                 f"  from:  {self.saved_model}", f"  to:    {self.model.path}"]
        others = [c for c in self.candidates if c != self.saved_model]
        if others:
            lines.append(f"  (newest of {len(self.candidates)} SavedModels found; the others: "
                         f"{', '.join(map(str, others))}; choose one with --model-dir)")
        if self.example_response is not None:
            lines.append("  the example request was answered: "
                         + _truncate(json.dumps(self.example_response), 160))
        lines.append(f"  serve: cellship serve {self.model.name}")
        return "\n".join(lines)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_example(example: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if example is None or isinstance(example, Mapping):
        return None if example is None else dict(example)
    path = Path(example)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UsageError(f"Cannot read the example request {path}: {err.strerror}.") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"The example request {path} is not JSON: {err.msg} at line {err.lineno} "
                         f"column {err.colno}.") from None
    if not isinstance(data, dict):
        raise UsageError(f"The example request {path} must be a JSON object, the body of a "
                         'TF Serving request such as {"instances": [...]}.')
    return data


def check_saved_model(path: Path, example: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Signatures of a SavedModel and, with ``example``, its answer to that request.
    Runs in this process if TensorFlow is loaded already, else in a subprocess."""
    if "tensorflow" in sys.modules:
        from cellship.serve.check import check

        return check(path, example)
    with tempfile.TemporaryDirectory(prefix="cellship-check-") as tmp:
        command = [sys.executable, "-m", "cellship.serve.check", str(path)]
        if example is not None:
            request = Path(tmp) / "example.json"
            request.write_text(json.dumps(example))
            command += ["--example", str(request)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(command, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ExportError(f"Checking the SavedModel {path} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise ExportError(result["error"])
    return result


def export_saved_model(saved_model: str | os.PathLike[str], name: str, *,
                       source: Mapping[str, Any] | None = None,
                       parameters: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, Any] | None = None,
                       example: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                       candidates: Sequence[Path] = (),
                       repository: Path | None = None) -> ExportResult:
    """Check a SavedModel (serving signature; the example request, if any) and store it as
    the next version of ``name``. Nothing is stored when a check fails. ``repository``: the
    directory of models to store into (default :func:`root`; ``cellship release`` stages a
    canary in one of its own)."""
    check_name(name)
    src = Path(saved_model).resolve()
    if not (src / "saved_model.pb").is_file():
        raise ExportError(f"{src} is not a SavedModel directory (no saved_model.pb in it).")
    request = load_example(example)
    checked = check_saved_model(src, request)
    signatures = checked["signatures"]
    manifest: dict[str, Any] = {
        "name": name, "version": None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": dict(source or {"kind": "saved_model", "path": str(src)}),
        "parameters": dict(parameters or {}),
        "signature": signatures["serving_default"],
        "signatures": sorted(signatures),
        "metrics": dict(metrics or {}),
        "saved_model": str(src),
        "cellship_version": _cellship_version(),
    }
    answer = checked.get("example")
    extra = {}
    if answer is not None:
        manifest["example"] = {"file": EXAMPLE, "verb": answer["verb"]}
        extra[EXAMPLE] = json.dumps({"verb": answer["verb"], "request": request,
                                     "response": answer["response"]}, indent=1)
    stored = _store(src, name, manifest, extra, repository)
    return ExportResult(stored, src, tuple(candidates) or (src,),
                        None if answer is None else answer["response"])


def _cellship_version() -> str:
    from cellship import __version__

    return __version__


def _store(src: Path, name: str, manifest: dict[str, Any], extra: Mapping[str, str],
           repository: Path | None = None) -> ModelVersion:
    base = (repository or root()) / name
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=base))
    try:
        model = staging / "model"
        try:
            shutil.copytree(src, model, symlinks=False)
        except (OSError, shutil.Error) as err:
            raise ExportError(f"Copying {src} into the model repository failed: {err}") from None
        for filename, text in extra.items():
            (model / filename).write_text(text)
        for _ in range(1000):
            version = max(version_dirs(base), default=0) + 1
            manifest["version"] = version
            (model / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            try:
                os.rename(model, base / str(version))
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another export took this number first: take the next one
                raise ExportError(f"Storing {name} version {version} failed: {err.strerror}.") from None
            return ModelVersion(name, version, base / str(version), dict(manifest))
        raise ExportError(f"Could not find a free version number for {name} in {base}.")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- finding the SavedModel a notebook or job produced --------------------------------------------
def find_saved_models(top: Path, since: float | None = None) -> tuple[list[Path], bool]:
    """SavedModel directories under ``top`` (written at or after ``since``), and whether
    the scan stopped early (too many directories)."""
    found: list[Path] = []
    scanned = 0
    for current, dirs, files in os.walk(top):
        scanned += 1
        if scanned > _MAX_SCANNED_DIRS:
            return found, True
        if "saved_model.pb" in files:
            pb = Path(current) / "saved_model.pb"
            try:
                fresh = since is None or pb.stat().st_mtime >= since
            except OSError:
                fresh = False
            if fresh:
                found.append(Path(current))
            dirs[:] = []  # a SavedModel's variables/ and assets/ hold no other models
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS]
    return found, False


def choose(candidates: Sequence[Path], model_dir: str | None, where: str, base: Path | None = None) -> Path:
    """The SavedModel to export: the one ``model_dir`` names, else the newest."""
    if model_dir:
        wanted = Path(model_dir).expanduser()
        if not wanted.is_absolute() and base is not None:
            wanted = base / wanted
        for candidate in candidates:
            if candidate.name == model_dir or candidate.resolve() == wanted.resolve():
                return candidate
        if (wanted / "saved_model.pb").is_file():
            return wanted.resolve()
        listing = "\n  ".join(map(str, candidates)) or "(none)"
        raise ExportError(f"--model-dir {model_dir!r} matches none of the SavedModels {where}:\n"
                          f"  {listing}\nGive one of these directories (or its name).")
    return max(candidates, key=lambda p: (p / "saved_model.pb").stat().st_mtime)


def _flat_metrics(last: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    return {key: point["value"] for key, point in last.items() if "value" in point}


def export_job(job_ref: str, name: str | None = None, *,
               example: str | os.PathLike[str] | Mapping[str, Any] | None = None,
               model_dir: str | None = None) -> ExportResult:
    """Export the SavedModel a finished job wrote (``cellship.job.save``)."""
    from cellship.train import api

    job = api.get_job(job_ref)
    record = job.record
    if not record.done:
        raise ExportError(f"Job {record.name} ({record.id}) is still {record.status}; export it "
                          f"when it has finished (`cellship logs {record.id} -f` follows it).")
    if record.status != "succeeded":
        raise ExportError(f"Job {record.name} ({record.id}) {record.status}; only a job that "
                          f"succeeded can be exported (`cellship status {record.id}` says why).")
    candidates = job.saved_models()
    if not candidates:
        home = (f" A Kubernetes job's files come home when a cell or command follows it to "
                f"its end; for a detached one, `cellship fetch {record.id}` copies them now."
                if record.backend == "kubernetes" else "")
        raise ExportError(f"Job {record.name} ({record.id}) wrote no SavedModel: looked for "
                          f"directories holding saved_model.pb under {record.output_dir}. Save "
                          f"one in the job with cellship.job.save(model, 'name').{home}")
    chosen = choose(candidates, model_dir, f"job {record.id} wrote", Path(record.output_dir))
    try:
        metrics = _flat_metrics(job.metrics_buffer().last_values())
    except Exception:
        metrics = {}
    source = {"kind": "job", "job_id": record.id, "job_name": record.name,
              "program": str(job.program_path), "output_dir": record.output_dir}
    return export_saved_model(chosen, check_name(name or chosen.name), source=source,
                              metrics=metrics, example=example, candidates=candidates)


def saved_models_of_run(record: "BatchRecord", run: "RunRecord", store: "Store",
                        job_timeout: float | None = 3600.0) -> tuple[list[Path], str, list[str]]:
    """The SavedModels one notebook run produced: those its ``%%train`` jobs wrote (waiting
    for jobs still running) and those written during the run under the notebook's working
    directory; with a sentence saying where it looked, and the ids of the jobs."""
    from cellship.train import api

    started = (run.started or record.created) - 2.0  # file times may be coarse
    candidates: list[Path] = []
    job_ids = []
    for job_record in store.jobs_of_run(record.id, run.index):
        job = api.get_job(job_record.id)
        job_ids.append(job_record.id)
        if not job.record.done:
            job.wait(timeout=job_timeout)
        if job.record.status == "succeeded":
            candidates += job.saved_models()
    cwd = Path(record.cwd)
    local, truncated = find_saved_models(cwd, since=started)
    candidates += [p for p in local if p not in candidates]
    stopped = f" - the scan stopped after {_MAX_SCANNED_DIRS} directories" if truncated else ""
    where = (f"under {cwd} (the notebook's working directory){stopped} and in the output of the "
             f"jobs it submitted ({', '.join(job_ids) or 'none'})")
    return candidates, where, job_ids


def export_notebook(path: str | os.PathLike[str], name: str | None = None, *,
                    parameters: Mapping[str, Any] | None = None,
                    example: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                    model_dir: str | None = None, kernel: str | None = None,
                    on_event: Callable[..., None] | None = None,
                    job_timeout: float | None = 3600.0) -> ExportResult:
    """Run a notebook with papermill (as a one-run batch, so it shows in ``cellship
    batches``), find the SavedModel it produced, check it and store it.

    Where it looks: directories holding ``saved_model.pb`` written during the run under the
    notebook's working directory (its own folder, as papermill runs it), and the output of
    every job its ``%%train`` cells submitted.
    """
    from cellship.runs import api as sweep
    from cellship.store import Store

    if name is not None:
        check_name(name)
    request = load_example(example)  # a bad example file fails before the notebook runs
    notebook = Path(path)
    batch = sweep.create(notebook, parameters=dict(parameters or {}), kernel=kernel,
                         name=f"export-{name or notebook.stem}")
    record = batch.run(on_event)
    run = record.runs[0]
    if run.status != "succeeded":
        raise ExportError(f"The notebook {notebook} {run.status}: {run.error or 'no reason recorded'}. "
                          f"Nothing was stored. The executed notebook is {run.output_path} "
                          f"(log: {run.log_path}).")
    candidates, where, job_ids = saved_models_of_run(record, run, Store.default(), job_timeout)
    cwd = Path(record.cwd)
    if not candidates:
        raise ExportError(
            f"The notebook {notebook} ran, but produced no SavedModel: looked for directories "
            f"holding saved_model.pb written during the run {where}. Save the model in the "
            "notebook: model.save('my_model', save_format='tf') (tf.keras), "
            "model.export('my_model') (Keras 3), or cellship.job.save(model, 'name') in a "
            "%%train cell.")
    chosen = choose(candidates, model_dir, f"the notebook produced ({where})", cwd)
    metrics: dict[str, Any] = {}
    for key, value in (run.recorded or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key.removeprefix("metric:")] = value
    source = {"kind": "notebook", "path": str(notebook.resolve()), "batch": batch.id,
              "executed_notebook": run.output_path, "jobs": job_ids}
    return export_saved_model(chosen, check_name(name or chosen.name), source=source,
                              parameters=dict(parameters or {}), metrics=metrics,
                              example=request, candidates=candidates)


__all__ = ["ModelVersion", "ExportResult", "root", "list_models", "get_model", "resolve",
           "export_notebook", "export_job", "export_saved_model", "find_saved_models",
           "saved_models_of_run",
           "version_dirs", "check_name", "MANIFEST"]
