"""Pass ``specialize-configs``: one straight-line copy of the network per operating point of the Pareto front.

Why (Korol et al., Sec. II-A.2 and III: the gCNN claims that its gates cost nothing, and the
server only ever runs the configurations of the Pareto front): with the gates as ``scf.if``,
IREE 3.13 makes every taken branch its own queue submission, with its own allocations,
fences and command-buffer execution, all driven by the VM interpreter. That costs about 5 to
7 us per taken gate on the 2-core x86 host, 5 % of ResNet-20 and 8 % of ResNet-110 with every
block on, while the kernels themselves run exactly as fast as in the plain network.

The rewrite, at the ``input`` phase, after ``gate-conditions-without-host-syncs`` made every
gate condition a host scalar ``cfg[k] != 0``::

    key = pack(cfg[0] != 0, ..., cfg[B_s-1] != 0)          # one i64 per 64 gates, on the host
    y = key == key(c_1) ? network with the gates of c_1 resolved
      : key == key(c_2) ? network with the gates of c_2 resolved
      ...
      : the gated network (one scf.if per gate, unchanged)

Each resolved copy has no control flow, so IREE records it as one memoized command buffer,
like the plain network: a call with a front configuration is one submission. Every other cfg
still runs the gated network, so every configuration keeps working in the same executable
with the same weights (the copies read the same constants; IREE deduplicates the identical
dispatches). The B_s gates stay ``scf.if`` in the fallback path and ``verify-gates-mlir``,
which runs before this pass, still sees them all. With no configurations to specialize
(``PassContext.specialized_configs`` empty) the pass changes nothing.

Cost: the compile time and the number of command buffers grow with the number of configs;
the executables (the kernels) do not, since identical dispatches are shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iree.compiler import ir
from iree.compiler.dialects import arith, scf

from compiler_passes import CompilerPass, PassContext, PassError, register_pass
from compiler_passes._mlir import all_ifs, defining_op, entry_function, walk

WORD_BITS = 63  # gates per key word: bit 63 stays clear, so every key is a non-negative i64


def _host_gate_index(cond: ir.Value) -> int:
    """k for a condition ``cfg[k] != 0`` read on the host (``hal.buffer.load`` at byte 8k)."""
    cmp = defining_op(cond)
    load = defining_op(cmp.operands[0]) if cmp is not None and cmp.name == "arith.cmpi" else None
    offset = defining_op(load.operands[1]) if load is not None and load.name == "hal.buffer.load" else None
    if offset is None or offset.name != "arith.constant":
        raise PassError("specialize-configs: a gate condition is not a host read of cfg; run "
                        "gate-conditions-without-host-syncs before this pass")
    return int(ir.IntegerAttr(offset.attributes["value"]).value) // 8


def _compute_ops(block: ir.Block, flags: Sequence[ir.Value], sink: ir.Operation) -> list[ir.Operation]:
    """The network: the entry block's operations after the last host read of cfg, up to (not including)
    ``sink``, which consumes the result."""
    ops = [o.operation for o in block.operations]
    start = max(ops.index(defining_op(f)) for f in flags) + 1
    gates = [i for i, o in enumerate(ops) if o.name == "scf.if"]
    if not gates or min(gates) < start or ops.index(sink) < start:
        raise PassError("specialize-configs: the host reads of cfg must come before the network")
    return ops[start:ops.index(sink)]


_PURE_DIALECTS = ("arith.", "tensor.", "linalg.")


def _constant_exprs(ops: Sequence[ir.Operation]) -> set[ir.Operation]:
    """The ops among ``ops`` computed from constants only (e.g. a weight's layout transpose).

    They stay in front of the copies: IREE evaluates constant expressions at compile time only
    outside control flow, and a weight transpose left inside a copy would run on every call.
    """
    const_values: set[ir.Value] = set()
    found: set[ir.Operation] = set()
    for op in ops:
        if not op.name.startswith(_PURE_DIALECTS):
            continue
        inside = {r for o in walk(op) for r in o.results}
        inside |= {a for o in walk(op) for region in o.regions for b in region.blocks for a in b.arguments}
        inside |= {a for region in op.regions for b in region.blocks for a in b.arguments}
        operands = [*op.operands, *(v for o in walk(op) for v in o.operands)]
        if all(v in const_values or v in inside or _is_constant(v) for v in operands):
            found.add(op)
            const_values.update(op.results)
    return found


def _is_constant(v: ir.Value) -> bool:
    owner = defining_op(v)
    return owner is not None and owner.name == "arith.constant"


def _clone(ops: Sequence[ir.Operation], mapping: dict[ir.Value, ir.Value], ip: ir.InsertionPoint,
           take_then: dict[ir.Operation, bool]) -> None:
    """Clone ``ops`` at ``ip`` with operands renamed by ``mapping``; a gate is replaced by the branch it takes."""
    for op in ops:
        if op in take_then:
            branch = op.regions[0 if take_then[op] else 1].blocks[0]
            inner = [o.operation for o in branch.operations]
            _clone(inner[:-1], mapping, ip, take_then)
            for result, yielded in zip(op.results, inner[-1].operands, strict=True):
                mapping[result] = mapping.get(yielded, yielded)
            continue
        new = op.clone(ip=ip)
        for o in (new, *walk(new)):
            for i, v in enumerate(o.operands):
                if v in mapping:
                    o.operands[i] = mapping[v]
        for old, fresh in zip(op.results, new.results, strict=True):
            mapping[old] = fresh


def config_keys(config: Sequence[int]) -> list[int]:
    """The packed key words of one configuration (bit j of word w is gate 63w + j)."""
    words = [0] * ((len(config) + WORD_BITS - 1) // WORD_BITS)
    for k, on in enumerate(config):
        if on:
            words[k // WORD_BITS] |= 1 << (k % WORD_BITS)
    return words


@register_pass
class SpecializeConfigs(CompilerPass):
    name = "specialize-configs"
    stage = "input"
    description = ("one straight-line copy of the network per Pareto configuration (one memoized command buffer "
                   "each); any other cfg runs the gated network")

    def run(self, module: ir.Module, ctx: PassContext) -> dict[str, Any]:
        configs = list(dict.fromkeys(tuple(int(bool(v)) for v in c) for c in ctx.specialized_configs))
        if not configs:
            return {"configs": 0}
        bad = [c for c in configs if len(c) != ctx.num_gates]
        if bad:
            raise PassError(f"specialize-configs: a configuration has {len(bad[0])} entries, the model has "
                            f"{ctx.num_gates} gates")
        func = entry_function(module, ctx)
        block = func.regions[0].blocks[0]
        gates = [op for op in all_ifs(func) if op.parent.operation == func]  # top-level gates only
        gate_of = {op: _host_gate_index(op.operands[0]) for op in gates}
        if sorted(gate_of.values()) != list(range(ctx.num_gates)):
            raise PassError(f"specialize-configs: the top-level scf.if read cfg entries {sorted(gate_of.values())}, "
                            f"expected each of 0..{ctx.num_gates - 1} once")
        flags = {k: op.operands[0] for op, k in gate_of.items()}
        ops = [o.operation for o in block.operations]
        barrier = next((o for o in ops if o.name in ("hal.tensor.barrier", "hal.tensor.export")), None)
        if barrier is None or len(barrier.operands) < 1:
            raise PassError("specialize-configs: no hal.tensor.barrier/export consumes the network's result")
        result = barrier.operands[0]
        compute = _compute_ops(block, list(flags.values()), barrier)
        constants = _constant_exprs(compute)
        compute = [op for op in compute if op not in constants]
        if defining_op(result) not in compute:
            raise PassError("specialize-configs: the network's result is not computed after the host reads")

        with module.context, barrier.location:
            ip = ir.InsertionPoint(barrier)
            i64 = ir.IntegerType.get_signless(64)
            words: list[ir.Value] = []
            for w in range((ctx.num_gates + WORD_BITS - 1) // WORD_BITS):
                word = arith.ConstantOp(i64, 0, ip=ip).result
                for k in range(w * WORD_BITS, min(ctx.num_gates, (w + 1) * WORD_BITS)):
                    bit = arith.ExtUIOp(i64, flags[k], ip=ip).result
                    shift = arith.ConstantOp(i64, k % WORD_BITS, ip=ip).result
                    word = arith.OrIOp(word, arith.ShLIOp(bit, shift, ip=ip).result, ip=ip).result
                words.append(word)

            outer: ir.Operation | None = None
            for config in configs:
                match = None
                for word, key in zip(words, config_keys(config), strict=True):
                    eq = arith.CmpIOp(arith.CmpIPredicate.eq, word, arith.ConstantOp(i64, key, ip=ip).result,
                                      ip=ip).result
                    match = eq if match is None else arith.AndIOp(match, eq, ip=ip).result
                if_op = scf.IfOp(match, [result.type], has_else=True, ip=ip)
                if outer is None:
                    outer = if_op.operation
                else:
                    scf.YieldOp([if_op.result], ip=ip)  # the previous else yields this if's result
                mapping: dict[ir.Value, ir.Value] = {}
                then_ip = ir.InsertionPoint(if_op.then_block)
                _clone(compute, mapping, then_ip, {op: bool(config[k]) for op, k in gate_of.items()})
                scf.YieldOp([mapping[result]], ip=then_ip)
                ip = ir.InsertionPoint(if_op.else_block)
            fallback_yield = scf.YieldOp([result], ip=ip)
            for op in compute:  # the gated network becomes the innermost else
                op.move_before(fallback_yield.operation)
            barrier.operands[0] = outer.results[0]
        module.operation.verify()
        return {"configs": len(configs), "network_ops": len(compute), "constant_exprs_shared": len(constants)}
