"""Pass ``verify-gates-mlir``: after import, every skip gate must still be control flow (Korol et al., Sec. II-A.2).

The paper's point is that a skipped block is not computed. If the import or an early
canonicalisation turned a gate into ``select(cfg[k], block(x), x)`` or a multiply by
``cfg[k]``, the model would still be correct but would run every block on every call. This
check runs on the module at the ``input`` phase and requires: exactly B_s ``scf.if`` ops, each
conditioned on a value computed from cfg, and no floating-point value computed from cfg
(which is what a select or multiply on activations would need). One use of cfg in data is allowed:
a select between image-independent values, i.e. a choice of parameters (the skip-aware batch norm of a
Gated Depth network, :mod:`edgeskip.models.gated_depth`); what it chooses feeds activations, but no
block is computed on a skipped path because of it.
"""

from __future__ import annotations

from typing import Any

from iree.compiler import ir

from . import CompilerPass, PassContext, PassError, register_pass
from ._mlir import (
    cfg_values,
    defining_op,
    entry_function,
    forward_slice,
    gate_ifs,
    image_values,
    is_float,
    is_parameter_select,
)


@register_pass
class VerifyGatesMlir(CompilerPass):
    name = "verify-gates-mlir"
    stage = "input"
    description = "require exactly B_s scf.if conditioned on cfg, and no select/multiply of activations by cfg"

    def run(self, module: ir.Module, ctx: PassContext) -> dict[str, Any]:
        func = entry_function(module, ctx)
        ifs = gate_ifs(func)
        image_dependent = set(forward_slice(func, image_values(func))[0])
        tainted, conditioned = forward_slice(func, cfg_values(func, ctx),
                                             stop=lambda op: is_parameter_select(op, image_dependent))
        flattened = sorted({op.name for v in tainted if is_float(v.type) and (op := defining_op(v)) is not None})
        problems = []
        if len(ifs) != ctx.num_gates:
            problems.append(f"expected {ctx.num_gates} scf.if (one per gate), found {len(ifs)}")
        unconditioned = [op for op in ifs if op not in conditioned]
        if unconditioned:
            problems.append(f"{len(unconditioned)} scf.if are not conditioned on cfg")
        if flattened:
            problems.append("cfg reaches floating-point values through " + ", ".join(flattened)
                            + " (a gate lowered to a select/multiply: the block would run on every call)")
        if problems:
            raise PassError("verify-gates-mlir: " + "; ".join(problems))
        return {"scf_if": len(ifs), "conditioned_on_cfg": len(conditioned)}
