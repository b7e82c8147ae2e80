"""Named compiler passes of the gCNN compile flow (Korol et al., Sec. II-A.2: lowering input-dependent gates
to ``if`` blocks in an IREE flow), each registered by name, tested, and reported in the compile log.

Three stages: ``onnx`` passes rewrite the exported ``onnx.ModelProto`` before import (on the torch-mlir
front end, those with a ``run_torch`` form rewrite the PyTorch module before ``torch.export`` instead);
``input`` passes rewrite or check the module after ``iree-compile --compile-to=input``
(an ``iree.compiler.ir.Module``); ``stream`` passes rewrite it after ``--compile-to=stream``
(IREE has scheduled and sized the work), before HAL lowering and code generation. A pass may name IREE
flags it relies on (``iree_flags``). Every module of this package is imported on first use,
so a new pass is a new file with a ``@register_pass`` class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeskip_runtime.errors import EdgeskipError
from edgeskip_runtime.registry import Registry


class PassError(EdgeskipError, RuntimeError):
    """A pass found the model in a state it must refuse (the message says what and where)."""


@dataclass(frozen=True)
class PassContext:
    """What passes know about the model: B_s and where cfg enters the entry function."""

    num_gates: int
    cfg_input: str = "cfg"
    cfg_arg_index: int = 1  # position of cfg among the entry function's arguments (image, cfg)
    entry: str = "main_graph"
    # Configurations to compile as straight-line copies (``specialize-configs``): the Pareto front's.
    specialized_configs: tuple[tuple[int, ...], ...] = ()


class CompilerPass(ABC):
    name: ClassVar[str]
    stage: ClassVar[str]  # "onnx", "input" or "stream"
    description: ClassVar[str]
    iree_flags: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, ir: Any, ctx: PassContext) -> dict[str, Any]:
        """Rewrite or check ``ir`` in place; return a short summary for the compile log."""

    # An ``onnx`` pass may also have a form for the torch-mlir front end, which has no ONNX model: the same
    # rewrite on the PyTorch module (the GatedModel) before ``torch.export``, applied when exporting.
    run_torch: ClassVar[Any] = None

    @classmethod
    def has_torch_form(cls) -> bool:
        return cls.run_torch is not None


PASSES: Registry[type[CompilerPass]] = Registry("compiler pass", discover=__name__)
STAGES = ("onnx", "input", "stream")
# The default pipeline, in order within each stage: lay the gates out channels-last, then check the
# gates, then rewrite their conditions, then specialize the Pareto configurations, then give their
# copies one transient size.
DEFAULT_PIPELINE = ("channels-last-gate-boundaries", "channels-last-branch-weights", "verify-gates-mlir",
                    "gate-conditions-without-host-syncs", "specialize-configs", "uniform-config-transients")
# A self-gated model (SkipNet) has no cfg: of the default passes only the one that does not read cfg applies.
SELF_GATED_PIPELINE = ("channels-last-branch-weights",)


def register_pass(cls: type[CompilerPass]) -> type[CompilerPass]:
    if cls.stage not in STAGES:
        raise ValueError(f"pass {cls.name}: stage must be one of {STAGES}, got {cls.stage!r}")
    return PASSES.register(cls.name)(cls)


def get_pass(name: str) -> CompilerPass:
    """An instance of the registered pass ``name`` (unknown names list the known ones)."""
    return PASSES.get(name)()


def list_passes() -> list[str]:
    return PASSES.names()


__all__ = ["DEFAULT_PIPELINE", "PASSES", "SELF_GATED_PIPELINE", "STAGES", "CompilerPass", "PassContext", "PassError",
           "get_pass", "list_passes", "register_pass"]
