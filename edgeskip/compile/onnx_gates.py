"""Find and check the skip gates of an exported gCNN (Korol et al., Sec. II-A.2, Fig. 5).

A gate is a top-level ONNX ``If`` whose condition is ``cfg[k] != 0`` (computed from the ``cfg``
input and constants only) and whose else-branch passes its input through. Exactly B_s gates
with the indices 0..B_s-1 must exist: a gate that became a ``Where`` or a multiply would run
the block on every call, which is the cost this whole method avoids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgeskip.compile.errors import GateStructureError

CFG_INPUT = "cfg"
IMAGE_INPUT = "image"
# Ops allowed between cfg and an If condition: the exporter's Gather -> Equal(0) -> Not, and casts.
_CONDITION_OPS = {"Gather", "Equal", "Not", "Cast", "Identity", "Squeeze", "Reshape", "Greater", "Constant"}


@dataclass(frozen=True)
class Gate:
    """One gate: its If node's name and the cfg index that drives it."""

    node: str
    index: int
    then_nodes: int


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def cfg_length(model: onnx.ModelProto) -> int:
    """B_s as declared by the ``cfg`` input's static shape."""
    for inp in model.graph.input:
        if inp.name == CFG_INPUT:
            dims = inp.type.tensor_type.shape.dim
            if len(dims) != 1 or not dims[0].HasField("dim_value"):
                raise GateStructureError(f"input {CFG_INPUT!r} must be 1-D with a static length, got {dims}")
            return int(dims[0].dim_value)
    names = [i.name for i in model.graph.input]
    raise GateStructureError(f"the ONNX model has no {CFG_INPUT!r} input (inputs: {names}); "
                             "is it a gated edgeskip export?")


