"""Pass ``gate-conditions-without-host-syncs``: decide every gate on the host from the caller's cfg buffer.

Why (Korol et al., Sec. II-A.2: the skip configuration is an input of the compiled gCNN):
as imported, each gate condition ``cfg[k] != 0`` is a tensor computation. IREE schedules it
into the same command buffer as the convolutions before it, copies the flag to a staging
buffer, and the host *waits for that whole submission* before it can choose the branch: one
full device round trip per gate. With ``local-sync`` that wait is free (the work already ran
inline); with the multi-threaded ``local-task`` driver each gate drains the worker threads,
and the gated ResNet-20 ran about 2-3x slower than with ``local-sync``.

The rewrite: at the ``input`` phase, after the cfg buffer is imported, the host reads all B_s
entries straight from the caller's buffer (``hal.buffer_view.buffer`` + ``hal.buffer.load``,
after waiting on the call's wait fence like the import does, unless that fence is null, as it is
for every synchronous call: see ``_await_unless_null``) and each ``scf.if`` takes
``arith.cmpi ne, cfg[k], 0`` - a host scalar. Then no condition depends on device work, the
stream scheduler issues all branches without a host wait (one ``stream.timepoint.await``
left: the result), and worker threads stay busy. The old condition chain becomes dead code.

Which entry each ``scf.if`` reads is found by tracing its condition back to the
``tensor.extract`` of the imported cfg (the exporter's Gather), not assumed from the order.

``benchmarks/compile_bench.py`` measures local-task against local-sync with and without this pass
(``e_drivers`` in ``docs/results/compile_bench_*.json``): without it, the deep model's host syncs make
local-task far slower than local-sync; with it, local-task is no slower. Each taken branch is still
its own queue submission with its own allocations: ``specialize-configs``, which needs this
pass's host scalars, removes that for the configurations of the Pareto front.
"""

from __future__ import annotations

from typing import Any

from iree.compiler import ir
from iree.compiler.dialects import arith, hal, scf, util

from . import CompilerPass, PassContext, PassError, register_pass
from ._mlir import defining_op, entry_function, gate_ifs, walk


def _constant_int(v: ir.Value) -> int | None:
    owner = defining_op(v)
    if owner is None or owner.name != "arith.constant":
        return None
    attr = owner.attributes["value"]
    try:
        return int(ir.IntegerAttr(attr).value)
    except ValueError:
        dense = ir.DenseIntElementsAttr(attr)
        return int(dense[0]) if len(dense) >= 1 else None


def _index_value(v: ir.Value) -> int | None:
    """The constant behind an index: a constant, an index_cast of one, or a linalg.generic input's constant."""
    while True:
        c = _constant_int(v)
        if c is not None:
            return c
        owner = defining_op(v)
        if owner is None:
            op = v.owner.owner.operation  # the block belongs to e.g. a linalg.generic: its i-th operand feeds arg i
            if op.name != "linalg.generic" or v.arg_number >= len(op.operands):
                return None
            v = op.operands[v.arg_number]
            continue
        if owner.name in ("arith.index_cast", "arith.index_castui", "arith.extsi", "arith.extui"):
            v = owner.operands[0]
            continue
        return None


def _backward_ops(v: ir.Value, func: ir.Operation) -> list[ir.Operation]:
    """Operations (and their nested ones) that ``v`` is computed from, within ``func``."""
    seen: set[ir.Operation] = set()
    out: list[ir.Operation] = []
    stack = [v]
    visited: set[ir.Value] = set()
    while stack:
        val = stack.pop()
        if val in visited or isinstance(val.maybe_downcast(), ir.BlockArgument):
            continue
        visited.add(val)
        op = val.owner.operation
        if op in seen:
            continue
        seen.add(op)
        for inner in [op, *walk(op)]:
            if inner == op or inner not in seen:
                seen.add(inner)
                out.append(inner)
                stack.extend(inner.operands)
    return out


def gate_index(cond: ir.Value, func: ir.Operation, cfg: ir.Value) -> int:
    ops = _backward_ops(cond, func)
    reads = [op for op in ops if op.name == "tensor.extract" and op.operands[0] == cfg]
    slices = [op for op in ops if op.name == "tensor.extract_slice" and op.operands[0] == cfg]
    if len(reads) + len(slices) != 1:
        raise PassError(f"gate-conditions-without-host-syncs: a gate condition reads cfg {len(reads) + len(slices)} "
                        "times, expected once (cfg[k] != 0)")
    if reads:
        k = _index_value(reads[0].operands[1]) if len(reads[0].operands) == 2 else None
    else:
        offsets = ir.DenseI64ArrayAttr(slices[0].attributes["static_offsets"])
        k = int(offsets[0]) if len(offsets) == 1 and offsets[0] >= 0 else None
    if k is None:
        raise PassError("gate-conditions-without-host-syncs: cannot tell which cfg entry a gate reads "
                        "(the index is not a constant)")
    return k


