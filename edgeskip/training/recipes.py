"""Training recipes: ``standard``, ``stochastic-depth`` (Korol et al., Sec. I-A, II-A.1), ``gated-depth``
(Darzi et al., seed 003) and ``gated-depth-hybrid`` (Gated Depth with stochastic depth inside the gated
sub-paths, :mod:`edgeskip.training.gated_depth`).

A recipe prepares a freshly built model for training, in place, and may return the mini-batch objective
that replaces plain cross-entropy (:data:`Objective`); the optimiser and schedule are shared.
A recipe whose trained network is not the registered architecture also registers how to rebuild it from
a checkpoint (:data:`ARCHITECTURES`), so every later command loads it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from edgeskip_runtime.registry import Registry
from torch import nn

from edgeskip.training.gated_depth import GatedDepthOptions, apply_gated_depth, apply_sub_path_stochastic_depth
from edgeskip.training.stochastic_depth import apply_stochastic_depth

# (model, images, labels, step, progress in [0, 1]) -> (loss, logits): one mini-batch's loss.
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, int, float], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RecipeOptions:
    p_last: float = 0.5
    gated_depth: GatedDepthOptions = field(default_factory=GatedDepthOptions)


Recipe = Callable[[nn.Module, RecipeOptions, torch.Generator], "Objective | None"]
RECIPES: Registry[Recipe] = Registry("recipe")
# recipe -> (registered model, the checkpoint's train_config) -> the trained architecture, before loading weights.
ARCHITECTURES: Registry[Callable[[nn.Module, dict[str, Any]], nn.Module]] = Registry("architecture")


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
                  progress: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain objective."""
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), logits


@RECIPES.register("standard")
def standard(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> None:
    """Plain training: every block runs in every mini-batch."""


@RECIPES.register("stochastic-depth")
def stochastic_depth(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> None:
    """Drop skippable blocks per mini-batch with the linear-decay survival rule."""
    apply_stochastic_depth(model, options.p_last, generator)


@RECIPES.register("gated-depth")
def gated_depth(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> Objective:
    """Base and gated sub-paths per stage, scheduled gating, self-distillation, skip-aware batch norm."""
    return apply_gated_depth(model, options.gated_depth, generator)


@RECIPES.register("gated-depth-hybrid")
def gated_depth_hybrid(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> Objective:
    """Gated Depth split at block level, with the blocks after each gated sub-path's head also dropped
    stochastically (survival down to ``p_last``)."""
    objective = apply_gated_depth(model, options.gated_depth, generator, block_level=True)
    apply_sub_path_stochastic_depth(model, options.p_last, generator)
    return objective


@ARCHITECTURES.register("gated-depth")
def _gated_depth_architecture(model: nn.Module, train_config: dict[str, Any]) -> nn.Module:
    from edgeskip.models.gated_depth import to_gated_depth

    return to_gated_depth(model)


@ARCHITECTURES.register("gated-depth-hybrid")
def _gated_depth_hybrid_architecture(model: nn.Module, train_config: dict[str, Any]) -> nn.Module:
    from edgeskip.models.gated_depth import to_gated_depth

    return to_gated_depth(model, block_level=True)


@ARCHITECTURES.register("skipnet")
def _skipnet_architecture(model: nn.Module, train_config: dict[str, Any]) -> nn.Module:
    from edgeskip.baselines.skipnet import SkipNet  # SkipNet's gates are part of the network

    return SkipNet(model, train_config.get("gate_type"))


def trained_architecture(recipe: str, model: nn.Module, train_config: dict[str, Any]) -> nn.Module:
    """``model`` turned into the network ``recipe`` trains (itself for recipes that keep the architecture)."""
    return ARCHITECTURES.get(recipe)(model, train_config) if recipe in ARCHITECTURES else model
