"""Sensitivity analysis: rank skippable blocks by importance (Korol et al., Sec. II-A.3).

The paper's ranker (``sensitivity``) skips each block alone and measures validation
accuracy; the block whose removal costs least is skipped first. Other rankers, registered
beside it: ``l2`` (norm of the block's weights; the paper's footnote 1 found it worse),
``random`` (seeded; a baseline), and ``greedy``, which goes beyond the paper by re-ranking
the remaining blocks after each removal, at O(B_s^2) evaluations instead of O(B_s).

Output format ``edgeskip.sensitivity/1``::

    {"schema", "model", "dataset", "split": "val", "n_samples", "ranker", "seed",
     "skippable_blocks": B_s, "block_names": [...], "baseline_accuracy",
     "per_block": [{"index", "name", "accuracy_skipped", "accuracy_drop"}],
     "order": [block indices, least important first]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from edgeskip_runtime.registry import Registry

from edgeskip.design.config_eval import ConfigEvaluator
from edgeskip.gating import SkipConfig
from edgeskip.progress import progress_bar

SCHEMA = "edgeskip.sensitivity/1"


@dataclass
class RankContext:
    evaluator: ConfigEvaluator
    single_skip_accuracy: list[float]  # validation accuracy with block i skipped alone
    seed: int
    tick: Callable[[], None]  # advance the progress bar by one evaluation


Ranker = Callable[[RankContext], list[int]]
RANKERS: Registry[Ranker] = Registry("ranker")


@RANKERS.register("sensitivity")
def rank_by_sensitivity(ctx: RankContext) -> list[int]:
    """Least accuracy lost when skipped alone comes first (ties: earlier block first)."""
    acc = ctx.single_skip_accuracy
    return sorted(range(len(acc)), key=lambda i: (-acc[i], i))


@RANKERS.register("l2")
def rank_by_l2(ctx: RankContext) -> list[int]:
    """Smallest L2 norm of the block's weights first."""
    norms = []
    for gate_name in ctx.evaluator.gated.block_names:
        block = ctx.evaluator.gated.model.get_submodule(gate_name).block
        norms.append(float(torch.sqrt(sum((p.detach() ** 2).sum() for p in block.parameters()))))
    return sorted(range(len(norms)), key=lambda i: (norms[i], i))


@RANKERS.register("random")
def rank_randomly(ctx: RankContext) -> list[int]:
    return torch.randperm(ctx.evaluator.num_blocks, generator=torch.Generator().manual_seed(ctx.seed)).tolist()


@RANKERS.register("greedy")
def rank_greedily(ctx: RankContext) -> list[int]:
    """After each removal, skip next the block whose removal keeps accuracy highest."""
    n = ctx.evaluator.num_blocks
    skipped: list[int] = []
    while len(skipped) < n:
        best, best_acc = -1, -1.0
        left = [i for i in range(n) if i not in skipped]
        ctx.evaluator.prefetch([SkipConfig.skipping(n, [*skipped, i]) for i in left], "val", progress=False)
        for i in range(n):
            if i in skipped:
                continue
            acc = ctx.evaluator.accuracy(SkipConfig.skipping(n, [*skipped, i]))
            ctx.tick()
            if acc > best_acc:
                best, best_acc = i, acc
        skipped.append(best)
    return skipped


def run_sensitivity(evaluator: ConfigEvaluator, *, ranker: str = "sensitivity", seed: int = 0,
                    progress: bool = True) -> dict[str, Any]:
    """Rank the blocks and return the ``edgeskip.sensitivity/1`` document (without model/dataset)."""
    rank = RANKERS.get(ranker)
    n = evaluator.num_blocks
    evaluator.prefetch([SkipConfig.all_on(n), *(SkipConfig.skipping(n, [i]) for i in range(n))], "val",
                       label="sensitivity", progress=progress)
    baseline = evaluator.accuracy(SkipConfig.all_on(n))
    single = [evaluator.accuracy(SkipConfig.skipping(n, [i])) for i in range(n)]  # prefetched: no work left
    # Only the greedy ranker evaluates more (n (n + 1) / 2 masks, round by round): it gets a bar of its own.
    with progress_bar(progress and ranker == "greedy") as bar:
        task = bar.add_task(f"ranking ({ranker})", total=n * (n + 1) // 2, info="")
        order = rank(RankContext(evaluator, single, seed, lambda: bar.advance(task)))
    if sorted(order) != list(range(n)):
        raise RuntimeError(f"ranker {ranker!r} returned {order}, not a permutation of 0..{n - 1}")
    names = evaluator.gated.block_names
    return {
        "schema": SCHEMA,
        "split": "val",
        "n_samples": len(evaluator.data.val),
        "ranker": ranker,
        "seed": seed,
        "skippable_blocks": n,
        "block_names": names,
        "baseline_accuracy": baseline,
        "per_block": [{"index": i, "name": names[i], "accuracy_skipped": a, "accuracy_drop": baseline - a}
                      for i, a in enumerate(single)],
        "order": order,
    }
