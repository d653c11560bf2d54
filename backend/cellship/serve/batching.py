"""Dynamic batching: concurrent requests to one signature become one model call.

Why: a model call has a fixed cost (Python -> TensorFlow dispatch, kernel launches) that
dwarfs the per-row cost of small models, so sixty-four requests answered by one call of
batch 64 cost little more than one request alone. The batcher gathers queued requests up
to ``max_batch_size`` rows, waiting at most ``max_wait_ms`` after the first one, runs one
call on a worker thread (TensorFlow releases the GIL, so the event loop keeps parsing the
next requests meanwhile), and splits the outputs back by row. While a call runs, new
requests queue up, so under load batches fill by themselves without any waiting.

No request is ever dropped silently: the queue is bounded in rows, and a request that
would overflow it is refused at once with 503 and the reason; a call that fails with
several requests in it is retried one request at a time, so each gets its own answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from cellship.serve.errors import RequestError

Tensors = Mapping[str, np.ndarray]
RunFn = Callable[[Tensors], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingConfig:
    """TF Serving's batching knobs, by the names its users know them."""

    max_batch_size: int = 64  # rows per model call
    max_wait_ms: float = 0.5  # how long the first queued request waits for company
    max_queue_rows: int = 8192  # rows waiting before requests are refused with 503
    batch_threads: int = 1  # model calls in flight at once per signature
    # TF Serving's allowed_batch_sizes: a batch is padded up to the next of these (so a model
    # compiled for fixed shapes, or an accelerator, sees only these sizes); () pads nothing.
    allowed_batch_sizes: tuple[int, ...] = ()

    @classmethod
    def from_tf_serving(cls, *, max_batch_size: int | None = None,
                        batch_timeout_micros: int | None = None,
                        max_enqueued_batches: int | None = None,
                        num_batch_threads: int | None = None,
                        allowed_batch_sizes: tuple[int, ...] | list[int] = ()) -> "BatchingConfig":
        """The knobs under TF Serving's names (its batching parameters file, its docs):
        ``max_enqueued_batches`` is counted in batches there, in rows here."""
        base = cls()
        size = max_batch_size if max_batch_size is not None else base.max_batch_size
        return cls(max_batch_size=size,
                   max_wait_ms=(batch_timeout_micros / 1000.0 if batch_timeout_micros is not None
                                else base.max_wait_ms),
                   max_queue_rows=(max_enqueued_batches * size if max_enqueued_batches is not None
                                   else max(base.max_queue_rows, size)),
                   batch_threads=num_batch_threads if num_batch_threads is not None else base.batch_threads,
                   allowed_batch_sizes=tuple(int(n) for n in allowed_batch_sizes))

    def padded(self, rows: int) -> int:
        """The rows a batch of ``rows`` is padded to (itself when no allowed size fits)."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def __post_init__(self) -> None:
        from cellship.errors import UsageError

        allowed = self.allowed_batch_sizes
        if allowed:
            if any(n < 1 for n in allowed) or list(allowed) != sorted(set(allowed)):
                raise UsageError(f"allowed_batch_sizes must be increasing positive numbers, got "
                                 f"{list(allowed)}.")
            if allowed[-1] != self.max_batch_size:
                raise UsageError(f"The last of allowed_batch_sizes ({allowed[-1]}) must equal "
                                 f"max_batch_size ({self.max_batch_size}), as in TF Serving.")

        if self.max_batch_size < 1:
            raise UsageError(f"--max-batch-size must be >= 1, got {self.max_batch_size}.")
        if self.max_wait_ms < 0:
            raise UsageError(f"--batch-timeout-ms must be >= 0, got {self.max_wait_ms}.")
        if self.max_queue_rows < self.max_batch_size:
            raise UsageError(f"--max-queue ({self.max_queue_rows}) must be at least "
                             f"--max-batch-size ({self.max_batch_size}).")
        if self.batch_threads < 1:
            raise UsageError(f"--batch-threads must be >= 1, got {self.batch_threads}.")


class _Item:
    __slots__ = ("tensors", "rows", "future", "queued")

    def __init__(self, tensors: Tensors, rows: int, future: asyncio.Future) -> None:
        self.tensors = tensors
        self.rows = rows
        self.future = future
        self.queued = time.monotonic()


class Batcher:
    """Queue + worker tasks for one signature of one model version."""

    def __init__(self, run: RunFn, config: BatchingConfig, executor: Executor, *,
                 label: str = "model", on_batch: Callable[[int], None] | None = None) -> None:
        self._run = run
        self._config = config
        self._executor = executor
        self._label = label
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._closed = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._workers = [loop.create_task(self._work()) for _ in range(self._config.batch_threads)]

    async def submit(self, tensors: Tensors, rows: int) -> dict[str, np.ndarray]:
        """The outputs for these rows (a request's share of one batched call)."""
        if self._closed:
            raise RequestError(f"{self._label} is being unloaded; retry the request.", 503)
        if not self._workers:
            self._start()
        if self._queued_rows + rows > self._config.max_queue_rows and self._queued_rows:
            raise RequestError(
                f"Server overloaded: {self._queued_rows} rows are already queued for "
                f"{self._label} (the limit is --max-queue {self._config.max_queue_rows}); "
                "retry later, or raise the limit.", 503)
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(tensors, rows, future))
        self._queued_rows += rows
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def _work(self) -> None:
        assert self._wakeup is not None
        config = self._config
        wait_s = config.max_wait_ms / 1000.0
        while True:
            while not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            deadline = batch[0].queued + wait_s
            while rows < config.max_batch_size:
                if self._queue:
                    if rows + self._queue[0].rows > config.max_batch_size:
                        break
                    item = self._queue.popleft()
                    batch.append(item)
                    rows += item.rows
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
            self._queued_rows -= rows
            live = [item for item in batch if not item.future.done()]  # cancelled clients
            if live:
                await self._call(live)

    async def _call(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except Exception as err:
            if len(batch) > 1:  # find whose request it was: run each alone
                for item in batch:
                    await self._call([item])
                return
            _resolve(batch[0].future, error=err)
            return
        for item, result in zip(batch, results):
            _resolve(item.future, result=result)

    def _run_batch(self, batch: list[_Item]) -> list[dict[str, np.ndarray]]:
        """On a worker thread: one model call for the whole batch, outputs split by row.
        With allowed batch sizes the batch is padded with copies of its first row, and the
        padding's outputs are dropped."""
        total = sum(item.rows for item in batch)
        padded = self._config.padded(total)
        if len(batch) == 1 and padded == total:
            outputs = self._run(batch[0].tensors)
            _check_rows(outputs, batch[0].rows)
            if self._on_batch:
                self._on_batch(batch[0].rows)
            return [outputs]
        names = list(batch[0].tensors)
        joined = {name: np.concatenate([item.tensors[name] for item in batch]
                                       + _padding(batch[0].tensors[name], padded - total))
                  for name in names}
        outputs = self._run(joined)
        _check_rows(outputs, padded)
        if self._on_batch:
            self._on_batch(padded)
        split: list[dict[str, np.ndarray]] = []
        start = 0
        for item in batch:
            end = start + item.rows
            split.append({name: value[start:end] for name, value in outputs.items()})
            start = end
        return split

    async def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:  # only if a worker died: never leave a client hanging
            item = self._queue.popleft()
            _resolve(item.future, error=RequestError(f"{self._label} was unloaded; retry.", 503))


def _padding(value: np.ndarray, rows: int) -> list[np.ndarray]:
    if rows <= 0 or len(value) == 0:
        return []
    return [np.repeat(value[:1], rows, axis=0)]


def _check_rows(outputs: Mapping[str, np.ndarray], rows: int) -> None:
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != rows:
            raise RequestError(f"output {name!r} has shape {list(value.shape)}, which does not "
                               f"follow the {rows} input rows; this signature cannot be "
                               "batched.", 500)


def _resolve(future: asyncio.Future, result: object = None,
             error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
