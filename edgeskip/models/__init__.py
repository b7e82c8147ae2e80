"""Registered networks, user networks by reference, and the protocol that makes a residual network skippable."""

from edgeskip.models import resnet_cifar  # noqa: F401  (registers the CIFAR ResNets)
from edgeskip.models.reference import create_model, list_model_references
from edgeskip.models.registry import MODELS, list_models, register_model

__all__ = ["MODELS", "create_model", "list_model_references", "list_models", "register_model"]
