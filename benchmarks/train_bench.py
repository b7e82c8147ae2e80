"""Training and evaluation throughput on this machine (images/s), written as JSON.

Variants are measured round-robin in one run, so the ratios compare like with like on a
noisy machine: stochastic-depth vs standard training (SD skips dropped blocks, Sec. I-A),
channels-last vs contiguous, and gated vs plain evaluation (the gates are weightless).

    python benchmarks/train_bench.py --out runs/bench/train_bench.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from edgeskip_runtime.atomic import write_json
from torch import nn

from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.training.recipes import RECIPES, RecipeOptions


def train_step_fn(model_name: str, recipe: str, channels_last: bool, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(model_name, in_channels=1)
    RECIPES.get(recipe)(model, RecipeOptions(p_last=0.5), torch.Generator().manual_seed(0))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 1, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def eval_fn(model_name: str, gated: bool, batch: int) -> Callable[[], None]:
    model = create_model(model_name, in_channels=1).eval()
    x = torch.randn(batch, 1, 32, 32)
    if not gated:
        return lambda: model(x)
    g = GatedModel(model).eval()
    cfg = torch.ones(g.num_gates, dtype=torch.int64)
    return lambda: g(x, cfg)


def round_robin(fns: dict[str, Callable[[], None]], rounds: int, reps: int) -> dict[str, float]:
    """Median seconds per call of each function, measured interleaved."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm-up
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            times[k].append((time.perf_counter() - t0) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=Path("runs/bench/train_bench.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train_fns = {f"{r}{'-channels-last' if cl else ''}": train_step_fn(args.model, r, cl, args.batch)
                 for r in ("standard", "stochastic-depth") for cl in (False, True)}
    t = round_robin(train_fns, args.rounds, reps=3)
    train_ips = {k: args.batch / v for k, v in t.items()}
    with torch.no_grad():
        e = round_robin({"plain": eval_fn(args.model, False, args.eval_batch),
                         "gated-all-on": eval_fn(args.model, True, args.eval_batch)}, args.rounds, reps=1)
    eval_ips = {k: args.eval_batch / v for k, v in e.items()}
    result = {
        "benchmark": "edgeskip.train_bench/1",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__},
        "model": args.model, "batch": args.batch, "eval_batch": args.eval_batch, "rounds": args.rounds,
        "train_images_per_s": train_ips,
        "eval_images_per_s": eval_ips,
        "ratios": {
            "sd_over_standard_train": train_ips["stochastic-depth-channels-last"] / train_ips["standard-channels-last"],
            "channels_last_over_contiguous_train": train_ips["standard-channels-last"] / train_ips["standard"],
            "gated_over_plain_eval": eval_ips["gated-all-on"] / eval_ips["plain"],
        },
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    for k, v in {**train_ips}.items():
        print(f"train {k:32s} {v:8.0f} img/s")
    for k, v in eval_ips.items():
        print(f"eval  {k:32s} {v:8.0f} img/s")
    for k, v in result["ratios"].items():
        print(f"{k:40s} {v:.3f}")


if __name__ == "__main__":
    main()
