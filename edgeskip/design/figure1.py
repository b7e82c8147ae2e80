"""Figure 1 of the paper: accuracy against the number of skipped blocks, for a
stochastic-depth model and a standard-trained model of the same architecture
(Korol et al., Sec. I, Fig. 1: mean and spread over random skip configurations).

For each N, ``draws`` masks that skip N blocks are drawn uniformly at random (seeded, with
replacement); the curve is their mean accuracy on the test split with the min-max band.
Masks drawn twice are evaluated once.

Output format ``edgeskip.figure1/1``::

    {"schema", "split": "test", "n_samples", "draws", "seed",
     "models": [{"label", "recipe", "model", "checkpoint",
                 "curve": [{"n_skipped", "mean", "min", "max", "spread", "std", "distinct"}]}]}
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from edgeskip.design.config_eval import ConfigEvaluator, random_masks

SCHEMA = "edgeskip.figure1/1"


def accuracy_curve(evaluator: ConfigEvaluator, *, draws: int = 100, seed: int = 0, split: str = "test",
                   label: str = "", progress: bool = True) -> list[dict[str, Any]]:
    n = evaluator.num_blocks
    generator = torch.Generator().manual_seed(seed)
    drawn = [random_masks(n, k, draws, generator) for k in range(n + 1)]  # the same draws as one N at a time
    evaluator.prefetch([m for masks in drawn for m in masks], split, label=f"figure 1 {label}".strip(),
                       progress=progress)
    curve = []
    for k, masks in enumerate(drawn):  # prefetched: the accuracies are known
        accs = [evaluator.accuracy(m, split) for m in masks]
        curve.append({"n_skipped": k, "mean": statistics.fmean(accs), "min": min(accs), "max": max(accs),
                      "spread": max(accs) - min(accs),  # best minus worst configuration (the paper's N = 37)
                      "std": statistics.pstdev(accs), "distinct": len({m.mask for m in masks})})
    return curve


def mean_accuracy_loss(curve: list[dict[str, Any]]) -> float:
    """Average drop from the no-skip accuracy over all N (the area between the curve and its start)."""
    base = curve[0]["mean"]
    return statistics.fmean(base - p["mean"] for p in curve)
