"""Watching jobs: logs, live metrics, charts and TensorBoard.

- :mod:`.logstream`   log lines of every replica, followed, merged and cleaned of TF noise
- :mod:`.metrics`     the live scalar buffer (the relay's reader side)
- :mod:`.charts`      loss/accuracy charts from the buffer (matplotlib, lazily)
- :mod:`.tensorboard` TensorBoard servers per job: start, reuse, stop
- :mod:`.follow`      follow a job or batch while Ctrl-C cancels it (CLI and magics share it)

Rules: never imports IPython, :mod:`cellship.cli` or :mod:`cellship.jupyter`; the live
view's widget lives with the magics (``cellship_magics``), over this package.
"""
