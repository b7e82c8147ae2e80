"""Helpers of the ``input``-stage passes (gates as ``scf.if``, Korol et al., Sec. II-A.2): find the entry
function and the cfg values, walk operations and data flow."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from iree.compiler import ir

from . import PassContext, PassError


def entry_function(module: ir.Module, ctx: PassContext) -> ir.Operation:
    """The entry: ``@{entry}$async`` (the body IREE compiles; the sync one only wraps it), else ``@{entry}``."""
    funcs = {ir.StringAttr(op.operation.attributes["sym_name"]).value: op.operation
             for op in module.body.operations if op.operation.name == "util.func"}
    for name in (f"{ctx.entry}$async", ctx.entry):
        if name in funcs:
            return funcs[name]
    raise PassError(f"no entry function @{ctx.entry} in the module (functions: {sorted(funcs)})")


def walk(op: ir.Operation) -> Iterator[ir.Operation]:
    """Every operation nested in ``op``, in pre-order."""
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                yield child.operation
                yield from walk(child.operation)


def cfg_values(func: ir.Operation, ctx: PassContext) -> list[ir.Value]:
    """The cfg argument (a buffer view) and the tensors imported from it."""
    arg = func.regions[0].blocks[0].arguments[ctx.cfg_arg_index]
    out: list[ir.Value] = [arg]
    for use in arg.uses:
        if use.owner.operation.name == "hal.tensor.import":
            out.extend(use.owner.operation.results)
    return out


def defining_op(v: ir.Value) -> ir.Operation | None:
    """The operation that computes ``v``; None for a block argument."""
    return None if isinstance(v.maybe_downcast(), ir.BlockArgument) else v.owner.operation


def element_type(t: ir.Type) -> ir.Type:
    t = t.maybe_downcast()
    return t.element_type.maybe_downcast() if isinstance(t, ir.ShapedType) else t


def is_float(t: ir.Type) -> bool:
    return isinstance(element_type(t), ir.FloatType)


_YIELDS = ("linalg.yield", "scf.yield", "tensor.yield")


def parent_op(op: ir.Operation) -> ir.Operation:
    return op.parent.operation if hasattr(op.parent, "operation") else op.parent


def forward_slice(func: ir.Operation, seeds: list[ir.Value],
                  stop: Callable[[ir.Operation], bool] | None = None) -> tuple[list[ir.Value], list[ir.Operation]]:
    """Values computed from ``seeds``, and the scf.if ops whose condition is one of them.

    An scf.if condition is control, not data: the if's results are not tainted through it. A
    value yielded from a region (linalg.yield, scf.yield) taints the results of the region's op.
    The results of an op for which ``stop`` is true are not tainted either.
    """
    seen: set[ir.Value] = set()
    tainted: list[ir.Value] = []
    conditions: list[ir.Operation] = []
    stack = list(seeds)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        tainted.append(v)
        for use in v.uses:
            owner = use.owner.operation
            if owner.name == "scf.if" and use.operand_number == 0:
                conditions.append(owner)
                continue
            if stop is not None and stop(owner):
                continue
            stack.extend(owner.results)
            if owner.name in _YIELDS:  # a yielded value reaches the results of the op owning the region
                stack.extend(parent_op(owner).results)
    return tainted, conditions


def image_values(func: ir.Operation) -> list[ir.Value]:
    """The image argument (the entry function's first) and the tensors imported from it."""
    arg = func.regions[0].blocks[0].arguments[0]
    return [arg, *(r for use in arg.uses if use.owner.operation.name == "hal.tensor.import"
                   for r in use.owner.operation.results)]


# The body of an elementwise select (torch.where), as linalg.generic writes it: choose, convert the flag, yield.
_SELECT_BODY = {"arith.select", "arith.extui", "arith.trunci", "arith.cmpi", "linalg.yield"}


def is_parameter_select(op: ir.Operation, image_dependent: set[ir.Value]) -> bool:
    """An elementwise select between values that do not depend on the image: a choice of *parameters* by cfg
    (the skip-aware batch norm of a Gated Depth network picks its folded set), not of activations."""
    if op.name == "linalg.generic":
        body = {o.name for o in walk(op) if o is not op}
        if "arith.select" not in body or not body <= _SELECT_BODY:
            return False
    elif op.name != "arith.select":
        return False
    return not any(is_float(v.type) and v in image_dependent for v in op.operands)


def is_gate(op: ir.Operation) -> bool:
    """A gate: an ``scf.if`` that yields the block's output or the identity. An ``scf.if`` without
    results is control flow a pass added (the wait-fence guard of gate-conditions-without-host-syncs)."""
    return op.name == "scf.if" and len(op.results) > 0


def gate_ifs(func: ir.Operation) -> list[ir.Operation]:
    return [op for op in walk(func) if is_gate(op)]
