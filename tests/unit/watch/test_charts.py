"""Metric pictures: PNG bytes from matplotlib's Agg canvas, and the text fallback."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap

import numpy as np

from cellship.watch.charts import render_png, render_text
from cellship.watch.metrics import MetricsBuffer, ScalarPoint


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


LEGEND_PX = 40  # the top 0.5 inch at 80 dpi: the figure's legend line and chart titles


def line_pixels(data: bytes, colour: str, charts: int) -> tuple[int, list[int]]:
    """Pixels drawn in matplotlib colour ``colour`` (C0, C1...): (in the legend line,
    [in each of ``charts`` equal columns below it])."""
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    rgb = imread(io.BytesIO(data))[..., :3]
    near = np.abs(rgb - np.array(to_rgb(colour))).sum(axis=-1) < 60 / 255
    width = near.shape[1]
    return (int(near[:LEGEND_PX].sum()),
            [int(near[LEGEND_PX:, i * width // charts:(i + 1) * width // charts].sum())
             for i in range(charts)])


def filled(tags: int = 2, runs: tuple[str, ...] = ("train", "validation"),
           steps: int = 5) -> MetricsBuffer:
    buffer = MetricsBuffer()
    buffer.add(ScalarPoint(run, f"tag{t}", s, 1000.0 + s, 1.0 / (s + 1) + r)
               for t in range(tags) for r, run in enumerate(runs) for s in range(steps))
    return buffer


def test_empty_buffer_renders_a_waiting_picture():
    data = render_png(MetricsBuffer())
    width, height = png_size(data)
    assert width < 400 and height < 100
    assert png_size(render_png(MetricsBuffer(), title="job 3f2a")) == (width, height)


def test_one_chart_per_tag_in_rows_of_three():
    one = png_size(render_png(filled(tags=1)))
    three = png_size(render_png(filled(tags=3)))
    four = png_size(render_png(filled(tags=4)))
    assert one == three == (720, 208)             # 9 x 2.6 inches at 80 dpi
    assert four == (720, 416)                     # a second row
    titled = filled(tags=4)
    assert png_size(render_png(titled, title="job 3f2a")) == (720, 416)
    assert render_png(titled, title="job 3f2a") != render_png(titled)


def test_updates_redraw_the_kept_figure_with_new_points():
    buffer = filled(tags=2, steps=5)
    first = render_png(buffer)
    assert render_png(buffer) == first                       # nothing new: same picture
    buffer.add([ScalarPoint("train", "tag0", 50, 2000.0, 40.0)])
    second = render_png(buffer)
    assert second != first
    assert render_png(filled(tags=2, steps=5)) == first      # a new buffer: a new figure
    buffer.add([ScalarPoint("test", "tag1", 0, 2000.0, 1.0)])  # a new run: a new layout
    third = render_png(buffer)
    assert third != second and png_size(third) == png_size(second)


def test_picture_shows_the_data():
    flat = MetricsBuffer()
    flat.add(ScalarPoint("train", "loss", s, float(s), 1.0) for s in range(50))
    steep = MetricsBuffer()
    steep.add(ScalarPoint("train", "loss", s, float(s), float(s % 7)) for s in range(50))
    assert render_png(flat) != render_png(steep)


def test_non_finite_values_are_left_out_and_the_finite_ones_drawn():
    buffer = MetricsBuffer()
    buffer.add([ScalarPoint("train", "loss", 0, 0.0, 1.0),
                ScalarPoint("train", "loss", 1, 1.0, float("nan")),
                ScalarPoint("train", "loss", 2, 2.0, float("inf")),
                ScalarPoint("train", "loss", 3, 3.0, 0.5),
                ScalarPoint("train", "only_nan", 0, 0.0, float("nan"))])
    data = render_png(buffer)
    assert png_size(data) == (720, 208)  # both tags get their chart
    legend, (loss, only_nan) = line_pixels(data, "C0", charts=2)
    assert legend > 0 and loss > 0  # the run's legend entry, and loss's two finite points
    assert only_nan == 0  # nothing to draw: an empty chart, not a crash or a line at 0


def test_100k_points_per_tag_draw_every_curve():
    """All six curves of 3 tags x 2 runs are drawn from the decimated copy (how fast is
    benchmarks/plot_update.py's goal, not a unit test's)."""
    buffer = MetricsBuffer()
    steps = np.arange(100_000)
    for tag in ("epoch_loss", "epoch_accuracy", "learning_rate"):
        for offset, run in enumerate(("train", "validation")):
            buffer.extend(run, tag, steps, np.sin(steps / 500.0) + offset)
    data = render_png(buffer)
    assert png_size(data) == (720, 208)
    for colour in ("C0", "C1"):  # train, validation
        legend, per_chart = line_pixels(data, colour, charts=3)
        assert legend > 0 and all(count > 100 for count in per_chart), (colour, per_chart)


def test_render_does_not_load_pyplot_ipython_or_tensorflow():
    code = textwrap.dedent("""
        import json, sys
        from cellship.watch.metrics import MetricsBuffer, ScalarPoint
        from cellship.watch.charts import render_png
        buffer = MetricsBuffer()
        buffer.add([ScalarPoint("train", "loss", 0, 0.0, 1.0)])
        render_png(buffer)
        heavy = ("matplotlib.pyplot", "IPython", "tensorflow", "keras")
        print(json.dumps([m for m in heavy if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_text_summary_lists_each_runs_latest_value():
    buffer = MetricsBuffer()
    assert render_text(buffer) == "waiting for metrics…"
    buffer.add([ScalarPoint("train", "epoch_loss", 2, 1.0, 0.5),
                ScalarPoint("train", "epoch_loss", 3, 2.0, 0.12344),
                ScalarPoint("validation", "epoch_loss", 3, 2.5, 0.23449),
                ScalarPoint("train", "epoch_accuracy", 3, 2.0, 0.9),
                ScalarPoint("train", "epoch_accuracy", 4, 2.0, float("nan"))])
    assert render_text(buffer) == ("epoch_accuracy: train nan (step 4)\n"
                                   "epoch_loss: train 0.1234 (step 3), validation 0.2345 (step 3)")
