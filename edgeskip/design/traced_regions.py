"""The traceable regions of a gated network, for the design-time graph rewrites (Korol et al., Sec. II-A.3/4).

Batch-norm folding and convolution fusion both rewrite the data flow of a trained network that
sensitivity and the Pareto search evaluate many times. A skip gate's branch depends on the cfg, so
``torch.fx`` traces around the gates (each gate is a leaf) and each gated block is traced on its own;
a gate follower (a module outside the block that reads the gate's bit, :class:`GateFollower`) is a leaf
too and is left as it is;
a module that does not trace (data-dependent control flow, a cfg check) is searched child by child.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import fx, nn

from edgeskip.gating.gates import SkipGate
from edgeskip.models.protocol import GateFollower

# Rewrites one traced module; returns the module to use in its place (itself, when rewritten in place) and how
# many rewrites it made.
Rewrite = Callable[[nn.Module, fx.Graph], tuple[nn.Module, int]]


def module_call_counts(graph: fx.Graph) -> dict[str, int]:
    """How often each submodule is called in ``graph`` (a rewrite must not change a module called twice)."""
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    return calls


class GatesAsLeaves(fx.Tracer):
    """Traces around skip gates and their followers; the gated blocks are rewritten on their own."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (SkipGate, GateFollower)) or super().is_leaf_module(m, module_qualified_name)


def _rewrite(module: nn.Module, rewrite: Rewrite) -> tuple[nn.Module, int]:
    try:
        graph = GatesAsLeaves().trace(module)
    except Exception:  # any tracing failure: rewrite each child on its own
        total = 0
        for name, child in list(module.named_children()):
            new, n = _rewrite(child, rewrite)
            total += n
            if new is not child:
                setattr(module, name, new)
        return module, total
    gates = [m for m in module.modules() if isinstance(m, SkipGate)]
    module, total = rewrite(module, graph)
    for gate in gates:
        gate.block, n = _rewrite(gate.block, rewrite)
        total += n
    return module, total


@torch.no_grad()
def rewrite_traced(model: nn.Module, rewrite: Rewrite) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with ``rewrite`` applied to every largest traceable region and to each
    gated block inside it; and the number of rewrites made (the original is untouched)."""
    return _rewrite(copy.deepcopy(model).eval(), rewrite)
