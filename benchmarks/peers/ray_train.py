"""Ray Train's launch of the training program for benchmarks/peers/training.py, run in the Ray
peer venv (benchmarks/peers/setup.sh), never in the project's .venv:

    RAY_VENV/bin/python benchmarks/peers/ray_train.py PROGRAM.py

It does what Ray Train's TensorFlow guide does: a local Ray instance, a TensorflowTrainer
with ScalingConfig(num_workers=2) whose train_loop_per_worker runs the program (Ray writes
TF_CONFIG for each worker, the program builds its own MultiWorkerMirroredStrategy). The
program itself writes its first-step time and steps/s; this script prints when ray.init
returned and when fit() was called, so the report can split Ray's own start-up from the
trainer's.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("program", help="the training program (the same file the other launches run)")
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs for the local Ray instance")
    args = parser.parse_args()
    source = open(args.program).read()

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    ray.init(num_cpus=args.cpus, include_dashboard=False)
    print(f"RAY_INIT_DONE {time.time():.6f}", flush=True)

    def train_loop_per_worker() -> None:
        exec(compile(source, args.program, "exec"), {"__name__": "__main__"})

    trainer = TensorflowTrainer(
        train_loop_per_worker,
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="peers-bench", storage_path=tempfile.mkdtemp(prefix="ray-results-")),
    )
    print(f"FIT_CALLED {time.time():.6f}", flush=True)
    trainer.fit()
    print(f"FIT_DONE {time.time():.6f}", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
