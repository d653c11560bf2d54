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
the same model; it also says the step the release is at.

A release whose process was killed (``kill -9`` mid-canary, a CI runner gone) cannot clean
up: its record is ``interrupted`` with the step it reached (``cellship releases MODEL``), and
its staged version is still in ``MODEL/.canary-<id>/``, served by nobody (the canary server
was a thread of the dead process). :func:`resume` (``cellship release --resume MODEL``)
finishes it, and so do :func:`rollback` and the next :func:`release` of the model before
their own work; see :func:`resume` for what "finishing" means and why.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cellship.errors import (
    CellshipError,
    ContractBroken,
    GateFailed,
    ReleaseBusy,
    ReleaseError,
    UsageError,
)
from cellship.processes import pid_alive
from cellship.release import contract
from cellship.release import gates as gating
from cellship.release.canary import CanaryLimits, CanaryReport
from cellship.release.records import who
from cellship.release.targets import Staged, Target, get_target, target_of_record
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
            say: Say = _quiet, store: Store | None = None, **kubernetes: Any) -> ReleaseOutcome:
    """Run ``notebook``, gate, stage, contract-check, canary and promote it as the next
    version of ``model``. Raises a :class:`ReleaseError` naming the step that stopped it;
    the release is recorded either way (``cellship releases MODEL``).

    ``to="kubernetes"`` takes the options of
    :class:`~cellship.release.kubernetes_target.KubernetesTarget` as keywords: ``registry``
    (required), ``base`` (required), ``namespace``, ``context``, ``replicas``, ``canary``
    (percent), ``deps_from_base``, ``timeout``."""
    check_name(model)
    checked_gates = gating.parse_all(gates)  # bad input fails before anything runs
    request = load_example(example)
    store = store or Store.default()
    if kubernetes and to != "kubernetes":
        raise UsageError(f"{', '.join(sorted(kubernetes))} only apply to to='kubernetes'.")
    target = get_target(to, Path(repository) if repository else None, server, say=say,
                        store=store, **kubernetes)
    target.check(model)
    params = dict(parameters or {})
    record = ReleaseRecord(id=secrets.token_hex(4), kind="release", model=model, target=target.name,
                           outcome="running", user=who(), started=time.time(),
                           notebook=str(Path(notebook).resolve()), parameters=params,
                           gates=tuple({"gate": g.text} for g in checked_gates), pid=os.getpid(),
                           details=target.where())
    _begin(store, record)
    steps = _Steps(store, record, target, say)
    try:
        steps.step = "cleanup"
        _finish_interrupted(store, model, f"release {record.id}", say,
                            target if repository else None)
        return steps.run(Path(notebook), params, checked_gates, request, allow_signature_change,
                         limits or CanaryLimits(), model_dir, kernel)
    except ReleaseError as err:
        steps.fail(err.step or steps.step, str(err))
        raise
    except BaseException as err:  # Ctrl-C, or a fault of ours: the record still says so
        steps.fail(steps.step, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        raise


def _busy(running: ReleaseRecord) -> ReleaseBusy:
    return ReleaseBusy(f"Release {running.id} of {running.model} is running (pid {running.pid}, "
                       f"started by {running.user} at "
                       f"{time.strftime('%H:%M:%S', time.localtime(running.started))}); wait for "
                       "it to end (`cellship releases "
                       f"{running.model}`), or stop that process, then release again.", "lock")


def _begin(store: Store, record: ReleaseRecord) -> None:
    running = store.begin_release(record, pid_alive)
    if running is not None:
        raise _busy(running)


def history(model: str, store: Store | None = None) -> list[ReleaseRecord]:
    """Every release and rollback of ``model``, oldest first; a running one whose process
    is gone is settled ``interrupted`` first (so it shows as such, with its step)."""
    check_name(model)
    store = store or Store.default()
    store.settle_dead_releases(model, pid_alive, time.time())
    return store.list_releases(model)


def resume(model: str, *, repository: str | os.PathLike[str] | None = None,
           store: Store | None = None, say: Say = _quiet) -> list[ReleaseRecord]:
    """Finish the interrupted releases of ``model`` (their process ended mid-release) and
    return their settled records (none: nothing was interrupted).

    Finishing one rolls it back: its staged version is moved to ``MODEL/.rejected/`` (never
    deleted) and its canary folder removed; the record says ``rolled-back`` at the step it
    reached. Only a release killed after the rename of ``promote`` (its version already in
    place, its release id in the manifest) is settled ``promoted`` instead.

    Why not re-run the canary and promote on success: the checks it had passed, and the
    window the dead process was watching, were lost with it; a new canary would be a new
    release in all but name, run with limits and an example request the record does not
    fully keep, by a process the user did not start for a promotion (``--resume`` in a CI
    script after a runner died must never promote something nobody saw pass). Rolling back
    is always safe for serving: the staged version never served a user's request, so the
    served version is exactly what it was before the release began; releasing again (the
    notebook's batch run is kept) is one command. ``repository``: where the release went,
    when the record does not say (it does for releases made by this version)."""
    check_name(model)
    store = store or Store.default()
    live, claimed = store.claim_interrupted(model, os.getpid(), pid_alive, time.time())
    if live is not None:
        raise _busy(live)
    override = get_target("local", Path(repository)) if repository else None
    return [_finish(store, r, "--resume", say, override) for r in claimed]


def _finish_interrupted(store: Store, model: str, how: str, say: Say,
                        target: Target | None = None) -> list[ReleaseRecord]:
    """Finish the interrupted releases of ``model`` while the caller holds its lock (a
    running record of its own)."""
    return [_finish(store, r, how, say, target) for r in store.list_releases(model)
            if r.outcome == "interrupted" and r.kind == "release"]


def _finish(store: Store, record: ReleaseRecord, how: str, say: Say,
            target: Target | None = None) -> ReleaseRecord:
    """Clean up one interrupted release (see :func:`resume`) and settle its record."""
    try:
        if target is None:
            target = target_of_record(record.target, record.details, say=say, store=store)
        promoted, moved = target.finish_interrupted(record.model, record.id, record.version)
    except BaseException:
        store.update_release(record.id, outcome="interrupted")  # still to finish
        raise
    step = record.failed_step or "run"
    was = record.reason or "its process ended before the release finished"
    finished = {"how": how, "user": who(), "at": time.time(), "moved_to": [str(p) for p in moved]}
    details = {**record.details, "finished": finished}
    if promoted:
        reason = (f"interrupted at step {step}: {was}, after version {record.version} was "
                  f"renamed into place; finished by {how}: it is served")
        store.update_release(record.id, outcome="promoted", failed_step=None, ended=time.time(),
                             reason=reason, details=details)
    else:
        left = (f"version {record.version} moved aside to {moved[0]}" if moved and record.version
                else f"what it left moved aside to {', '.join(map(str, moved))}" if moved
                else "it had left nothing")
        reason = (f"interrupted at step {step}: {was}; finished by {how}: {left}; nothing "
                  "was promoted")
        store.update_release(record.id, outcome="rolled-back", failed_step=step,
                             ended=time.time(), reason=reason, details=details)
    say(f"release {record.id} of {record.model} was {reason}")
    return store.get_release(record.id)


class _Steps:
    """One release's steps, with what each leaves for the cleanup of a later failure."""

    def __init__(self, store: Store, record: ReleaseRecord, target: Target, say: Say) -> None:
        self.store, self.record, self.target, self.say = store, record, target, say
        self.step = "run"
        self.staged: Staged | None = None
        self.details: dict[str, Any] = dict(record.details)

    def _update(self, **fields: Any) -> None:
        if "details" in fields:  # merged: the repository recorded at the start stays
            self.details.update(fields["details"])
            fields["details"] = self.details
        self.store.update_release(self.record.id, **fields)

    def _at(self, step: str) -> None:
        """The release is at ``step`` now, and its record says so (a killed release's
        record keeps the step it reached)."""
        self.step = step
        self._update(failed_step=step)

    def run(self, notebook: Path, params: dict[str, Any], checked_gates: Sequence[gating.Gate],
            request: Mapping[str, Any] | None, allow_signature_change: bool,
            limits: CanaryLimits, model_dir: str | None, kernel: str | None) -> ReleaseOutcome:
        from cellship.runs import api as sweep

        model, rid = self.record.model, self.record.id
        # 1. run
        self._at("run")
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
        self._at("gates")
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
        self._at("contract")
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
        self._at("stage")
        self.staged = self.target.stage(chosen, model, rid, current=current, source=source,
                                        parameters=params, metrics=metrics, example=request)
        version = self.staged.model.version
        self._update(version=version, details=dict(self.staged.record))
        self.say(f"staged {model} version {version}: {self.staged.model.describe_signature()}")
        # 5. canary
        self._at("canary")
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
        self._at("promote")
        self.target.promote(self.staged)
        self.staged = None
        self._update(outcome="promoted", failed_step=None, ended=time.time())
        final = self.store.get_release(rid)
        return ReleaseOutcome(final, results, report)

    def _reject(self) -> Path | str | None:
        if self.staged is None:
            return None
        aside = self.target.reject(self.staged, self.record.id)
        self.staged = None  # only once it is moved aside: a failed cleanup is retried
        return aside

    def fail(self, step: str, reason: str) -> None:
        """Settle the record of a release that stopped (unless the canary already did).
        When moving the staged version aside fails too (the cluster went away), the record
        says ``interrupted``: ``--resume`` or ``rollback`` finishes it later."""
        if self.store.get_release(self.record.id).outcome != "running":
            return
        outcome = "failed"
        version = self.staged.model.version if self.staged else None
        try:
            aside = self._reject()
        except CellshipError as err:
            aside, outcome = None, "interrupted"
            reason += (f" Moving version {version} aside failed too ({err}); "
                       f"`cellship release --resume {self.record.model}` finishes it.")
        fields: dict[str, Any] = {"outcome": outcome, "failed_step": step, "reason": reason,
                                  "ended": time.time()}
        if aside is not None:
            fields["details"] = {"moved_to": str(aside)}
        self._update(**fields)


def rollback(model: str, *, to: int | None = None, repository: str | os.PathLike[str] | None = None,
             server: str | None = None, target: str | None = None,
             store: Store | None = None, say: Say = _quiet, **kubernetes: Any) -> ReleaseRecord:
    """Serve version ``to`` of ``model`` again (default: the one before the current) in one
    step; the newer versions are moved aside, not deleted. Recorded like a release.

    ``target``: where the model is released (default: where its last release went, with
    the namespace, context and registry that release recorded; ``kubernetes`` keywords
    such as ``namespace`` or ``context`` override those).

    Interrupted releases of ``model`` are finished first (:func:`resume`). When that was all
    there was to undo (no ``to`` given, and none of them had been promoted), the rollback
    stops there: the version served is the one served before the interrupted release, which
    is what going back from it means; going back one more version would undo a good one."""
    check_name(model)
    store = store or Store.default()
    chosen = _rollback_target(model, target, repository, server, store, say, kubernetes)
    record = ReleaseRecord(id=secrets.token_hex(4), kind="rollback", model=model,
                           target=chosen.name, outcome="running", user=who(),
                           started=time.time(), pid=os.getpid())
    _begin(store, record)
    try:
        finished = _finish_interrupted(store, model, f"rollback {record.id}", say,
                                       chosen if repository else None)
        if to is None and finished and not any(r.outcome == "promoted" for r in finished):
            # The release being undone never served: finishing it was the rollback.
            current = chosen.current(model)
            version = None if current is None else current.version
            store.update_release(record.id, outcome="rollback", version=version, previous=version,
                                 details={"moved_to": [p for r in finished
                                                       for p in r.details["finished"]["moved_to"]],
                                          "finished": [r.id for r in finished]},
                                 ended=time.time())
            return store.get_release(record.id)
        before, after, moved = chosen.rollback(model, to, record.id)
    except BaseException as err:
        store.update_release(record.id, outcome="failed", failed_step="rollback",
                             reason=str(err), ended=time.time())
        raise
    store.update_release(record.id, outcome="rollback", version=after, previous=before,
                         details={"moved_to": [str(p) for p in moved]}, ended=time.time())
    return store.get_release(record.id)


def _rollback_target(model: str, name: str | None, repository: str | os.PathLike[str] | None,
                     server: str | None, store: Store, say: Say,
                     kubernetes: Mapping[str, Any]) -> Target:
    """The target a rollback of ``model`` goes to (see :func:`rollback`)."""
    last = next((r for r in reversed(store.list_releases(model))
                 if r.kind == "release" and (name is None or r.target == name)), None)
    name = name or (last.target if last is not None else "local")
    given = {k: v for k, v in kubernetes.items() if v is not None}
    if name == "kubernetes":
        recorded = dict(last.details) if last is not None and last.target == name else {}
        return target_of_record(name, {**recorded, **given}, say=say, store=store)
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given))
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{flags} only {verb} to a model released to Kubernetes; {model} is "
                         f"released to the {name} target.")
    return get_target(name, Path(repository) if repository else None, server)


__all__ = ["release", "rollback", "resume", "history", "ReleaseOutcome", "CanaryLimits"]


def models_released(store: Store | None = None) -> list[str]:
    """Every model with a release or rollback recorded, by name (what the panel's Releases
    tab lists the history of)."""
    return (store or Store.default()).released_models()
