"""Interrupting child processes the way a terminal's Ctrl-C does, however the test run began.

A process started with SIGINT ignored (``nohup cmd &``, some CI runners) passes the
ignored disposition on through fork and exec, and Python then installs no KeyboardInterrupt
handler: a child sent SIGINT would go on running. Tests that send SIGINT start the child
with ``preexec_fn=sigint_default``.
"""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """``preexec_fn``: SIGINT back to its default in the child, before it execs, so Python
    there turns it into KeyboardInterrupt as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
