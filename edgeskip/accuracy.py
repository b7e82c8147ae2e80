"""Accuracy of a network, optionally under a skip configuration (Korol et al., Sec. II-A.3/4).

Besides accuracy and loss, the mean top-1 softmax margin (p_top1 − p_top2) is recorded: the
confidence an operating point shows on in-distribution data. The performance-aware depth
policy compares the margins it sees online with it to detect a distribution shift
(``runtime/edgeskip_runtime/policies/performance_aware.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from edgeskip.data.base import ImageSet, Normalization, iterate_batches


class Evaluation(NamedTuple):
    accuracy: float
    loss: float
    margin: float  # mean of p_top1 - p_top2 under softmax


class EvaluationSums:
    """Running sums over batches of logits: what :func:`evaluate` and the prefix-sharing engine both add up,
    in the same order and arithmetic, so that the two give identical results."""

    def __init__(self) -> None:
        self.correct, self.loss_sum, self.margin_sum, self.n = 0, 0.0, 0.0, 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        self.correct += (logits.argmax(1) == labels).sum().item()
        top2 = torch.softmax(logits.float(), 1).topk(min(2, logits.shape[1]), dim=1).values
        self.margin_sum += (top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)).sum().item()
        self.n += len(labels)

    def result(self) -> Evaluation:
        n = max(self.n, 1)
        return Evaluation(self.correct / n, self.loss_sum / n, self.margin_sum / n)


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: ImageSet,
    normalization: Normalization,
    *,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Evaluation:
    """Accuracy, mean cross-entropy and mean top-1 softmax margin of ``forward`` over ``data``."""
    sums = EvaluationSums()
    for x, y in iterate_batches(data, normalization, batch_size, device=device):
        sums.add(forward(x.contiguous(memory_format=memory_format)), y)
    return sums.result()
