"""Accuracy of a network, optionally under a skip configuration (Korol et al., Sec. II-A.3/4)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from edgeskip.data.base import ImageSet, Normalization, iterate_batches


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: ImageSet,
    normalization: Normalization,
    *,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy)`` of ``forward`` over ``data``."""
    correct, loss_sum = 0, 0.0
    for x, y in iterate_batches(data, normalization, batch_size, device=device):
        logits = forward(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    n = max(len(data), 1)
    return correct / n, loss_sum / n
