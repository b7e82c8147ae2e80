"""Registered networks and the protocol that makes a residual network skippable."""

from edgeskip.models import resnet_cifar  # noqa: F401  (registers the CIFAR ResNets)
from edgeskip.models.registry import MODELS, create_model, list_models, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
