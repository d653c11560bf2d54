"""``%%train``, ``%jobs`` and ``%job``: the notebook face of cellship's Python API."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

from IPython.core import magic_arguments
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import Pretty, display

from cellship.errors import CellshipError, JobFailed, UsageError
from cellship.train import api
from cellship.train.options import (
    BATCH_OPTIONS,
    JOB_OPTIONS,
    batch_kwargs,
    batch_option_names,
    kubernetes_from_args,
    option_names,
    spec_from_args,
)
from cellship.train.program import HistoryCell, build_program
from cellship.watch.follow import Followed, follow
from cellship.watch.logstream import LogLine

JOB_ACTIONS = ("status", "logs", "attach", "cancel", "tensorboard")


def _with_job_options(func: Callable) -> Callable:
    """Apply the shared job options (cellship.train.options) as magic_arguments decorators."""
    func = magic_arguments.argument("--tf-noise", action="store_true",
                                    help="also show TensorFlow's C++ INFO/WARNING lines")(func)
    for flags, kwargs in reversed(JOB_OPTIONS):
        func = magic_arguments.argument(*flags, **kwargs)(func)
    return magic_arguments.magic_arguments()(func)


def _parse(magic: Callable, line: str, valid: list[str]) -> Any:
    """Parse a magic's line; a bad option becomes cellship's UsageError, which (unlike
    IPython's, which only prints) fails the cell, so "Run all" and papermill stop there."""
    try:
        return magic_arguments.parse_argstring(magic, line)
    except IPythonUsageError as err:
        raise UsageError(f"{err}\nvalid options: {', '.join(valid)}") from None


def _print_line(line: LogLine) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


class LiveChart:
    """The job's scalars as a picture under the cell, redrawn in place (an IPython display
    handle) at most every ``interval`` seconds while the job runs (a redraw costs ~50 ms
    of CPU; every 2 s keeps following a job under 5% of a core). A plain PNG rather than a
    widget: it needs no frontend extension, and the last picture stays in saved and
    papermill-executed notebooks."""

    def __init__(self, job: api.Job, interval: float = 2.0) -> None:
        from cellship.watch.metrics import MetricsBuffer

        self.job = job
        self.buffer = MetricsBuffer()
        self.interval = interval
        self.drawn_version = -1
        self.last_draw = 0.0
        self.handle = display(Pretty(f"live metrics of job {job.name} appear here once it "
                                     "writes TensorBoard scalars (cellship.job.tensorboard())"),
                              display_id=True)

    def add(self, point: Any) -> None:
        self.buffer.add([point])
        self.tick()

    def tick(self, force: bool = False) -> None:
        if self.buffer.version == self.drawn_version or not len(self.buffer):
            return
        if not force and time.monotonic() - self.last_draw < self.interval:
            return
        from cellship.watch.charts import render_png, render_text

        png = render_png(self.buffer, title=f"{self.job.name} ({self.job.id})")
        self.handle.update({"image/png": png, "text/plain": render_text(self.buffer)}, raw=True)
        self.drawn_version = self.buffer.version
        self.last_draw = time.monotonic()

    def finish(self) -> None:
        """Draw the final curves (or say there were none)."""
        if len(self.buffer):
            self.tick(force=True)
        else:
            self.handle.update(Pretty(f"job {self.job.name} wrote no TensorBoard scalars"))


def _interrupted_line(job: api.Job, cancelling: bool) -> None:
    if cancelling:
        print(f"\nInterrupted: cancelling job {job.name} ({job.id})...", flush=True)
    else:
        print(f"\nStopped following job {job.name} ({job.id}); it keeps running "
              f"(`%job {job.id} attach` to follow it again).")


def _report(job: api.Job, outcome: Followed[Any]) -> None:
    """The end of following: the summary, and the cell fails unless the job succeeded
    (or following stopped and the job goes on)."""
    if outcome.interrupted and not outcome.cancelled:
        return
    print(job.summary(), flush=True)
    if outcome.cancelled:
        raise JobFailed(f"Job {job.name} ({job.id}) was cancelled because the cell was "
                        "interrupted; all of its processes are stopped.", job.id,
                        "cancelled")
    if not outcome.succeeded:
        status = outcome.status or "failed"
        raise JobFailed(job.failure_report(traceback=False), job.id, status)


def _with_batch_options(func: Callable) -> Callable:
    for flags, kwargs in reversed(BATCH_OPTIONS):
        func = magic_arguments.argument(*flags, **kwargs)(func)
    func = magic_arguments.argument("notebook", metavar="NOTEBOOK")(func)
    return magic_arguments.magic_arguments()(func)


def _print_batch_event(kind: str, run: Any, batch: Any) -> None:
    from cellship.runs.api import describe_event

    print(describe_event(kind, run, batch), flush=True)


@magics_class
class CellshipMagics(Magics):
    """Registered by ``%load_ext cellship``."""

    @property
    def _user_ns(self) -> dict[str, Any]:
        """The kernel's variables. IPython gives a Magics its shell when the extension is
        loaded; without one (a Magics made by hand) there is nothing to read."""
        if self.shell is None:
            raise UsageError("These magics need an IPython shell: load them with "
                             "%load_ext cellship.")
        return self.shell.user_ns

    def _history(self) -> list[HistoryCell]:
        """Executed cells of this kernel session, in execution order (IPython's ``_ih``
        holds them already transformed to Python)."""
        inputs = self._user_ns.get("_ih", [])
        return [HistoryCell(number, source) for number, source in enumerate(inputs)
                if number > 0 and source]

    def _follow(self, job: api.Job, tf_noise: bool) -> None:
        """Stream the job's logs and live curves into the cell (the widget view where the
        front end may render widgets, else text lines and a redrawn PNG); interrupting the
        kernel cancels the job (like interrupting local code) unless it is detached:
        submitted with --detach, or detached from the view's Detach button."""
        from cellship_magics.view import widgets_wanted

        if widgets_wanted(self.shell):
            self._follow_view(job, tf_noise)
        else:
            self._follow_text(job, tf_noise)

    def _follow_text(self, job: api.Job, tf_noise: bool) -> None:
        chart = LiveChart(job)

        def interrupted(cancelling: bool) -> None:
            chart.finish()
            _interrupted_line(job, cancelling)

        outcome = follow(job, lambda: job.follow(_print_line, tf_noise=tf_noise,
                                                 on_metric=chart.add, on_idle=chart.tick),
                         cancel=lambda: not job.record.detached, on_interrupt=interrupted)
        if not outcome.interrupted:
            chart.finish()
        _report(job, outcome)

    def _follow_view(self, job: api.Job, tf_noise: bool) -> None:
        from cellship_magics.view import JobView

        view = JobView(job, following=True)
        view.show()

        def interrupted(cancelling: bool) -> None:
            view.widget.message = f"Interrupted: cancelling job {job.name} ({job.id})..." \
                if cancelling else ""
            _interrupted_line(job, cancelling)

        outcome = follow(job, lambda: job.follow(view.line, tf_noise=tf_noise,
                                                 on_metric=view.metric, on_idle=view.tick,
                                                 on_event=view.event),
                         cancel=lambda: not job.record.detached, on_interrupt=interrupted)
        if outcome.cancelled:
            message = "Cancelled because the cell was interrupted: every process is stopped."
        elif outcome.interrupted:
            message = (f"Detached: the job keeps running; `%job {job.id} attach` follows it "
                       "again (after a kernel restart too).")
        else:
            message = ""
        view.finish(message)
        _report(job, outcome)

    @_with_job_options
    @cell_magic
    def train(self, line: str, cell: str) -> None:
        """Run this cell as a distributed TensorFlow job.

        The cell runs on every worker, with the imports, functions, classes and constants
        it needs from earlier cells. Under the cell, the job's view: a row per replica,
        progress bars, live curves, the logs, and Cancel/Detach/TensorBoard buttons (a
        widget; the final curves as a PNG and the logs as text stay beside it for front
        ends without widgets; ``CELLSHIP_VIEW=text`` prints text lines instead).
        Interrupting the kernel cancels the job (unless --detach). Examples::

            %%train --workers 2
            %%train --workers 2 --ps 1 --max-restarts 1 --name digits
            %%train --ship X_train,y_train --dry-run
            %%train --backend kubernetes --registry registry.example.com/ml --workers 2 --gpus 1
        """
        args = _parse(self.train, line, option_names() + ["--tf-noise"])
        spec = spec_from_args(args)
        kubernetes = kubernetes_from_args(args)
        source = TransformerManager().transform_cell(cell)
        program = build_program(source, self._history(), self._user_ns, spec.ship,
                                line_offset=1)  # line 1 of the cell is the %%train line
        for note in program.notes:
            print(f"cellship: note: {note}")
        if args.dry_run:
            print(api.dry_run_text(spec, program, kubernetes))
            return
        job = api.submit_program(spec, program, detached=args.detach, source="%%train cell",
                                 kubernetes=kubernetes)
        topo = ", ".join(r.label for r in job.record.replicas)
        print(f"cellship: job {job.name} ({job.id}) submitted to the {spec.backend} backend: "
              f"{topo}", flush=True)
        if args.detach:
            print(f"cellship: detached; follow it with `%job {job.id} attach`, stop it with "
                  f"`%job {job.id} cancel`.")
            return
        self._follow(job, args.tf_noise)

    @line_magic
    def jobs(self, line: str) -> None:
        """List cellship jobs, newest first: ``%jobs [STATUS]``."""
        from cellship_magics.view import widgets_wanted

        status = line.strip() or None
        try:  # with a cluster configured, its jobs submitted elsewhere too (3 s at most)
            listing = api.job_listing(status=status, limit=50)
        except CellshipError:
            raise
        except ValueError as err:
            raise UsageError(str(err)) from None
        if widgets_wanted(self.shell):
            from cellship_magics.jobstable import show_jobs

            show_jobs(listing.jobs, listing.cluster, listing.note)
        else:
            print(api.listing_text(listing))

    @magic_arguments.magic_arguments()
    @magic_arguments.argument("job", metavar="JOB", help="job id, id prefix or unique name")
    @magic_arguments.argument("action", nargs="?", default="status",
                              help=f"one of: {', '.join(JOB_ACTIONS)} (default status)")
    @magic_arguments.argument("--tf-noise", action="store_true",
                              help="with logs/attach: also show TensorFlow's C++ chatter")
    @line_magic
    def job(self, line: str) -> None:
        """Look at or act on one job: ``%job ID [status|logs|attach|cancel|tensorboard]``.

        ``attach`` replays the logs and follows the job until it ends (e.g. after a kernel
        restart); interrupting it cancels the job unless it was submitted with --detach.
        ``tensorboard`` starts (or reuses) a TensorBoard over the job's logdir, shown under
        the cell; it stops when this kernel exits.
        """
        args = _parse(self.job, line, ["--tf-noise"])
        if args.action not in JOB_ACTIONS:
            raise UsageError(f"unknown action {args.action!r}; valid actions: "
                                    f"{', '.join(JOB_ACTIONS)}")
        job = api.get_job(args.job)
        if args.action == "status":
            print(job.status_text())
        elif args.action == "logs":
            for log_line in job.logs(follow=False, tf_noise=args.tf_noise):
                _print_line(log_line)
        elif args.action == "attach":
            print(f"cellship: attached to job {job.name} ({job.id}), {job.status}", flush=True)
            self._follow(job, args.tf_noise)
        elif args.action == "cancel":
            before = job.status
            job.cancel()
            print(f"job {job.name} ({job.id}) " + ("cancelled; all of its processes are stopped"
                  if before not in ("succeeded", "failed", "cancelled") else f"had already {before}"))
        elif args.action == "tensorboard":
            from IPython.display import IFrame

            from cellship.fetch.mirror import for_job
            from cellship.watch.tensorboard import open_tensorboard

            for_job(job)  # a running cluster job: its event files keep arriving in the logdir
            server = open_tensorboard([job.id])
            print(f"TensorBoard for job {job.name} ({job.id}): {server.proxied_url()}", flush=True)
            display(IFrame(server.proxied_url(), width="100%", height=800))

    @_with_batch_options
    @line_magic
    def batch(self, line: str) -> Any:
        """Run a notebook with papermill once per parameter set, each run with its own
        kernel, and show the results table: ``%batch NOTEBOOK -p lr 0.1 --grid bs=32,64``.
        Takes the options of ``cellship batch``, the Kubernetes flags of ``--backend
        kubernetes`` included (``--image``, ``--namespace``, ``--cpu``, ...)::

            %batch sweep.ipynb --grid lr=0.1,0.01 --parallel 2
            %batch sweep.ipynb --backend kubernetes --image my/notebook:1 --namespace ml

        Interrupting the kernel cancels the remaining runs and kills running kernels.
        Returns the Batch (``.results()`` is a pandas DataFrame).
        """
        from cellship.runs.api import create

        args = _parse(self.batch, line, batch_option_names())
        batch = create(args.notebook, warn=lambda text: print(f"cellship: warning: {text}"),
                       **batch_kwargs(args))
        print(f"cellship: batch {batch.name} ({batch.id}): {len(batch.runs)} run(s), "
              f"{args.parallel} at a time", flush=True)
        if follow(batch, lambda: batch.run(_print_batch_event)).interrupted:
            raise UsageError(f"Interrupted: batch {batch.name} ({batch.id}) cancelled; its "
                             f"running kernels were stopped. {batch.summary()}")
        return batch
