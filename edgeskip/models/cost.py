"""Multiply-accumulate (MAC) cost of a network and of each skippable block.

With the per-block costs, the cost of any skip configuration is
``base + sum(mask[i] * blocks[i])`` (Korol et al., Sec. II-A.4 uses cost alongside accuracy).
MACs of ``Conv2d`` and ``Linear`` layers are counted; BatchNorm, ReLU and additions are not
(the usual convention, and they fold or fuse when compiled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.models.protocol import skippable_blocks


@dataclass(frozen=True)
class MacProfile:
    """MACs for one image: ``base`` is always paid, ``blocks[i]`` only when block ``i`` runs."""

    base: int
    blocks: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.base + sum(self.blocks)

    def macs(self, mask: Sequence[int]) -> int:
        if len(mask) != len(self.blocks):
            raise UsageError(f"mask has {len(mask)} entries, the model has {len(self.blocks)} skippable blocks")
        return self.base + sum(m * b for m, b in zip(mask, self.blocks, strict=True))


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return out[0].numel() * k
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


@torch.no_grad()
def mac_profile(model: nn.Module, input_shape: Sequence[int]) -> MacProfile:
    """Count MACs of ``model`` for one image of shape ``(C, H, W)``, split by skippable block."""
    prefixes = [b.name + "." for b in skippable_blocks(model)]
    per_block = [0] * len(prefixes)
    base = 0
    hooks = []

    def hook_for(name: str):
        def hook(module: nn.Module, _inputs, out) -> None:
            nonlocal base
            macs = _layer_macs(module, out)
            owner = next((i for i, p in enumerate(prefixes) if name.startswith(p)), None)
            if owner is None:
                base += macs
            else:
                per_block[owner] += macs

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook_for(name)))
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return MacProfile(base, tuple(per_block))
