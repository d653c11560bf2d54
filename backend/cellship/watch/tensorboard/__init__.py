"""Real TensorBoard servers over jobs' logdirs: start, reuse, stop, and never leak them.

How a server is made (why each piece is there):

- The real ``tensorboard`` runs as a child process, in its own process group, so one
  ``killpg`` also ends the Rust data server it starts. With ``parent_bound`` it also gets
  PR_SET_PDEATHSIG: a kernel killed with SIGKILL takes its servers with it, and an
  ``atexit`` hook stops them on an ordinary exit.
- Several jobs are shown side by side as named runs (``digits/train``, ``mnist/train``).
  Instead of ``--logdir_spec name:dir,...`` (which makes TensorBoard fall back to its slow
  Python-only loader: no data server, "some features may not work"), each server gets a
  symlink tree ``NAME -> job logdir`` and plain ``--logdir TREE``, the layout TensorBoard's
  own help recommends. A logdir that does not exist yet is a dangling link that TensorBoard
  picks up once the job creates it.
- A JSON registry under ``cellship home/tensorboard/servers.json`` (guarded by ``flock``)
  records every server, so a second ``%job ID tensorboard`` reuses the first server, and
  servers whose process or owner died are cleaned up by whoever looks next.

- :mod:`.server`     the server record, run names and logdirs it may show
- :mod:`.processes`  which processes are our TensorBoards; stopping their process groups
- :mod:`.registry`   ``servers.json``: who runs where, and cleaning up after the dead
- :mod:`.launch`     starting and stopping servers
- :mod:`.jobs`       servers over jobs: what ``%job ID tensorboard`` and ``cellship
  tensorboard`` call

Rules: imports neither IPython nor TensorFlow (TensorBoard runs as a child process); the
magic and the CLI are thin layers over :func:`open_tensorboard`. Always import it as
``cellship.watch.tensorboard``: the directory is named like the real ``tensorboard``
package, so never put ``cellship/watch`` itself on ``sys.path``.
"""

from __future__ import annotations

from cellship.watch.tensorboard.jobs import job_logdirs, open_tensorboard
from cellship.watch.tensorboard.launch import start, stop, stop_all, tensorboard_command
from cellship.watch.tensorboard.registry import is_alive, log_tail, running
from cellship.watch.tensorboard.server import TensorBoardServer, normalize_run_name

__all__ = ["TensorBoardServer", "start", "stop", "stop_all", "running", "open_tensorboard",
           "job_logdirs", "normalize_run_name", "tensorboard_command", "is_alive", "log_tail"]
