"""Model registry: ``register_model``, ``create_model``, ``list_models`` (timm-style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeskip_runtime.registry import Registry
from torch import nn

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, e.g. ``create_model("resnet20", in_channels=1)``."""
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    return MODELS.names()
