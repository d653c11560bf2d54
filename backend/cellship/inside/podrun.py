"""Both ends of the wire between a batch run's pod and the machine that started it.

In the pod, ``python3 podrun.py INPUT.gz OUTPUT KERNEL CWD`` runs papermill on the
parameterised notebook and then prints the executed notebook on stdout, gzip + base64,
between two marker lines, followed by one result line (status, reason). It prints them even
when papermill fails (papermill writes the output notebook with its error banner first), so
a failed run keeps its notebook; the exit status is papermill's outcome.

Why through the log: the cluster may have no shared volume, but every cluster lets the
submitter read a pod's log. At home, :func:`parse_log` takes the log apart again and checks
the payload whole (size and SHA-256 in the begin marker), so a truncated or rotated log is
told apart from a failed run.

This file is copied verbatim into the run's ConfigMap, so it imports only the standard
library at module level (papermill lazily, in the pod) and the two ends cannot drift: the
same text encodes and decodes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

BEGIN = "=== cellship:output-notebook:begin"
END = "=== cellship:output-notebook:end ==="
RESULT = "=== cellship:result "
TAIL = " ==="
LINE_WIDTH = 76
# A payload body line: base64 alphabet only, at most LINE_WIDTH wide. Anything else between
# the markers came from elsewhere (see parse_log) and is set aside, not decoded.
PAYLOAD_LINE = re.compile(r"[A-Za-z0-9+/=]{1,%d}" % LINE_WIDTH)
# The kubelet's default containerLogMaxSize: `kubectl logs` (and cellship) only see the
# newest file once it rotates, so everything printed must fit in it.
KUBELET_LOG_LIMIT = "10 MiB"


@dataclass
class ParsedLog:
    """A pod's log taken apart: the notebook (gzip-decoded JSON bytes, or None with
    ``problem`` saying why), the pod's own result line and every other line."""

    notebook: bytes | None = None
    result: dict[str, Any] | None = None
    problem: str | None = None
    markers_seen: bool = False  # any payload marker at all (else papermill wrote none)
    lines: list[str] = field(default_factory=list)


# -- in the pod --------------------------------------------------------------------------
def describe(err: BaseException) -> str:
    """A papermill failure in one line (the run's ``error``), for local and pod runs."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        return f"cell [{err.exec_count}] raised {err.ename}: {err.evalue}".rstrip(": ")
    name = type(err).__name__
    if name == "DeadKernelError":
        return "the kernel died during the run (out of memory, or killed)"
    if name in ("CellTimeoutError", "TimeoutError"):
        return f"a cell timed out: {err}"
    return f"{name}: {err}"


def encode(notebook: bytes) -> list[str]:
    """The payload lines for ``notebook`` (its JSON bytes): begin marker, base64 of the
    gzip, end marker."""
    packed = gzip.compress(notebook, mtime=0)
    text = base64.b64encode(packed).decode()
    digest = hashlib.sha256(packed).hexdigest()
    body = [text[i:i + LINE_WIDTH] for i in range(0, len(text), LINE_WIDTH)]
    return [f"{BEGIN} bytes={len(packed)} sha256={digest}{TAIL}", *body, END]


def result_line(status: str, error: str | None) -> str:
    return RESULT + json.dumps({"status": status, "error": error}) + TAIL


def run(input_path: str, output_path: str, kernel: str, cwd: str) -> int:
    """Execute the notebook, print what comes home, return the pod's exit status."""
    import traceback

    status, error = "succeeded", None
    try:
        import papermill

        # Decompressed next to the output (not in the notebook's cwd, which is the user's).
        unpacked = os.path.join(os.path.dirname(output_path), "input.ipynb")
        for folder in {os.path.dirname(output_path), cwd}:
            os.makedirs(folder, exist_ok=True)
        with gzip.open(input_path, "rb") as source, open(unpacked, "wb") as target:
            target.write(source.read())
        # parameters=None: they were injected at home, with papermill's own functions.
        papermill.execute_notebook(unpacked, output_path, parameters=None,
                                   kernel_name=kernel, cwd=cwd, progress_bar=False,
                                   log_output=True, request_save_on_cell_execute=True)
    except KeyboardInterrupt:
        status, error = "cancelled", "stopped (cancelled, or the run's timeout passed)"
    except Exception as err:
        status, error = "failed", describe(err)
        traceback.print_exc()
    try:
        with open(output_path, "rb") as handle:
            notebook = handle.read()
    except OSError:
        notebook = None  # papermill failed before writing anything (e.g. no such kernel)
    sys.stderr.flush()
    out = sys.stdout
    if notebook is not None:
        out.write("\n".join(encode(notebook)) + "\n")
    out.write(result_line(status, error) + "\n")
    out.flush()
    return 0 if status == "succeeded" else 1


