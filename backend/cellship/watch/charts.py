"""Static pictures of a job's live metrics: a PNG for notebooks and the panel, and a text
summary for text-only front ends.

matplotlib's object API on the Agg canvas only, never ``pyplot``: pyplot keeps global
figure state and may pick a GUI backend, and this runs in a kernel's background thread
(and in the Jupyter server) where neither is welcome. No IPython here: the magics wrap the
bytes in a display object.

A live plot is redrawn every time points arrive, so the figure drawn for a buffer is kept
(weakly, with the buffer) and the next update of the same charts only swaps the lines'
data: building axes, ticks and legends is most of the cost of a matplotlib picture.
"""

from __future__ import annotations

import io
import math
import threading
import weakref
from typing import Any

from cellship.watch.metrics import MetricsBuffer, downsample

WAITING = "waiting for metrics…"
_COLUMNS = 3
_WIDTH_IN = 9.0
_ROW_IN = 2.6
_DPI = 80
_MARKERS_BELOW = 30  # few points: show each one


def _finite(values: Any) -> Any:
    """Infinities as gaps (like NaN): they would wreck the autoscaled y axis."""
    import numpy as np

    if np.isfinite(values).all():
        return values
    return np.where(np.isfinite(values), values, np.nan)


def _distinct(values: Any, fmt: Any) -> list[str]:
    """Tick labels with as few digits as keep them apart (1.0001 vs 1.0002)."""
    span = max((abs(v) for v in values), default=0.0)
    values = [0.0 if abs(v) < 1e-12 * span else v for v in values]  # 0, not -1.4e-17
    labels: list[str] = []
    for digits in range(3, 13):
        labels = [fmt(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def _step(value: float, digits: int) -> str:
    """1500 -> 1500, 25000 -> 25k, 1500000 -> 1.5M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= scale:
            unit = scale if suffix != "k" else 1e3
            return f"{value / unit:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def _formatter(fmt: Any) -> Any:
    """A matplotlib tick formatter without offset or exponent text above the axis (where
    it would overwrite the chart's title)."""
    from matplotlib.ticker import Formatter

    class _Compact(Formatter):
        def __call__(self, x: float, pos: Any = None) -> str:
            return fmt(x, 4)

        def format_ticks(self, values: Any) -> list[str]:
            return _distinct(values, fmt)

    return _Compact()


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    # fast zlib level: a 720-pixel chart compresses well anyway, and this runs per update
    fig.savefig(out, format="png", dpi=_DPI, pil_kwargs={"compress_level": 1})
    return out.getvalue()


class _Chart:
    """One figure (a chart per tag, a line per run) whose lines can be refilled."""

    def __init__(self, layout: tuple[str | None, tuple[tuple[str, tuple[str, ...]], ...]]) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        self.layout = layout
        self.lock = threading.Lock()
        title, curves = layout
        tags = [tag for tag, _ in curves]
        columns = min(_COLUMNS, len(tags))
        rows = math.ceil(len(tags) / columns)
        height = _ROW_IN * rows
        self.fig = Figure(figsize=(_WIDTH_IN, height), dpi=_DPI)
        FigureCanvasAgg(self.fig)
        grid = self.fig.subplots(rows, columns, squeeze=False)
        # about two points per pixel column: min-max decimation to the screen's resolution
        self.limit = 2 * int(_WIDTH_IN * _DPI / columns)
        all_runs = sorted({run for _, runs in curves for run in runs})
        colours = {run: f"C{i % 10}" for i, run in enumerate(all_runs)}
        self.lines: dict[tuple[str, str], Any] = {}
        self.axes = []
        for index, (tag, runs) in enumerate(curves):
            ax = grid[index // columns][index % columns]
            self.axes.append(ax)
            for run in runs:
                (self.lines[(run, tag)],) = ax.plot([], [], color=colours[run], linewidth=1.2,
                                                    markersize=3, label=run)
            # a fixed title position: matplotlib's automatic one measures every tick label
            # on each redraw
            ax.set_title(tag, fontsize=9, loc="left", y=1.0, pad=3)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.xaxis.set_major_formatter(_formatter(_step))
            ax.yaxis.set_major_formatter(_formatter(_number))
            ax.tick_params(labelsize=7)
            ax.grid(True, linewidth=0.4, alpha=0.5)
            if index + columns >= len(tags):  # nothing below it
                ax.set_xlabel("step", fontsize=7, labelpad=1)
        for index in range(len(tags), rows * columns):
            grid[index // columns][index % columns].set_visible(False)
        # One legend for the figure (a run has the same colour in every chart), on the top
        # line with the title: it never hides data, and "best" placement would test every
        # plotted point on each redraw.
        # A lone run "." (events written straight into the logdir) needs no legend.
        if all_runs != ["."]:
            handles = [Line2D([], [], color=colours[run], linewidth=1.2) for run in all_runs]
            self.fig.legend(handles, all_runs, loc="upper right", ncol=min(len(all_runs), 6),
                            fontsize=7, frameon=False, borderaxespad=0.2, handlelength=1.5)
        if title:
            self.fig.text(0.01, 1 - 0.06 / height, title, fontsize=9, va="top", ha="left",
                          fontweight="bold")
        top_in, bottom_in, gap_in = 0.5, 0.42, 0.55  # legend line + chart title; ticks + label
        axes_in = (height - top_in - bottom_in - (rows - 1) * gap_in) / rows
        self.fig.subplots_adjust(left=0.06, right=0.99, bottom=bottom_in / height,
                                 top=1 - top_in / height, wspace=0.25, hspace=gap_in / axes_in)

    def render(self, buffer: MetricsBuffer, max_points: int) -> bytes:
        limit = max(4, min(max_points, self.limit))
        for (run, tag), line in self.lines.items():
            steps, values = downsample(*buffer.series(run, tag), limit)
            line.set_data(steps, _finite(values))
            line.set_marker("o" if len(steps) < _MARKERS_BELOW else "None")
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
        return _png(self.fig)


_charts: weakref.WeakKeyDictionary[MetricsBuffer, _Chart] = weakref.WeakKeyDictionary()
_charts_lock = threading.Lock()


def _waiting_png(title: str | None) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 0.8), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, f"{title}: {WAITING}" if title else WAITING,
             ha="center", va="center", color="0.4")
    return _png(fig)


def render_png(buffer: MetricsBuffer, max_points: int = 2000, title: str | None = None) -> bytes:
    """One small chart per tag (one line per run, x = step), as PNG bytes.

    Each line is min-max decimated to at most ``max_points`` and to about two points per
    pixel column of its chart (more would be invisible and only cost time). The figure is
    kept with ``buffer`` and reused while its tags, runs and title stay the same.
    """
    tags = buffer.tags()
    if not tags:
        return _waiting_png(title)
    layout = (title, tuple((tag, tuple(buffer.runs(tag))) for tag in tags))
    with _charts_lock:
        chart = _charts.get(buffer)
    if chart is None or chart.layout != layout:
        chart = _Chart(layout)
        with _charts_lock:
            _charts[buffer] = chart
    with chart.lock:
        return chart.render(buffer, max_points)


def _format(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def render_text(buffer: MetricsBuffer) -> str:
    """One line per tag with each run's latest value:
    ``epoch_loss: train 0.1234 (step 3), validation 0.2345 (step 3)``."""
    last = buffer.last_values()
    if not last:
        return WAITING
    lines = []
    for tag in buffer.tags():
        parts = []
        for run in buffer.runs(tag):
            point = last.get(f"{run}/{tag}")
            if point is not None:
                parts.append(f"{run} {_format(point['value'])} (step {point['step']})")
        lines.append(f"{tag}: " + ", ".join(parts))
    return "\n".join(lines)
