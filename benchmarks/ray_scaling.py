"""The design-time sweep on Ray, 1 and 2 workers against the local engine, written as JSON (README, "The design
space on Ray"; Korol et al., Fig. 3, Steps 2-4).

For a checkpoint (default: the shipped stochastic-depth ResNet-20), the validation accuracies of every one of its
2^B_s skip configurations on the first ``--limit`` validation images, side by side in one run:

(a) the local design-time engine (prefix sharing, all of this machine's torch threads);
(b) a local Ray with 1 worker, then with 2 workers (one CPU and one torch thread each), each sweep on fresh
    actors; the start-up (Ray, actors loading the checkpoint and the data) is timed apart from the sweep.

Every run's accuracies are checked equal to (a)'s. Ratios are sweep seconds against the 1-worker sweep and against
the local engine. ``--rounds`` repeats the three sweeps in alternation; the JSON keeps every round and the medians.

    python benchmarks/ray_scaling.py --out docs/results/ray_scaling.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import ray
import torch
from edgeskip_runtime.atomic import write_json

from edgeskip.design.config_eval import all_masks
from edgeskip.design.ray_pool import RayEvaluatorPool
from edgeskip.design.workflow import DataOptions, open_session

SHIPPED = Path(__file__).resolve().parents[1] / "edgeskip" / "assets" / "resnet20-fashion-mnist-sd.pt"


def local_sweep(checkpoint: Path, options: DataOptions, masks: list[tuple[int, ...]]) -> tuple[float, dict]:
    evaluator = open_session(checkpoint, options).evaluator
    t0 = time.perf_counter()
    evaluator.prefetch(masks, "val", progress=False)
    return time.perf_counter() - t0, {m: evaluator.accuracy(m, "val") for m in masks}


def ray_sweep(checkpoint: Path, options: DataOptions, masks: list[tuple[int, ...]],
              workers: int) -> tuple[float, float, dict]:
    t0 = time.perf_counter()
    pool = RayEvaluatorPool("local", checkpoint, options, workers)
    ray.get([a.evaluate.remote([masks[0]], "val") for a in pool.actors])  # every actor built and warm
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = pool.evaluate(masks, "val", progress=False)
    sweep = time.perf_counter() - t0
    pool.close()
    return startup, sweep, {m: e.accuracy for m, e in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED)
    parser.add_argument("--limit", type=int, default=2000, help="validation images per configuration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    options = DataOptions(limit=args.limit, selection_precision="fp32")
    n = open_session(args.checkpoint, options).evaluator.num_blocks
    masks = [m.mask for m in all_masks(n)]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        local_s, reference = local_sweep(args.checkpoint, options, masks)
        row: dict[str, Any] = {"round": r + 1, "local_engine_s": local_s}
        for workers in (1, 2):
            startup, sweep, accuracies = ray_sweep(args.checkpoint, options, masks, workers)
            if accuracies != reference:
                raise SystemExit(f"Ray with {workers} worker(s) computed other accuracies than the local run")
            row[f"ray_{workers}_startup_s"], row[f"ray_{workers}_sweep_s"] = startup, sweep
        rounds.append(row)
        print(row)
    ray.shutdown()

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rounds)

    doc = {
        "schema": "edgeskip.ray_scaling/1",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch_threads_local": torch.get_num_threads(), "ray": ray.__version__},
        "checkpoint": str(args.checkpoint), "skippable_blocks": n, "configurations": len(masks),
        "val_images": args.limit, "precision": "fp32", "accuracies_equal_local": True,
        "rounds": rounds,
        "median_s": {"local_engine": median("local_engine_s"), "ray_1_sweep": median("ray_1_sweep_s"),
                     "ray_2_sweep": median("ray_2_sweep_s"), "ray_1_startup": median("ray_1_startup_s"),
                     "ray_2_startup": median("ray_2_startup_s")},
        "speedup_2_workers_over_1": median("ray_1_sweep_s") / median("ray_2_sweep_s"),
        "ray_2_workers_over_local_engine": median("local_engine_s") / median("ray_2_sweep_s"),
        "limits": ("2 cores: 2 workers use the whole machine, as the local engine does with its 2 torch threads, so "
                   "Ray cannot beat the local engine here; the gain from 1 to 2 workers is what a cluster multiplies. "
                   "Each Ray task shares prefixes only within its chunk of sorted masks (4 chunks per worker), so "
                   "it repeats some work the single local engine shares."),
    }
    write_json(args.out, doc)
    print(f"wrote {args.out}: 2 workers {doc['speedup_2_workers_over_1']:.2f}x 1 worker; "
          f"{doc['ray_2_workers_over_local_engine']:.2f}x the local engine")


if __name__ == "__main__":
    main()