def one_stream() -> None:
    """Send stderr (ours, papermill's and the kernel's, which inherits the descriptor) down
    stdout's pipe, line-buffered.

    Why: the container runtime reads the two pipes separately and the kubelet's log keeps
    lines in arrival order, so a traceback flushed to stderr just before the payload could
    land among its lines (seen on a loaded machine). One pipe keeps the order printed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print("usage: podrun.py INPUT.ipynb.gz OUTPUT.ipynb KERNEL CWD", file=sys.stderr)
        return 2
    import logging

    one_stream()
    # papermill's log (cell outputs as they come), as its own command line does.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # The pod's PID 1 ignores SIGTERM unless it handles it: on cancel or a deadline, stop
    # papermill like Ctrl-C, so the partial notebook is still printed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(*args)


# -- at home -----------------------------------------------------------------------------
def _missing(what: str) -> str:
    return (f"The output notebook did not come back: {what}. The kubelet keeps only the "
            f"newest {KUBELET_LOG_LIMIT} of a container's log by default (containerLogMaxSize), "
            "and the notebook's printed output plus the compressed output notebook must fit "
            "in it: print less in the notebook, or ask the cluster admin to raise "
            "containerLogMaxSize.")


def _begin_fields(line: str) -> tuple[int, str] | None:
    try:
        parts = dict(p.split("=", 1) for p in line[len(BEGIN):-len(TAIL)].split())
        return int(parts["bytes"]), parts["sha256"]
    except (KeyError, ValueError):
        return None


def parse_log(lines: Iterable[str]) -> ParsedLog:
    """Take a pod's log apart. The last begin marker counts (a notebook that printed one
    itself does not confuse it); the payload is checked against its size and digest."""
    parsed = ParsedLog()
    all_lines = [line.rstrip("\r") for line in lines]
    begins = [i for i, line in enumerate(all_lines)
              if line.startswith(BEGIN) and line.endswith(TAIL)]
    start = begins[-1] if begins else None
    end = None
    if start is not None:
        end = next((i for i in range(start + 1, len(all_lines)) if all_lines[i] == END), None)
    parsed.markers_seen = start is not None or END in all_lines
    body_span = range(start + 1, len(all_lines) if end is None else end) \
        if start is not None else range(0)
    body: list[str] = []
    for i, line in enumerate(all_lines):
        if i in (start, end):
            continue
        if i in body_span and PAYLOAD_LINE.fullmatch(line):
            body.append(line)
            continue
        # Anything else, between the markers too: a line that cannot be base64 came from
        # another writer (a runtime that splits stdout and stderr); the digest judges the rest.
        if line.startswith(RESULT) and line.endswith(TAIL):
            try:
                parsed.result = json.loads(line[len(RESULT):-len(TAIL)])
                continue
            except ValueError:
                pass
        parsed.lines.append(line)
    if start is None:
        has_end = END in all_lines
        parsed.problem = _missing("the pod's log has no begin marker"
                                  + (" (only the end one: the log was rotated)" if has_end else ""))
        return parsed
    if end is None:
        parsed.problem = _missing("the pod's log stops inside the notebook (no end marker)")
        return parsed
    fields = _begin_fields(all_lines[start])
    text = "".join(body)
    try:
        packed = base64.b64decode(text, validate=True)
    except ValueError:
        parsed.problem = _missing("the notebook's base64 in the log is damaged")
        return parsed
    digest = hashlib.sha256(packed).hexdigest()
    if fields is None or fields != (len(packed), digest):
        parsed.problem = _missing("the notebook in the log is incomplete (its size or "
                                  "SHA-256 does not match the begin marker)")
        return parsed
    try:
        parsed.notebook = gzip.decompress(packed)
    except (OSError, EOFError) as err:
        parsed.problem = _missing(f"the notebook in the log does not decompress ({err})")
    return parsed


if __name__ == "__main__":
    sys.exit(main())
