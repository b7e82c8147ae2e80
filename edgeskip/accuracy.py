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


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: ImageSet,
    normalization: Normalization,
    *,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Accuracy, mean cross-entropy and mean top-1 softmax margin of ``forward`` over ``data``."""
    correct, loss_sum, margin_sum = 0, 0.0, 0.0
    for x, y in iterate_batches(data, normalization, batch_size, device=device):
        logits = forward(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        top2 = torch.softmax(logits.float(), 1).topk(min(2, logits.shape[1]), dim=1).values
        margin_sum += (top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0)).sum().item()
    n = max(len(data), 1)
    return Evaluation(correct / n, loss_sum / n, margin_sum / n)
