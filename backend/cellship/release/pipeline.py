"""``cellship.release(...)``: a notebook to a served version in one gated step, and
``cellship.rollback(...)``.

The steps, each named in the release record when it stops the release:

1. ``run``      the notebook runs as a one-run papermill batch (``cellship batches`` shows
                it; the ``%%train`` jobs it submits are linked to the run);
2. ``gates``    every ``--gate`` is checked against what the run recorded;
3. ``contract`` the SavedModel the run produced must have the serving version's signature
                (unless allowed);
4. ``stage``    it is checked (with the example request) and stored as the next version,
                where no user's request reaches it yet (:meth:`Target.stage`);
5. ``canary``   smoke test and a watched window beside the current version;
6. ``promote``  it becomes the version served by default.

A release that stops after ``stage`` moves the new version aside (never deletes it) and
what was served stays served. The running record is the lock against a second release of
the same model.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cellship.errors import ContractBroken, GateFailed, ReleaseBusy, ReleaseError
from cellship.processes import pid_alive
from cellship.release import contract
from cellship.release import gates as gating
from cellship.release.canary import CanaryLimits, CanaryReport
from cellship.release.records import who
from cellship.release.targets import Staged, Target, get_target
from cellship.serve.export import check_name, choose, load_example, saved_models_of_run
from cellship.store import ReleaseRecord, Store

Say = Callable[[str], None]


@dataclass(frozen=True)
class ReleaseOutcome:
    """What a promoted release did."""

    record: ReleaseRecord
    gates: Sequence[gating.GateResult] = ()
    canary: CanaryReport | None = None
    moved_aside: Sequence[Path] = field(default_factory=tuple)

    def summary(self) -> str:
        r = self.record
        lines = [f"release {r.id}: {r.model} version {r.version} is served by default now"
                 + (f" (was {r.previous})" if r.previous is not None else "")]
        if self.canary is not None:
            lines.append("  " + self.canary.summary())
        return "\n".join(lines)


def _quiet(_text: str) -> None:
    pass


def release(notebook: str | os.PathLike[str], *, model: str, to: str = "local",
            parameters: Mapping[str, Any] | None = None, gates: Sequence[str] = (),
            example: str | os.PathLike[str] | Mapping[str, Any] | None = None,
            allow_signature_change: bool = False, repository: str | os.PathLike[str] | None = None,
            server: str | None = None, limits: CanaryLimits | None = None,
            model_dir: str | None = None, kernel: str | None = None,
            say: Say = _quiet, store: Store | None = None) -> ReleaseOutcome:
    """Run ``notebook``, gate, stage, contract-check, canary and promote it as the next
    version of ``model``. Raises a :class:`ReleaseError` naming the step that stopped it;
    the release is recorded either way (``cellship releases MODEL``)."""
    check_name(model)
    checked_gates = gating.parse_all(gates)  # bad input fails before anything runs
    request = load_example(example)
    target = get_target(to, Path(repository) if repository else None, server)
    store = store or Store.default()
    params = dict(parameters or {})
    record = ReleaseRecord(id=secrets.token_hex(4), kind="release", model=model, target=target.name,
                           outcome="running", user=who(), started=time.time(),
                           notebook=str(Path(notebook).resolve()), parameters=params,
                           gates=tuple({"gate": g.text} for g in checked_gates), pid=os.getpid())
    _begin(store, record)
    steps = _Steps(store, record, target, say)
    try:
        return steps.run(Path(notebook), params, checked_gates, request, allow_signature_change,
                         limits or CanaryLimits(), model_dir, kernel)
    except ReleaseError as err:
        steps.fail(err.step or steps.step, str(err))
        raise
    except BaseException as err:  # Ctrl-C, or a fault of ours: the record still says so
        steps.fail(steps.step, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        raise


def _begin(store: Store, record: ReleaseRecord) -> None:
    running = store.begin_release(record, pid_alive)
    if running is not None:
        raise ReleaseBusy(f"Release {running.id} of {running.model} is running (pid {running.pid}, "
                          f"started by {running.user} at "
                          f"{time.strftime('%H:%M:%S', time.localtime(running.started))}); wait for "
                          "it to end (`cellship releases "
                          f"{running.model}`), or stop that process, then release again.", "lock")


class _Steps:
    """One release's steps, with what each leaves for the cleanup of a later failure."""

    def __init__(self, store: Store, record: ReleaseRecord, target: Target, say: Say) -> None:
        self.store, self.record, self.target, self.say = store, record, target, say
        self.step = "run"
        self.staged: Staged | None = None

    def _update(self, **fields: Any) -> None:
        self.store.update_release(self.record.id, **fields)

    def run(self, notebook: Path, params: dict[str, Any], checked_gates: Sequence[gating.Gate],
            request: Mapping[str, Any] | None, allow_signature_change: bool,
            limits: CanaryLimits, model_dir: str | None, kernel: str | None) -> ReleaseOutcome:
        from cellship.runs import api as sweep

        model, rid = self.record.model, self.record.id
        # 1. run
        batch = sweep.create(notebook, parameters=params, kernel=kernel, backend="local",
                             name=f"release-{model}", store=self.store)
        run = batch.record.runs[0]
        self._update(batch_id=batch.id, output_notebook=run.output_path)
        self.say(f"running {notebook} (batch {batch.id}; output notebook {run.output_path})")
        done = batch.run()
        run = done.runs[0]
        if run.status != "succeeded":
            raise ReleaseError(f"The notebook {notebook} {run.status}: "
                               f"{run.error or 'no reason recorded'}. Nothing was added to the "
                               f"model repository. The executed notebook is {run.output_path} "
                               f"(log: {run.log_path}).", "run")
        # 2. gates
        self.step = "gates"
        results = gating.evaluate(checked_gates, run.recorded)
        self._update(gates=[r.to_dict() for r in results])
        if not all(r.passed for r in results):
            failed = sum(not r.passed for r in results)
            raise GateFailed(f"{failed} of {len(results)} gate{'s' if len(results) > 1 else ''} "
                             f"not met; nothing was added to the model repository:\n"
                             f"{gating.table(results)}", "gates")
        if results:
            self.say("gates met:\n" + gating.table(results))
        # 3. contract: the SavedModel the run produced, against the one served now
        self.step = "contract"
        candidates, where, job_ids = saved_models_of_run(done, run, self.store)
        if not candidates:
            raise ReleaseError(f"The notebook {notebook} ran, but produced no SavedModel (looked "
                               f"{where}); save one in the notebook (model.save(...) or "
                               "cellship.job.save(model, 'name') in a %%train cell).", "contract")
        chosen = choose(candidates, model_dir, f"the notebook produced ({where})", Path(done.cwd))
        current = self.target.current(model)
        if current is not None:
            self._update(previous=current.version)
        metrics = {k.removeprefix("metric:"): v for k, v in run.recorded.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        source = {"kind": "notebook", "path": str(notebook.resolve()), "batch": batch.id,
                  "executed_notebook": run.output_path, "jobs": job_ids, "release": rid}
        # (before staging: a broken contract is the news, not the example it cannot answer)
        if current is not None and current.signature:
            diffs = contract.differences(current.signature, self.target.signature(chosen))
            if diffs and not allow_signature_change:
                raise ContractBroken(
                    f"The serving signature of the new version differs from version "
                    f"{current.version}'s, which is served now:\n{contract.describe(diffs)}\n"
                    "Clients of the current version would break; pass "
                    "--allow-signature-change if that is intended.", "contract")
            if diffs:
                self.say("signature changed (allowed):\n" + contract.describe(diffs))
        # 4. stage
        self.step = "stage"
        self.staged = self.target.stage(chosen, model, rid, current=current, source=source,
                                        parameters=params, metrics=metrics, example=request)
        version = self.staged.model.version
        self._update(version=version)
        self.say(f"staged {model} version {version}: {self.staged.model.describe_signature()}")
        # 5. canary
        self.step = "canary"
        report = self.target.canary(self.staged, current, request, limits)
        self._update(details={"canary": report.to_dict()})
        self.say(report.summary())
        if report.failed_check:
            aside = self._reject()
            self._update(outcome="rolled-back", failed_step="canary", ended=time.time(),
                         reason=f"check {report.failed_check} failed: {report.reason}",
                         details={"canary": report.to_dict(), "moved_to": str(aside)})
            raise ReleaseError(f"Rolled back: the canary's {report.failed_check} check failed: "
                               f"{report.reason}. Version {version} was moved aside to {aside}; "
                               + (f"version {current.version} is still served."
                                  if current else "nothing is served."), "canary")
        # 6. promote
        self.step = "promote"
        self.target.promote(self.staged)
        self.staged = None
        self._update(outcome="promoted", ended=time.time())
        final = self.store.get_release(rid)
        return ReleaseOutcome(final, results, report)

    def _reject(self) -> Path | None:
        if self.staged is None:
            return None
        staged, self.staged = self.staged, None
        return self.target.reject(staged, self.record.id)

    def fail(self, step: str, reason: str) -> None:
        """Settle the record of a release that stopped (unless the canary already did)."""
        if self.store.get_release(self.record.id).outcome != "running":
            return
        aside = self._reject()
        fields: dict[str, Any] = {"outcome": "failed", "failed_step": step, "reason": reason,
                                  "ended": time.time()}
        if aside is not None:
            fields["details"] = {**self.store.get_release(self.record.id).details,
                                 "moved_to": str(aside)}
        self._update(**fields)


def rollback(model: str, *, to: int | None = None, repository: str | os.PathLike[str] | None = None,
             server: str | None = None, target: str = "local",
             store: Store | None = None) -> ReleaseRecord:
    """Serve version ``to`` of ``model`` again (default: the one before the current) in one
    step; the newer versions are moved aside, not deleted. Recorded like a release."""
    check_name(model)
    chosen = get_target(target, Path(repository) if repository else None, server)
    store = store or Store.default()
    record = ReleaseRecord(id=secrets.token_hex(4), kind="rollback", model=model,
                           target=chosen.name, outcome="running", user=who(),
                           started=time.time(), pid=os.getpid())
    _begin(store, record)
    try:
        before, after, moved = chosen.rollback(model, to, record.id)
    except BaseException as err:
        store.update_release(record.id, outcome="failed", failed_step="rollback",
                             reason=str(err), ended=time.time())
        raise
    store.update_release(record.id, outcome="rollback", version=after, previous=before,
                         details={"moved_to": [str(p) for p in moved]}, ended=time.time())
    return store.get_release(record.id)


__all__ = ["release", "rollback", "ReleaseOutcome", "CanaryLimits"]