def find_gates(model: onnx.ModelProto) -> list[Gate]:
    """The top-level If nodes in graph order, each traced back to the cfg entry it reads."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consts = _constants(graph)
    gates = []
    for node in graph.node:
        if node.op_type != "If":
            continue
        index: int | None = None
        stack, seen = [node.input[0]], set()
        while stack:  # walk the condition's inputs back to graph inputs and constants
            name = stack.pop()
            if name in seen or name in consts:
                continue
            seen.add(name)
            if name == CFG_INPUT:
                continue
            src = producer.get(name)
            if src is None:
                raise GateStructureError(f"gate {node.name}: its condition depends on {name!r}, not only on cfg")
            if src.op_type not in _CONDITION_OPS:
                raise GateStructureError(f"gate {node.name}: its condition goes through {src.op_type}, "
                                         "expected cfg[k] != 0")
            if src.op_type == "Gather" and src.input[0] == CFG_INPUT:
                idx = consts.get(src.input[1])
                if idx is None or idx.size != 1:
                    raise GateStructureError(f"gate {node.name}: cfg is indexed by a non-constant")
                if index is not None:
                    raise GateStructureError(f"gate {node.name}: its condition reads more than one cfg entry")
                index = int(idx.reshape(-1)[0])
            stack.extend(i for i in src.input if i)
        if index is None:
            raise GateStructureError(f"gate {node.name}: its condition is not derived from the cfg input")
        branches = {a.name: a.g for a in node.attribute}
        els = branches.get("else_branch")
        if els is None or [n.op_type for n in els.node] != ["Identity"]:
            raise GateStructureError(f"gate {node.name}: the else-branch must be the identity (skip the block)")
        gates.append(Gate(node.name, index, len(branches["then_branch"].node)))
    return gates


def verify_gates(model: onnx.ModelProto, expected: int | None = None) -> list[Gate]:
    """Check for exactly B_s real gates reading cfg[0..B_s-1], one each; raise a clear error otherwise."""
    b_s = cfg_length(model)
    if expected is not None and expected != b_s:
        raise GateStructureError(f"the model has {expected} skippable blocks but the ONNX cfg input has {b_s} entries")
    gates = find_gates(model)
    if len(gates) != b_s:
        raise GateStructureError(
            f"expected {b_s} top-level If nodes (one per skip gate), found {len(gates)}: "
            f"{b_s - len(gates)} gate(s) did not become a real If (flattened to data flow?)")
    indices = sorted(g.index for g in gates)
    if indices != list(range(b_s)):
        raise GateStructureError(f"the gates read cfg entries {indices}, expected each of 0..{b_s - 1} once")
    check_condition_semantics(model, gates)
    return gates


def check_condition_semantics(model: onnx.ModelProto, gates: list[Gate]) -> None:
    """Evaluate the gate conditions alone (onnxruntime) on all-off, all-on and one-hot cfgs.

    The structural trace shows *which* entry a gate reads; this shows it means "run iff
    cfg[k] != 0" (not, say, an inverted test), which the compiler passes rely on.
    """
    import onnxruntime as ort

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    if_nodes = {n.name: n for n in graph.node if n.op_type == "If"}
    conds = [if_nodes[g.node].input[0] for g in gates]
    needed, stack = set(), list(conds)
    while stack:
        src = producer.get(stack.pop())
        if src is not None and src.name not in needed:
            needed.add(src.name)
            stack.extend(src.input)
    nodes = [n for n in graph.node if n.name in needed]
    used = {i for n in nodes for i in n.input}
    cfg_info = next(i for i in graph.input if i.name == CFG_INPUT)
    outputs = [onnx.helper.make_tensor_value_info(c, onnx.TensorProto.BOOL, None) for c in dict.fromkeys(conds)]
    sub = onnx.helper.make_model(
        onnx.helper.make_graph(nodes, "gate_conditions", [cfg_info], outputs,
                               [i for i in graph.initializer if i.name in used]),
        opset_imports=model.opset_import, ir_version=model.ir_version)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(sub.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    b_s = len(gates)
    probes = [np.zeros(b_s, np.int64), np.ones(b_s, np.int64), *np.eye(b_s, dtype=np.int64)]
    names = [o.name for o in outputs]
    for cfg in probes:
        values = dict(zip(names, session.run(names, {CFG_INPUT: cfg}), strict=True))
        for g, c in zip(gates, conds, strict=True):
            if bool(values[c]) != bool(cfg[g.index]):
                raise GateStructureError(f"gate {g.node} does not mean 'run iff cfg[{g.index}] != 0': "
                                         f"for cfg {cfg.tolist()} its condition is {bool(values[c])}")


@dataclass(frozen=True)
class DecisionGate:
    """A gate that decides from the data (SkipNet): its If node and the Conv that its condition is computed from."""

    node: str
    decided_by: str


def verify_self_gated(model: onnx.ModelProto, expected: int) -> list[DecisionGate]:
    """Check a self-gated export (SkipNet): the image is the only input and exactly ``expected`` top-level
    ``If`` nodes exist, each condition computed in the graph from a gate's convolution output, none traced
    to a graph input without passing through one (a condition read from an input would be a cfg in disguise)."""
    graph = model.graph
    inputs = [i.name for i in graph.input]
    if inputs != [IMAGE_INPUT]:
        raise GateStructureError(f"a self-gated model takes only {IMAGE_INPUT!r}, got inputs {inputs}")
    producer = {o: n for n in graph.node for o in n.output}
    gates = []
    for node in graph.node:
        if node.op_type != "If":
            continue
        seen, stack, conv = set(), [node.input[0]], None
        while stack:  # walk the condition's producers back until a Conv (the gate) or an input
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in inputs:
                raise GateStructureError(f"If {node.name!r}: its condition reaches input {name!r} without "
                                         "passing through a gate's convolution")
            src = producer.get(name)
            if src is None:
                continue  # an initializer or constant
            if src.op_type == "Conv":
                conv = src.name
                continue
            stack.extend(i for i in src.input if i)
        if conv is None:
            raise GateStructureError(f"If {node.name!r}: its condition is not computed from a gate's output")
        gates.append(DecisionGate(node.name, conv))
    if len(gates) != expected:
        raise GateStructureError(f"expected {expected} data-dependent gates, found {len(gates)} If nodes")
    return gates
