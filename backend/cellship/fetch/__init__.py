"""Bringing a job's files home from where it ran: its output dir, its TensorBoard logdir
and its backup dir, through whatever streams bytes out of a replica (for Kubernetes, the
API server's exec; see :mod:`cellship.train.kubernetes.artifacts`).

:mod:`.receive` takes the in-pod sender's stream apart (cellship/inside/sender.py: files
from offsets, each ending with its size and CRC-32); :mod:`.pull` plans a copy (what is new, what
can resume), retries a broken stream and reports progress; :mod:`.progress` is the
progress line; :mod:`.mirror` keeps a running job's logdir fresh for TensorBoard.
"""

from cellship.fetch.pull import FetchError, Outcome, Puller, Root

__all__ = ["FetchError", "Outcome", "Puller", "Root"]
