"""Stochastic-depth training (Huang et al. 2016; Korol et al., Sec. I-A).

Block ``l`` of ``L`` residual blocks survives a mini-batch with probability
``p_l = 1 - (l / L) * (1 - p_L)`` (linear decay). ``l`` counts all residual blocks in
execution order, but only the *skippable* blocks (Sec. II-A.2) are ever dropped: the first
block of a stage changes the shape and is never skipped at inference either, so training
it to survive being dropped would buy nothing.

**Scaling convention (inverted, as in timm and torchvision).** In a mini-batch where the
block survives, its contribution ``block(x) - x`` is divided by ``p_l``; at test time the
block runs unscaled. The original code instead scales the residual by ``p_l`` at test time.
Both give the same expected activation, but the inverted form leaves the trained network a
*plain* ResNet, so inference-time skipping is exactly ``block -> identity`` with no rescale
anywhere, in PyTorch, ONNX and the compiled module alike.

In a mini-batch where the block is dropped it is **not computed** (one draw per block per
mini-batch, Huang et al.'s "batch" mode), which is what makes stochastic depth cheaper.
"""

from __future__ import annotations

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.models.protocol import replace_module, residual_blocks


def survival_probability(l: int, num_blocks: int, p_last: float) -> float:  # noqa: E741  (paper's symbol)
    """``p_l = 1 - (l / L)(1 - p_L)`` for block ``l`` (1-based) of ``L``."""
    if not 1 <= l <= num_blocks:
        raise ValueError(f"block index {l} outside 1..{num_blocks}")
    if not 0.0 < p_last <= 1.0:
        raise UsageError(f"p_last must be in (0, 1], got {p_last}", setting="p_last")
    return 1.0 - (l / num_blocks) * (1.0 - p_last)


class StochasticDepth(nn.Module):
    """Wraps one residual block: in training, drop it with probability ``1 - survival``."""

    def __init__(self, block: nn.Module, survival: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.block = block
        self.survival = survival
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.survival >= 1.0:
            return self.block(x)
        if torch.rand((), generator=self.generator).item() >= self.survival:
            return x  # dropped: the block is not computed at all
        return x + (self.block(x) - x) / self.survival

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4f}"


def apply_stochastic_depth(model: nn.Module, p_last: float, generator: torch.Generator | None = None) -> list[float]:
    """Wrap every skippable block in place; return the survival probabilities in block order."""
    blocks = residual_blocks(model)
    survivals = []
    for b in blocks:
        if b.skippable:
            p = survival_probability(b.depth_index, len(blocks), p_last)
            replace_module(model, b.name, StochasticDepth(b.module, p, generator))
            survivals.append(p)
    return survivals


def remove_stochastic_depth(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_stochastic_depth` in place, so the state dict has the plain keys."""
    for name, module in list(model.named_modules()):
        if isinstance(module, StochasticDepth):
            replace_module(model, name, module.block)
    return model
