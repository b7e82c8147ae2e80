"""Pass ``uniform-config-transients``: every specialized configuration asks for the same transient size.

Why (Korol et al., Sec. II-B: the server changes the skip configuration from one request to the
next, and switching must cost nothing): each straight-line copy of ``specialize-configs`` gets
one transient allocation per call (its activations), sized by IREE for that copy, so the
sizes differ between operating points (ResNet-20: 313,664 B with every block on, 337,984 B
with two or more skipped). The runtime's caching allocator reuses a freed buffer only for a
request of exactly the same size. A switch to a configuration of another size therefore gets
that configuration's own buffer, untouched since it last ran and cold in the caches, while a
repeat gets the buffer the previous call just freed. Measured on ResNet-20 (x86 host, a
different front configuration on every call / the same one, three repeats): 1.009-1.022
before, 1.004-1.009 after.

The rewrite, at the ``stream`` phase (after IREE's stream scheduling sized the allocations,
before HAL lowering): in every copy with exactly one transient ``stream.resource.alloca``,
the requested size becomes the largest among the copies. Only the request grows; every
binding keeps its range, so the kernels read and write exactly what they did. One cached
buffer then serves all operating points instead of one per size. The gated path
(configurations outside the front) is left as it is.
"""

from __future__ import annotations

from typing import Any

from iree.compiler import ir
from iree.compiler.dialects import arith

from . import CompilerPass, PassContext, register_pass
from ._mlir import defining_op, walk
from .specialize_configs import is_copy_symbol

TRANSIENT = "!stream.resource<transient>"


def _transient_allocas(func: ir.Operation) -> list[ir.Operation]:
    return [op for op in walk(func)
            if op.name == "stream.resource.alloca" and str(op.results[0].type) == TRANSIENT]


def _constant_size(alloca: ir.Operation) -> int | None:
    owner = defining_op(alloca.operands[0])  # operand 0: the storage size
    if owner is None or owner.name != "arith.constant":
        return None
    return int(ir.IntegerAttr(owner.attributes["value"]).value)


@register_pass
class UniformConfigTransients(CompilerPass):
    name = "uniform-config-transients"
    stage = "stream"
    description = "give every specialized configuration the same transient size, so a switch reuses a warm buffer"

    def run(self, module: ir.Module, ctx: PassContext) -> dict[str, Any]:
        sized: list[tuple[ir.Operation, int]] = []
        others = 0
        for op in module.body.operations:
            op = op.operation
            if op.name != "util.func" or not is_copy_symbol(ctx.entry, ir.StringAttr(op.attributes["sym_name"]).value):
                continue
            allocas = _transient_allocas(op)
            size = _constant_size(allocas[0]) if len(allocas) == 1 else None
            if size is None:
                others += 1  # several execution regions, or a dynamic size: left as IREE planned it
            else:
                sized.append((allocas[0], size))
        if not sized:
            return {"copies": 0, "left_alone": others}
        largest = max(size for _, size in sized)
        with module.context:
            for alloca, size in sized:
                if size != largest:
                    with alloca.location:
                        alloca.operands[0] = arith.ConstantOp(ir.IndexType.get(), largest,
                                                              ip=ir.InsertionPoint(alloca)).result
        module.operation.verify()
        return {"copies": len(sized), "left_alone": others, "transient_bytes": largest,
                "resized": sum(size != largest for _, size in sized)}
