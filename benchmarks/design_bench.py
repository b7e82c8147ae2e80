"""Design-time evaluation speed, written as JSON (Korol et al., Sec. II-A.3/4; README, "Benchmarks").

For each model (random-init weights with random BatchNorm statistics: the cost of a configuration does not
depend on training), on the first ``--images`` Fashion-MNIST validation images, side by side in one run:

(a) backends: images per second of the gated network at full depth for PyTorch eager (NCHW and
    channels-last, at batches of 500 and of ``--batch``, the design-time default), for the network as
    the design-time commands run it (batch norm folded, bias/ReLU/residual add fused into the
    convolutions: :func:`edgeskip.design.config_eval.prepare_for_evaluation`), and for the IREE-compiled
    gated module (generic path, local-task, batch 500), so that the design-time engine uses the fastest;
    measured in alternating rounds;
(b) per configuration, the seconds of the naive per-mask loop on the unprepared network (what evaluating
    each mask alone costs), of the same loop on the prepared network, and of the prefix-sharing engine on
    it, for the masks of a sensitivity analysis (no-skip and "skip block i"), of the Pareto candidates
    (skip the N first blocks of a ranking, N = 0..B_s) and of Figure 1 (``--draws`` random masks per N);
    the engine and the loop on the prepared network give identical accuracies, which the JSON records as
    checked; and the engine on a bfloat16 copy (``--selection-precision bf16``): its seconds and how many
    points its accuracies moved against float32.

    nice -n 5 python benchmarks/design_bench.py --models resnet20,resnet110 --out docs/results/design_bench.json
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.module import load_function, to_numpy
from edgeskip_runtime.stats import time_round_robin
from torch import nn

from edgeskip.accuracy import evaluate
from edgeskip.compile.export import export_gated
from edgeskip.compile.iree import CompileLog, compile_onnx
from edgeskip.data import load_dataset
from edgeskip.data.base import ImageSet, iterate_batches
from edgeskip.design.config_eval import DEFAULT_BATCH, DEFAULT_MEMORY_FORMAT, prepare_for_evaluation
from edgeskip.design.prefix_engine import PrefixSharingEngine
from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.targets import get_target

Mask = tuple[int, ...]


def random_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, in_channels=1).eval()
    with torch.no_grad():  # as a trained network: skipping a block changes the logits
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def workloads(n: int, draws: int) -> dict[str, list[Mask]]:
    rng = random.Random(0)
    order = rng.sample(range(n), n)
    return {
        "sensitivity": [tuple([1] * n)] + [tuple(int(j != i) for j in range(n)) for i in range(n)],
        "pareto_candidates": [tuple(int(j not in order[:k]) for j in range(n)) for k in range(n + 1)],
        "figure1": [tuple(int(j not in s) for j in range(n)) for k in range(n + 1)
                    for s in (set(rng.sample(range(n), k)) for _ in range(draws))],
    }


def backends(model: nn.Module, x: torch.Tensor, batch: int, rounds: int, work: Path) -> dict[str, Any]:
    """Images per second at full depth on the 500 images ``x``: PyTorch NCHW and channels-last in batches of
    500 and of ``batch``, and the IREE module compiled for batch 500 (local-task)."""
    gated = GatedModel(model).eval()
    gated_cl = GatedModel(model).eval().to(memory_format=torch.channels_last)
    prepared = prepare_for_evaluation(GatedModel(model)).to(memory_format=torch.channels_last)
    prepared_bf16 = copy.deepcopy(prepared).to(torch.bfloat16)
    on = torch.ones(gated.num_gates, dtype=torch.int64)
    proto, b_s = export_gated(model, list(x.shape[1:]), batch_size=len(x))
    t = time.perf_counter()
    compile_onnx(proto, get_target("host"), work / "model.vmfb", work, b_s, log=CompileLog())
    compile_s = time.perf_counter() - t
    _, fn = load_function(work / "model.vmfb", "main_graph", driver="local-task")
    xn, onn, xcl = x.numpy(), on.numpy(), x.contiguous(memory_format=torch.channels_last)

    def batched(net: nn.Module, images: torch.Tensor) -> Callable[[], Any]:
        return lambda: [net(images[i : i + batch], on) for i in range(0, len(images), batch)]

    calls: dict[str, Callable[[], Any]] = {
        f"torch_nchw_batch{len(x)}": lambda: gated(x, on),
        f"torch_channels_last_batch{len(x)}": lambda: gated_cl(xcl, on),
        f"torch_nchw_batch{batch}": batched(gated, x),
        f"torch_channels_last_batch{batch}": batched(gated_cl, xcl),
        f"torch_prepared_channels_last_batch{batch}": batched(prepared, xcl),
        f"torch_prepared_bf16_channels_last_batch{batch}": batched(prepared_bf16, xcl.to(torch.bfloat16)),
        f"iree_local_task_batch{len(x)}": lambda: to_numpy(fn(xn, onn)),
    }
    seconds = dict(zip(calls, time_round_robin(list(calls.values()), repeats=rounds, warmup=1), strict=True))
    med = {k: statistics.median(v) / 1e3 for k, v in seconds.items()}
    base = f"torch_nchw_batch{len(x)}"
    return {"images": len(x), "rounds": rounds, "iree_compile_s": round(compile_s, 1),
            "images_per_s": {k: round(len(x) / v, 1) for k, v in med.items()},
            f"over_{base}": {k: round(med[base] / v, 3) for k, v in med.items()}}


def per_config(model: nn.Module, masks: list[Mask], images: ImageSet, normalization, batch: int,
               memory_format: torch.memory_format) -> dict[str, Any]:
    unique = sorted(set(masks))

    def naive_loop(gated: GatedModel) -> tuple[dict[Mask, Any], float]:
        t = time.perf_counter()
        out = {m: evaluate(lambda x, m=m: gated(x, torch.tensor(m)), images, normalization, batch_size=batch,
                           memory_format=memory_format) for m in unique}
        return out, time.perf_counter() - t

    _, plain_s = naive_loop(GatedModel(model).eval().to(memory_format=memory_format))
    prepared = prepare_for_evaluation(GatedModel(model)).to(memory_format=memory_format)
    naive, naive_s = naive_loop(prepared)
    engine = PrefixSharingEngine(prepared, memory_format=memory_format)
    t = time.perf_counter()
    shared = engine.evaluate(unique, images, normalization, batch_size=batch)
    engine_s = time.perf_counter() - t
    # The selection precision bf16 (validation passes): its time, and how far its accuracies move.
    engine_bf16 = PrefixSharingEngine(copy.deepcopy(prepared).to(torch.bfloat16), memory_format=memory_format,
                                      dtype=torch.bfloat16)
    t = time.perf_counter()
    low = engine_bf16.evaluate(unique, images, normalization, batch_size=batch)
    bf16_s = time.perf_counter() - t
    moved = [abs(low[m].accuracy - shared[m].accuracy) * 100 for m in unique]
    return {"configs": len(unique), "naive_unprepared_s_per_config": round(plain_s / len(unique), 4),
            "naive_s_per_config": round(naive_s / len(unique), 4),
            "engine_s_per_config": round(engine_s / len(unique), 4), "speedup": round(naive_s / engine_s, 2),
            "speedup_over_unprepared": round(plain_s / engine_s, 2),
            "engine_bf16_s_per_config": round(bf16_s / len(unique), 4), "bf16_over_fp32": round(engine_s / bf16_s, 2),
            "bf16_accuracy_moved_points": {"mean": round(statistics.fmean(moved), 3), "max": round(max(moved), 3)},
            "identical": shared == naive, "engine_peak_mb": round(engine.peak_bytes / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet20,resnet110")
    parser.add_argument("--images", type=int, default=1000, help="validation images per evaluation")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="evaluation batch (the design default)")
    parser.add_argument("--draws", type=int, default=2, help="Figure-1 random masks per N")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of the backend comparison")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/design_bench.json"))
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    images = ImageSet(data.val.images[: args.images], data.val.labels[: args.images])
    x, _ = next(iterate_batches(images, data.normalization, 500))
    results = []
    for name in args.models.split(","):
        model = random_model(name)
        with tempfile.TemporaryDirectory() as tmp:
            speed = backends(model, x, args.batch, args.rounds, Path(tmp))
        fmt = DEFAULT_MEMORY_FORMAT  # what the design-time commands use; the backends entry says why
        entry: dict[str, Any] = {"model": name, "skippable_blocks": GatedModel(model).num_gates,
                                 "backends": speed, "memory_format": str(fmt).removeprefix("torch.")}
        for label, masks in workloads(entry["skippable_blocks"], args.draws).items():
            entry[label] = per_config(model, masks, images, data.normalization, args.batch, fmt)
            print(f"{name} {label}: {entry[label]}", flush=True)
        results.append(entry)
    doc = {"schema": "edgeskip.design_bench/1", "machine": platform.machine(), "processor": platform.processor(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "images": args.images,
           "batch": args.batch, "draws": args.draws, "numpy": np.__version__, "models": results}
    write_json(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
