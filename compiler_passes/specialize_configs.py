"""Pass ``specialize-configs``: one straight-line copy of the network per operating point of the Pareto front.

Why (Korol et al., Sec. II-A.2 and III: the gCNN claims that its gates cost nothing, and the
server only ever runs the configurations of the Pareto front): with the gates as ``scf.if``,
IREE 3.13 makes every taken branch its own queue submission, with its own allocations,
fences and command-buffer execution, all driven by the VM interpreter. That costs microseconds
per taken gate, a few per cent of a ResNet with every block on, while the kernels themselves run
exactly as fast as in the plain network (``generic_path_over_plain`` in ``docs/results/compile_bench_*.json``).

The rewrite, at the ``input`` phase, after ``gate-conditions-without-host-syncs`` made every
gate condition a host scalar ``cfg[k] != 0``::

    key = pack(cfg[0] != 0, ..., cfg[B_s-1] != 0)      # 63 gates per i64 word, on the host
    y = key == key(c_1) ? main_graph$config0(x)        # the network with the gates of c_1 resolved
      : key == key(c_2) ? main_graph$config1(x)
      ...
      : the gated network (one scf.if per gate, unchanged)

Each copy is a private, never-inlined function without control flow, so IREE schedules it
like the plain network: one memoized command buffer, one queue submission, and the same
concurrent groups (a region of the entry function would get none, and ``local-task`` would
lose its overlap). Every other cfg still runs the gated network, so every configuration keeps
working in the same executable with the same weights: the copies read the same constants and
IREE deduplicates both the weights and the identical dispatches. The B_s gates stay ``scf.if``
in the fallback path, and ``verify-gates-mlir``, which runs before this pass, still sees them
all. With no configurations to specialize (``PassContext.specialized_configs`` empty) the pass
changes nothing.

Constant expressions (a weight's layout transpose, say) stay where they were in the entry
function, outside the fallback's control flow, and are cloned into each copy: IREE evaluates
them at compile time only outside control flow, and one left behind would run on every call.

What it buys and costs is measured by ``benchmarks/compile_bench.py`` (results in
``docs/results/compile_bench_*.json``, summarized in the README's "Benchmarks"): the gate overhead of a
front configuration against the generic path, and the compile time and vmfb size it adds (one copy
and one command buffer per configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iree.compiler import ir
from iree.compiler.dialects import arith, scf

from . import CompilerPass, PassContext, PassError, register_pass
from ._mlir import defining_op, entry_function, gate_ifs, is_gate, walk

WORD_BITS = 63  # gates per key word: bit 63 stays clear, so every key is a non-negative i64
COPY_INFIX = "$config"


def copy_symbol(entry: str, index: int) -> str:
    """The function holding the straight-line copy for the ``index``-th specialized configuration."""
    return f"{entry}{COPY_INFIX}{index}"


def is_copy_symbol(entry: str, name: str) -> bool:
    """Whether ``name`` is one of the functions :func:`copy_symbol` names for ``entry``."""
    prefix = entry + COPY_INFIX
    return name.startswith(prefix) and name[len(prefix):].isdigit()


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
    gates = [i for i, o in enumerate(ops) if is_gate(o)]
    if not gates or min(gates) < start or ops.index(sink) < start:
        raise PassError("specialize-configs: the host reads of cfg must come before the network")
    return ops[start:ops.index(sink)]


_PURE_DIALECTS = ("arith.", "tensor.", "linalg.")


def _all_operands(op: ir.Operation) -> list[ir.Value]:
    """The operands of ``op`` and of every op nested in its regions."""
    return [*op.operands, *(v for o in walk(op) for v in o.operands)]


def _defined_inside(op: ir.Operation) -> set[ir.Value]:
    """Values defined within ``op``'s regions: nested results and block arguments."""
    return ({r for o in walk(op) for r in o.results}
            | {a for o in [op, *walk(op)] for region in o.regions for b in region.blocks for a in b.arguments})


def _constant_exprs(ops: Sequence[ir.Operation]) -> set[ir.Operation]:
    """The ops among ``ops`` computed from constants only (e.g. a weight's layout transpose)."""
    const_values: set[ir.Value] = set()
    found: set[ir.Operation] = set()
    for op in ops:
        if not op.name.startswith(_PURE_DIALECTS):
            continue
        inside = _defined_inside(op)
        if all(v in const_values or v in inside or _is_constant(v) for v in _all_operands(op)):
            found.add(op)
            const_values.update(op.results)
    return found


def _is_constant(v: ir.Value) -> bool:
    owner = defining_op(v)
    return owner is not None and owner.name == "arith.constant"


def _clone(ops: Sequence[ir.Operation], mapping: dict[ir.Value, ir.Value], ip: ir.InsertionPoint,
           take_then: dict[ir.Operation, bool], materialize: Callable[[ir.Value], None]) -> None:
    """Clone ``ops`` at ``ip`` with operands renamed by ``mapping``; a gate is replaced by the branch it takes.
    ``materialize`` is offered every operand first (to clone constants into another function)."""
    for op in ops:
        for v in _all_operands(op):
            materialize(v)
        if op in take_then:
            branch = op.regions[0 if take_then[op] else 1].blocks[0]
            inner = [o.operation for o in branch.operations]
            _clone(inner[:-1], mapping, ip, take_then, materialize)
            for result, yielded in zip(op.results, inner[-1].operands, strict=True):
                mapping[result] = mapping.get(yielded, yielded)
            continue
        _clone_op(op, mapping, ip)


