"""Model registry: ``register_model`` and ``list_models`` (timm-style).

``create_model`` (in :mod:`edgeskip.models.reference`) builds a registered name, an installed entry point or a
user's ``package.module:factory``.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeskip_runtime.registry import Registry
from torch import nn

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
register_model = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()
