"""The pieces of a training step that every trainer shares (``edgeskip train`` and the SkipNet baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def sgd_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """Backpropagate ``loss`` and take one step at learning rate ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@dataclass
class EpochStats:
    """Running training loss and accuracy over the batches of one epoch."""

    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.seen += len(labels)
        self.loss_sum += loss.item() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum().item()

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.seen, 1)
