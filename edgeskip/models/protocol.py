"""Which blocks of a residual network may be skipped (Korol et al., Sec. II-A.2, Fig. 5).

A network takes part in edgeskip through one of two documented protocols:

1. **Explicit**: the model defines ``skippable_block_names() -> list[str]``, the qualified
   module names of its skippable blocks in execution order.
2. **torchvision-style stages** (the default): the model has stage attributes ``layer1``,
   ``layer2``, ... that are ``nn.Sequential`` containers of residual blocks (torchvision's
   ``BasicBlock``/``Bottleneck`` layout). The first block of every stage may change the
   shape and is kept; every later block is skippable, so B_s = B - Seg.

A module *outside* the skippable blocks whose computation depends on a block's gate bit (a Gated Depth
network's skip-aware batch norm) is a :class:`GateFollower` naming that block; ``GatedModel`` binds it
to the gate's cfg entry.

A skippable block must map its input to an output of the same shape and be a residual
block whose shortcut is the identity (``downsample`` absent or ``None``), so that skipping
it means passing its input through. Both protocols are checked by :func:`skippable_blocks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from edgeskip_runtime.errors import EdgeskipError
from torch import nn


class ProtocolError(EdgeskipError, ValueError):
    """The network does not follow a protocol that tells which blocks are skippable."""


@dataclass(frozen=True)
class BlockRef:
    """One residual block: its qualified name, its position among all blocks, and the module."""

    name: str
    depth_index: int  # 1-based position l among all L residual blocks (stochastic-depth rule)
    module: nn.Module
    skippable: bool


class GateFollower(nn.Module):
    """A module that depends on the bit of the gate in front of block ``follows`` (a qualified name).

    Outside ``GatedModel.forward`` (training, a plain forward) :meth:`gate_bit` is None and the module
    decides from its own state.
    """

    follows: str

    def __init__(self, follows: str) -> None:
        super().__init__()
        self.follows = follows
        self._bound: tuple[Any, int] | None = None

    def bind_gate(self, inputs: Any, index: int) -> None:
        """``inputs.cfg`` is the cfg of the gated forward call in flight (None between calls)."""
        self._bound = (inputs, index)

    def gate_bit(self) -> torch.Tensor | None:
        """The bound gate's cfg entry during ``GatedModel.forward``, else None."""
        if self._bound is None or self._bound[0].cfg is None:
            return None
        inputs, index = self._bound
        return inputs.cfg[index]


def _stages(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    stages = []
    i = 1
    while isinstance(getattr(model, f"layer{i}", None), nn.Sequential):
        stages.append((f"layer{i}", getattr(model, f"layer{i}")))
        i += 1
    return stages


def residual_blocks(model: nn.Module) -> list[BlockRef]:
    """All residual blocks in execution order, each marked skippable or not."""
    explicit = getattr(model, "skippable_block_names", None)
    if callable(explicit):
        names = list(explicit())
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ProtocolError(f"skippable_block_names() names modules that do not exist: {missing}")
        return [BlockRef(n, i + 1, modules[n], True) for i, n in enumerate(names)]
    stages = _stages(model)
    if not stages:
        raise ProtocolError(
            f"{type(model).__name__} follows no skipping protocol: define "
            "skippable_block_names(), or keep residual blocks in nn.Sequential stages "
            "named layer1, layer2, ... (torchvision layout)"
        )
    refs: list[BlockRef] = []
    for stage_name, stage in stages:
        for j, block in enumerate(stage):
            refs.append(BlockRef(f"{stage_name}.{j}", len(refs) + 1, block, skippable=j > 0))
    return refs


def skippable_blocks(model: nn.Module) -> list[BlockRef]:
    """The B_s skippable blocks in execution order; the order of the skip-config array."""
    blocks = [b for b in residual_blocks(model) if b.skippable]
    for b in blocks:
        if getattr(b.module, "downsample", None) is not None:
            raise ProtocolError(
                f"block {b.name} has a downsample shortcut, so skipping it would change the "
                "shape; only blocks with an identity shortcut can be skippable"
            )
    if not blocks:
        raise ProtocolError(f"{type(model).__name__} has no skippable blocks")
    return blocks


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` is."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
