"""Gated Depth networks (Darzi et al., seed 003, Sec. 3 and 6.1; after Kang et al.'s Adaptive Depth
Networks, ``wchkang/depth``, ``models/resnet.py``): every residual stage is split into a **base sub-path**,
which always runs, and a **gated sub-path**, which is one skippable unit, so a network with N_r stages has
2^N_r operating points.

* **Sub-paths** (eq. 1): stage ``s`` computes ``h = base(h_in)`` and then ``gated(h)`` when its bit is 1,
  else passes ``h`` on. The split is about 1:1 in blocks: the base keeps the first ``ceil(n / 2)`` of the
  stage's ``n`` residual blocks (the first one changes the shape, so it must be in the base), the gated
  sub-path the rest. The gated sub-path is a chain of residual blocks, so skipping it is the identity.
* **Skip-aware batch norm** (Sec. 6.1, ADN): every batch norm of a base sub-path keeps two sets of running
  statistics and affine parameters, one for when its stage's gated sub-path runs and one for when it is
  skipped; the stage's bit picks the set, in training and at inference.

The bit reaches the batch norms in one of two ways. In a plain forward (training, or evaluation without
gates) it is the stage's :class:`StageSwitch`, which the Gated Depth recipe sets per mini-batch
(:mod:`edgeskip.training.gated_depth`) and which is on otherwise (the full network). Under
:class:`edgeskip.gating.GatedModel`, the batch norms are gate followers bound to the cfg entry of their
stage's gate, so they read the very bit that decides the gated sub-path; while exporting, the choice is a
select between the two sets folded to per-channel scale and shift (``Where`` on that bit: no branch, and
the gates stay the graph's only ``If`` nodes). :data:`BN_LOWERINGS` also offers ``branch`` (an ``If``
between the two batch norms), which ``benchmarks/gated_depth_bench.py`` measures against the select:
the select is what the product exports (see that benchmark's JSON for the numbers).

The skippable units are named ``layer1.gated``, ``layer2.gated``, ... (explicit protocol,
:mod:`edgeskip.models.protocol`), so sensitivity, Pareto, export and compile need nothing new.

**Block level** (beyond the seed; the ``gated-depth-hybrid`` recipe): every block of a gated sub-path is its
own skippable unit (``layer1.gated.0``, ``layer1.gated.1``, ...). The sub-path's first block is its head: the
stage's gated sub-path counts as on when its head runs, so the skip-aware batch norms follow the head's bit,
and the later blocks add block-level operating points inside a running sub-path.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from edgeskip.models.protocol import GateFollower, ProtocolError


class StageSwitch:
    """Whether a stage's gated sub-path runs in the current plain forward pass, and how its output is scaled.

    ``scale`` is the training-time calibration (inverted convention: ``1 / p_s`` while training, 1 otherwise).
    """

    def __init__(self) -> None:
        self.on = True
        self.scale = 1.0


BN_LOWERINGS = ("select", "branch")


class SkipAwareBatchNorm2d(GateFollower):
    """Two batch norms, ``on`` (the stage's gated sub-path runs) and ``off`` (it is skipped).

    ``lowering`` (:data:`BN_LOWERINGS`) is how an export chooses between them: ``select`` between the folded
    parameter sets (the default, and the only one ``edgeskip export`` writes: the gate checks allow one
    ``If`` per gate), or ``branch``, a ``torch.cond`` between the two batch norms (for measurement).
    """

    lowering = "select"

    def __init__(self, bn: nn.BatchNorm2d, switch: StageSwitch, follows: str) -> None:
        super().__init__(follows)
        self.on = bn
        self.off = copy.deepcopy(bn)
        self.switch = switch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bit = self.gate_bit()
        if bit is None:
            return self.on(x) if self.switch.on else self.off(x)
        if torch.compiler.is_exporting():
            if self.lowering == "branch":
                return torch.cond(bit != 0, lambda t: self.on(t), lambda t: self.off(t), (x,))
            return self._selected(x, bit != 0)
        return self.on(x) if bool(bit) else self.off(x)

    @staticmethod
    def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """The eval-mode batch norm as ``x * scale + shift`` per channel."""
        assert bn.running_var is not None and bn.running_mean is not None
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return scale, shift

    def _selected(self, x: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
        """Export: a select between the two folded parameter sets (no branch; both sets are a few floats)."""
        (s_on, b_on), (s_off, b_off) = self._affine(self.on), self._affine(self.off)
        scale, shift = torch.where(on, s_on, s_off), torch.where(on, b_on, b_off)
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class GatedDepthStage(nn.Module):
    """``gated(base(x))``, where a plain forward runs ``gated`` only while the stage's switch is on."""

    def __init__(self, base: nn.Sequential, gated: nn.Sequential) -> None:
        super().__init__()
        self.base = base
        self.gated = gated
        self.switch = StageSwitch()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        if not isinstance(self.gated, nn.Sequential):  # a SkipGate under GatedModel: it decides from the cfg
            return self.gated(h)
        if not self.switch.on:
            return h
        if self.switch.scale == 1.0:
            return self.gated(h)
        return h + (self.gated(h) - h) * self.switch.scale


def stage_names(model: nn.Module) -> list[str]:
    """``layer1``, ``layer2``, ...: the model's residual stages (torchvision layout)."""
    names = []
    while isinstance(getattr(model, f"layer{len(names) + 1}", None), (nn.Sequential, GatedDepthStage)):
        names.append(f"layer{len(names) + 1}")
    return names


def to_gated_depth(model: nn.Module, block_level: bool = False) -> nn.Module:
    """Split every stage of a torchvision-layout ResNet into base and gated sub-paths, in place.

    The base sub-path's batch norms become skip-aware (both sets start as copies of the trained ones).
    The model then names its skippable units ``layerS.gated``, or with ``block_level`` every block of the
    gated sub-paths, ``layerS.gated.i`` (the batch norms follow ``layerS.gated.0``, the head).
    """
    names = stage_names(model)
    if not names:
        raise ProtocolError(f"{type(model).__name__} has no stages layer1, layer2, ... (nn.Sequential, torchvision "
                            "layout) for the gated-depth recipes to split into base and gated sub-paths; a network "
                            "that names its blocks with skippable_block_names() trains with standard or "
                            "stochastic-depth")
    for name in names:
        stage = getattr(model, name)
        if isinstance(stage, GatedDepthStage):
            raise ProtocolError(f"{name} is already split into sub-paths")
        blocks = list(stage)
        if len(blocks) < 2:
            raise ProtocolError(f"{name} has {len(blocks)} block; a gated sub-path needs at least two per stage")
        cut = math.ceil(len(blocks) / 2)
        new = GatedDepthStage(nn.Sequential(*blocks[:cut]), nn.Sequential(*blocks[cut:]))
        head = f"{name}.gated.0" if block_level else f"{name}.gated"
        for bn_name, bn in list(new.base.named_modules()):
            if isinstance(bn, nn.BatchNorm2d):
                parent, _, attr = bn_name.rpartition(".")
                setattr(new.base.get_submodule(parent), attr, SkipAwareBatchNorm2d(bn, new.switch, head))
        setattr(model, name, new)
    gated_units = [f"{n}.gated.{i}" if block_level else f"{n}.gated"
                   for n in names for i in range(len(getattr(model, n).gated) if block_level else 1)]
    model.skippable_block_names = lambda: list(gated_units)  # type: ignore[method-assign]
    return model


def set_bn_lowering(model: nn.Module, lowering: str) -> int:
    """Export every skip-aware batch norm of ``model`` as ``lowering``; returns how many there are."""
    if lowering not in BN_LOWERINGS:
        raise ValueError(f"unknown batch-norm lowering {lowering!r}; use one of {', '.join(BN_LOWERINGS)}")
    bns = [m for m in model.modules() if isinstance(m, SkipAwareBatchNorm2d)]
    for m in bns:
        m.lowering = lowering
    return len(bns)


def is_gated_depth(model: nn.Module) -> bool:
    names = stage_names(model)
    return bool(names) and all(isinstance(getattr(model, n), GatedDepthStage) for n in names)


def stages(model: nn.Module) -> list[GatedDepthStage]:
    """The Gated Depth stages of ``model`` in order (raises if it has none)."""
    if not is_gated_depth(model):
        raise ProtocolError(f"{type(model).__name__} is not a Gated Depth network (see to_gated_depth)")
    return [getattr(model, n) for n in stage_names(model)]


__all__ = ["BN_LOWERINGS", "GatedDepthStage", "SkipAwareBatchNorm2d", "StageSwitch", "is_gated_depth",
           "set_bn_lowering", "stage_names", "stages", "to_gated_depth"]
