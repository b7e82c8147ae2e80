"""Errors of the export/compile stage that mean "the input is wrong", shown by the CLI as one line."""

from __future__ import annotations

from edgeskip_runtime.errors import EdgeskipError


class CompileError(EdgeskipError, RuntimeError):
    """An ONNX model, Pareto file or bundle cannot be compiled or written (the message says why)."""


class GateStructureError(CompileError):
    """The exported graph does not hold one real ``If`` per skip gate (a gate was lost or flattened)."""