def _clone_op(op: ir.Operation, mapping: dict[ir.Value, ir.Value], ip: ir.InsertionPoint) -> None:
    """Clone one op (with its regions) at ``ip``, renaming operands by ``mapping``; record its results."""
    new = op.clone(ip=ip)
    for o in (new, *walk(new)):
        for i, v in enumerate(o.operands):
            if v in mapping:
                o.operands[i] = mapping[v]
    for old, fresh in zip(op.results, new.results, strict=True):
        mapping[old] = fresh


def _remove_dead(ops: list[ir.Operation]) -> list[ir.Operation]:
    """Drop pure ops whose results nobody reads (the gates' old on-device condition chain)."""
    live = list(ops)
    changed = True
    while changed:
        changed = False
        for op in reversed(list(live)):  # a snapshot: live shrinks as we go
            if op.name.startswith(_PURE_DIALECTS) and all(not list(r.uses) for r in op.results):
                live.remove(op)
                op.erase()
                changed = True
    return live


def _is_cloned_in(v: ir.Value, shared: set[ir.Operation]) -> bool:
    """A constant or one of the constant expressions ``shared``: each copy clones its own."""
    owner = defining_op(v)
    return owner is not None and (owner.name == "arith.constant" or owner in shared)


def _external_values(compute: Sequence[ir.Operation], shared: set[ir.Operation]) -> list[ir.Value]:
    """What the network reads from outside that a copy cannot clone (the image): the copies' arguments."""
    inside = {r for op in compute for r in op.results}
    for op in compute:
        inside |= _defined_inside(op)
    used = (v for op in compute for v in _all_operands(op))
    return list(dict.fromkeys(v for v in used if v not in inside and not _is_cloned_in(v, shared)))


def _outline_copy(module: ir.Module, name: str, compute: Sequence[ir.Operation], result: ir.Value,
                  args: Sequence[ir.Value], take_then: dict[ir.Operation, bool], shared: set[ir.Operation]) -> None:
    """Add ``@name(args)``: a private, never-inlined function computing ``result`` with every gate resolved
    by ``take_then``. Constants and the constant expressions ``shared`` are cloned in.

    Its own function, not a region of the entry: IREE's stream scheduler forms concurrent groups
    (e.g. a pad fill beside a convolution) at function level only, and ``local-task`` needs them.
    """
    sig = ", ".join(f"%arg{i}: {v.type}" for i, v in enumerate(args))
    text = (f"util.func private @{name}({sig}) -> {result.type} attributes {{inlining_policy = #util.inline.never}} "
            f"{{\n  %0 = tensor.empty() : {result.type}\n  util.return %0 : {result.type}\n}}")
    parsed = ir.Module.parse(text, module.context)
    func = parsed.body.operations[0].operation
    func.detach_from_parent()
    module.body.append(func)
    body = func.regions[0].blocks[0]
    placeholder, ret = (o.operation for o in body.operations)
    ip = ir.InsertionPoint(ret)
    mapping: dict[ir.Value, ir.Value] = dict(zip(args, body.arguments, strict=True))

    def materialize(v: ir.Value) -> None:  # clone a constant (expression) the copy reads, once
        if v in mapping or not _is_cloned_in(v, shared):
            return
        owner = defining_op(v)
        for operand in _all_operands(owner):
            materialize(operand)
        _clone_op(owner, mapping, ip)

    _clone(compute, mapping, ip, take_then, materialize)
    ret.operands[0] = mapping[result]
    placeholder.erase()


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
    description = ("one straight-line function per Pareto configuration (one memoized command buffer each), "
                   "chosen on the host; any other cfg runs the gated network")

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
        gates = [op for op in gate_ifs(func) if op.parent.operation == func]  # top-level gates only
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
        compute = _remove_dead(_compute_ops(block, list(flags.values()), barrier))
        constants = _constant_exprs(compute)
        compute = [op for op in compute if op not in constants]
        if defining_op(result) not in compute:
            raise PassError("specialize-configs: the network's result is not computed after the host reads")
        args = _external_values(compute, constants)

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
            copies: list[str] = []
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
                symbol = copy_symbol(ctx.entry, len(copies))
                _outline_copy(module, symbol, compute, result, args,
                              {op: bool(config[k]) for op, k in gate_of.items()}, constants)
                copies.append(symbol)
                then_ip = ir.InsertionPoint(if_op.then_block)
                call = ir.Operation.create("util.call", results=[result.type], operands=args,
                                           attributes={"callee": ir.FlatSymbolRefAttr.get(symbol)}, ip=then_ip)
                scf.YieldOp([call.result], ip=then_ip)
                ip = ir.InsertionPoint(if_op.else_block)
            fallback_yield = scf.YieldOp([result], ip=ip)
            for op in compute:  # the gated network becomes the innermost else
                op.move_before(fallback_yield.operation)
            barrier.operands[0] = outer.results[0]
        module.operation.verify()
        return {"configs": len(configs), "network_ops": len(compute), "constant_exprs": len(constants)}
