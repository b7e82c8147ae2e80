"""Atomic artifact writes, shared with the board runtime (implemented in :mod:`edgeskip_runtime.atomic`)."""

from edgeskip_runtime.atomic import atomic_path, atomic_write, write_json

__all__ = ["atomic_path", "atomic_write", "write_json"]
