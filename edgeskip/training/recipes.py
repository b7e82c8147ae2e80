"""Training recipes: ``standard`` and ``stochastic-depth`` (Korol et al., Sec. I-A, II-A.1).

A recipe prepares a freshly built model for training; the optimiser and schedule are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from edgeskip_runtime.registry import Registry
from torch import nn

from edgeskip.training.stochastic_depth import apply_stochastic_depth


@dataclass
class RecipeOptions:
    p_last: float = 0.5


Recipe = Callable[[nn.Module, RecipeOptions, torch.Generator], None]
RECIPES: Registry[Recipe] = Registry("recipe")


@RECIPES.register("standard")
def standard(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> None:
    """Plain training: every block runs in every mini-batch."""


@RECIPES.register("stochastic-depth")
def stochastic_depth(model: nn.Module, options: RecipeOptions, generator: torch.Generator) -> None:
    """Drop skippable blocks per mini-batch with the linear-decay survival rule."""
    apply_stochastic_depth(model, options.p_last, generator)
