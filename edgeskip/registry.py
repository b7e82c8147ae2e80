"""Named registries for open sets (implemented in :mod:`edgeskip_runtime.registry`, which the board shares)."""

from edgeskip_runtime.registry import Registry, UnknownNameError

__all__ = ["Registry", "UnknownNameError"]
