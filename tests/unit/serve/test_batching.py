"""Dynamic batching with a stand-in model (no TensorFlow): batches form, results go back to
the right request, a full queue answers 503, one bad request fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cellship.errors import UsageError
from cellship.serve.batching import Batcher, BatchingConfig
from cellship.serve.errors import RequestError


class SlowDoubler:
    """Doubles its input; each call takes ``delay`` seconds and is recorded."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, tensors):
        x = tensors["x"]
        with self.lock:
            self.calls.append(len(x))
        if (x < 0).any():
            raise RequestError("negative input", 400)
        time.sleep(self.delay)
        return {"y": x * 2}


def run(coro):
    """Run ``coro`` on a fresh loop in its own thread: independent of any loop another
    test tier (Playwright's sync API, pytest-jupyter) may have running in this thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_concurrent_requests_share_model_calls_and_get_their_own_rows(executor) -> None:
    model = SlowDoubler()
    sizes: list[int] = []

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=16), executor, on_batch=sizes.append)
        results = await asyncio.gather(*[
            batcher.submit({"x": np.array([[i, i]], dtype=np.float32)}, 1) for i in range(40)])
        await batcher.close()
        return results

    results = run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], [[2 * i, 2 * i]])
    assert sum(model.calls) == 40
    assert max(model.calls) <= 16
    assert len(model.calls) < 40 and max(sizes) > 1  # batching happened
    assert sizes == model.calls


def test_multi_row_requests_are_not_split_across_calls(executor) -> None:
    model = SlowDoubler()

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=4), executor)
        results = await asyncio.gather(*[
            batcher.submit({"x": np.full((3, 1), i, dtype=np.float32)}, 3) for i in range(6)])
        await batcher.close()
        return results

    results = run(main())
    assert all(r["y"].shape == (3, 1) and (r["y"] == 2 * i).all() for i, r in enumerate(results))
    assert all(c == 3 for c in model.calls)  # 3 + 3 > 4: each request runs alone


def test_max_wait_gathers_requests_that_arrive_close_together(executor) -> None:
    model = SlowDoubler(delay=0.0)

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=8, max_wait_ms=200), executor)

        async def later(i: int):
            await asyncio.sleep(0.01 * i)
            return await batcher.submit({"x": np.array([[i]], dtype=np.float32)}, 1)

        await asyncio.gather(*[later(i) for i in range(4)])
        await batcher.close()

    run(main())
    assert model.calls == [4]


def test_a_full_queue_is_refused_with_503_and_nothing_is_dropped(executor) -> None:
    model = SlowDoubler(delay=0.05)

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=2, max_queue_rows=4), executor,
                          label="model m version 1")
        outcomes = await asyncio.gather(*[
            batcher.submit({"x": np.array([[i]], dtype=np.float32)}, 1) for i in range(30)],
            return_exceptions=True)
        await batcher.close()
        return outcomes

    outcomes = run(main())
    refused = [o for o in outcomes if isinstance(o, RequestError)]
    answered = [o for o in outcomes if isinstance(o, dict)]
    assert len(refused) + len(answered) == 30  # every request got an answer
    assert refused and answered
    assert all(e.status == 503 and "overloaded" in str(e) and "--max-queue 4" in str(e)
               for e in refused)


def test_one_bad_request_in_a_batch_fails_alone(executor) -> None:
    model = SlowDoubler()

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=8), executor)
        values = [1, 2, -3, 4, 5, 6]
        outcomes = await asyncio.gather(*[
            batcher.submit({"x": np.array([[v]], dtype=np.float32)}, 1) for v in values],
            return_exceptions=True)
        await batcher.close()
        return values, outcomes

    values, outcomes = run(main())
    for value, outcome in zip(values, outcomes):
        if value < 0:
            assert isinstance(outcome, RequestError) and outcome.status == 400
        else:
            assert outcome["y"][0, 0] == 2 * value


def test_outputs_that_do_not_follow_the_rows_are_an_error_not_a_wrong_answer(executor) -> None:
    async def main():
        batcher = Batcher(lambda t: {"y": np.zeros(3)}, BatchingConfig(), executor)
        with pytest.raises(RequestError, match="cannot be batched"):
            await batcher.submit({"x": np.zeros((1, 1))}, 1)
        await batcher.close()

    run(main())


def test_close_answers_what_was_queued(executor) -> None:
    model = SlowDoubler(delay=0.02)

    async def main():
        batcher = Batcher(model, BatchingConfig(max_batch_size=1), executor)
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.array([[i]], dtype=np.float32)}, 1))
                 for i in range(5)]
        await asyncio.sleep(0)
        await batcher.close()
        with pytest.raises(RequestError, match="unloaded"):
            await batcher.submit({"x": np.zeros((1, 1), dtype=np.float32)}, 1)
        return await asyncio.gather(*tasks)

    assert len(run(main())) == 5


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_wait_ms": -1},
                                    {"max_queue_rows": 2, "max_batch_size": 8},
                                    {"batch_threads": 0}])
def test_config_is_checked(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        BatchingConfig(**kwargs)


def test_allowed_batch_sizes_pad_each_call_and_drop_the_padding(executor) -> None:
    model = SlowDoubler(delay=0.0)
    sizes: list[int] = []

    async def main():
        config = BatchingConfig(max_batch_size=8, max_wait_ms=50, allowed_batch_sizes=(4, 8))
        batcher = Batcher(model, config, executor, on_batch=sizes.append)
        one = await batcher.submit({"x": np.array([[5.0]], dtype=np.float32)}, 1)
        many = await asyncio.gather(*[batcher.submit({"x": np.array([[i]], dtype=np.float32)}, 1)
                                      for i in range(6)])
        await batcher.close()
        return one, many

    one, many = run(main())
    assert one["y"].tolist() == [[10.0]]  # one row back, not four
    assert [r["y"].tolist() for r in many] == [[[2.0 * i]] for i in range(6)]
    assert model.calls[0] == 4 and all(n in (4, 8) for n in model.calls), model.calls
    assert sizes == model.calls  # the metric counts the rows the model really ran