def _await_unless_null(fence: ir.Value, ip: ir.InsertionPoint) -> None:
    """``hal.fence.await`` on ``fence``, skipped when it is null.

    The synchronous entry calls the async one with a null wait fence. IREE 3.13 still runs an
    unguarded await on a null fence through the VM's yield-and-wait path: about 11 us per call,
    1.4 % of ResNet-20 on this host (paired, guarded / unguarded 0.985).
    """
    null = util.NullOp(fence.type, ip=ip)
    present = util.CmpNEOp(fence, null.result, results=[ir.IntegerType.get_signless(1)], ip=ip)
    guard = scf.IfOp(present.result, ip=ip)
    with ir.InsertionPoint(guard.then_block):
        timeout = arith.ConstantOp(ir.IntegerType.get_signless(32), -1)
        hal.FenceAwaitOp(timeout.result, ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 0), [fence],
                         results=[ir.IntegerType.get_signless(32)])
        scf.YieldOp([])


@register_pass
class GateConditionsWithoutHostSyncs(CompilerPass):
    name = "gate-conditions-without-host-syncs"
    stage = "input"
    description = "read cfg once on the host (hal.buffer.load) and feed each scf.if a host scalar, no device sync"

    def run(self, module: ir.Module, ctx: PassContext) -> dict[str, Any]:
        func = entry_function(module, ctx)
        body = func.regions[0].blocks[0]
        args = body.arguments
        cfg_view = args[ctx.cfg_arg_index]
        imports = [u.owner.operation for u in cfg_view.uses if u.owner.operation.name == "hal.tensor.import"]
        if len(imports) != 1:
            raise PassError(f"gate-conditions-without-host-syncs: expected one import of cfg, found {len(imports)}")
        imp = imports[0]
        cfg = imp.results[0]
        shape = ir.RankedTensorType(cfg.type)
        if shape.rank != 1 or shape.shape[0] != ctx.num_gates or not ir.IntegerType(shape.element_type).width == 64:
            raise PassError(f"gate-conditions-without-host-syncs: cfg is {cfg.type}, "
                            f"expected tensor<{ctx.num_gates}xi64>")
        # The import's wait fence (coarse-fences ABI): the host must wait for it before reading the buffer.
        fence = next((o for o in imp.operands if str(o.type) == "!hal.fence"), None)
        ifs = gate_ifs(func)
        targets = [(op, gate_index(op.operands[0], func, cfg)) for op in ifs]
        ks = sorted(k for _, k in targets)
        # Every entry drives at least one scf.if; more than one reads an entry when a Gated Depth network's
        # skip-aware batch norms are lowered to branches that follow their stage's gate. (That there is
        # exactly one gate per entry is verify-gates-mlir's check.)
        if sorted(set(ks)) != list(range(ctx.num_gates)):
            raise PassError(f"gate-conditions-without-host-syncs: the scf.if read cfg entries {ks}, "
                            f"expected each of 0..{ctx.num_gates - 1}")
        with module.context, imp.location:
            ops = [o.operation for o in imp.block.operations]
            ip = ir.InsertionPoint(ops[ops.index(imp) + 1])  # right after the cfg import
            i64 = ir.IntegerType.get_signless(64)
            if fence is not None:
                _await_unless_null(fence, ip)
            buffer = hal.BufferViewBufferOp(ir.Type.parse("!hal.buffer"), cfg_view, ip=ip)
            zero = arith.ConstantOp(i64, 0, ip=ip)
            host_flags = []
            for k in range(ctx.num_gates):
                offset = arith.ConstantOp(ir.IndexType.get(), 8 * k, ip=ip)
                value = hal.BufferLoadOp(i64, buffer.result, offset.result, ip=ip)
                host_flags.append(arith.CmpIOp(arith.CmpIPredicate.ne, value.result, zero.result, ip=ip).result)
            for op, k in targets:
                op.operands[0] = host_flags[k]
        module.operation.verify()
        return {"gates_rewritten": len(targets), "host_reads": ctx.num_gates, "waits_on_fence": fence is not None}
