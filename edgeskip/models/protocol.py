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


SHORTCUT_ATTRIBUTES = ("downsample", "shortcut")  # torchvision's name, and the common CIFAR-code one


def _is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity) or (isinstance(module, nn.Sequential) and not len(module))


def skippable_blocks(model: nn.Module) -> list[BlockRef]:
    """The B_s skippable blocks in execution order; the order of the skip-config array."""
    blocks = [b for b in residual_blocks(model) if b.skippable]
    for b in blocks:
        for attr in SHORTCUT_ATTRIBUTES:
            shortcut = getattr(b.module, attr, None)
            if not _is_identity(shortcut):
                raise ProtocolError(
                    f"block {b.name} has a non-identity shortcut ({attr} is a {type(shortcut).__name__}), "
                    "so skipping it would not pass its input through; only blocks with an identity shortcut can be "
                    "skippable"
                )
    if not blocks:
        raise ProtocolError(f"{type(model).__name__} has no skippable blocks")
    return blocks


def check_skippable(model: nn.Module, input_shape: tuple[int, ...] | list[int],
                    num_classes: int | None = None) -> list[BlockRef]:
    """:func:`skippable_blocks`, plus one forward pass of a zero image of ``input_shape`` (C, H, W) that checks
    what only running the network shows: every skippable block runs exactly once and returns a tensor of its
    input's shape, and (given ``num_classes``) the network returns ``(1, num_classes)`` logits. ``edgeskip train``
    calls it before the first step, so a violation is named there, not at export.
    """
    blocks = skippable_blocks(model)
    seen: dict[str, list[tuple[tuple[int, ...], tuple[int, ...] | str]]] = {b.name: [] for b in blocks}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            shape_in = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
            out = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            seen[name].append((shape_in, out))
        return record

    handles = [b.module.register_forward_hook(hook(b.name)) for b in blocks]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            logits = model(torch.zeros(1, *input_shape))
    except Exception as e:
        shape = ", ".join(map(str, input_shape))
        raise ProtocolError(f"{type(model).__name__} fails on an input of shape (1, {shape}): {type(e).__name__}: {e}"
                            ) from e
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for name, calls in seen.items():
        if len(calls) != 1:
            raise ProtocolError(f"skippable block {name} ran {len(calls)} times in one forward pass; a skippable block "
                                "must run exactly once (a gate in front of it decides that one run)")
        shape_in, shape_out = calls[0]
        if shape_in != shape_out:
            raise ProtocolError(f"skippable block {name} maps a tensor of shape {shape_in} to {shape_out}; skipping it "
                                "passes its input on, so it must keep the shape (make it unskippable: first in its "
                                "stage, or left out of skippable_block_names())")
    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if num_classes is not None and shape != (1, num_classes):
        raise ProtocolError(f"{type(model).__name__} returns {shape} for one image, expected logits (1, {num_classes}) "
                            f"for the dataset's {num_classes} classes (does its factory take num_classes?)")
    return blocks


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` is."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
