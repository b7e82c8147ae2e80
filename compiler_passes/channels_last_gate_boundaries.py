"""Pass ``channels-last-gate-boundaries``: gates take and return NHWC activations.

Why (Korol et al., Sec. II-A.2: the gates must cost nothing when every block runs): IREE's
channels-last preprocessing keeps activations NHWC between convolutions, but an ONNX ``If``
is NCHW at its boundary, so every gate forces a layout change in and out. Measured on the
gated ResNet-20 (``iree-compile --compile-to=stream``), the producer of each gate input then
writes the activation twice, NHWC for the branch and NCHW for the skip path, packed into one
buffer. The skip path's buffer offset differs from the branch result's, so every later
gate's command buffer captures a *dynamic* offset and IREE can no longer memoize it: each
taken branch was re-recorded on every call (for ResNet-110, all 51 branches).

The rewrite, per gate ``y = If(cfg[k], block(x), x)``::

    x_nhwc = Transpose(x, [0, 2, 3, 1])
    y_nhwc = If(cfg[k], then: Transpose(block(Transpose(x_nhwc, [0, 3, 1, 2])), [0, 2, 3, 1]),
                        else: Identity(x_nhwc))
    y      = Transpose(y_nhwc, [0, 3, 1, 2])

A gate that reads the previous gate's result takes ``y_nhwc`` directly, inside each branch
the added transposes cancel the preprocessing's own, and the skip path hands on the very
buffer it received. Numerically nothing changes (transposes are exact).

On the torch-mlir front end the same layout is set on the PyTorch module before ``torch.export``
(:meth:`ChannelsLastGateBoundaries.run_torch`): every gate's ``torch.cond`` takes and returns NHWC, with
the transposes inside each branch (``GatedModel.set_gate_boundary_layout``); between two gates the
NCHW -> NHWC -> NCHW pair is left for IREE to fold.

Measured (2-core x86, batch 1, local-sync, caching allocator, all gates on, gated / plain):
ResNet-20 1.098 -> 1.057, ResNet-110 1.104 -> 1.064 (``iree-benchmark-module``); in
``benchmarks/compile_bench.py`` 1.061 -> 1.054 and 1.171 -> 1.080. Every branch command buffer
becomes memoized (no ``hal.command_buffer.create`` per call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import onnx
from onnx import helper

if TYPE_CHECKING:  # compiling (the onnx form) needs no torch
    from torch import nn

from . import CompilerPass, PassContext, register_pass
from .channels_last_branch_weights import CHANNELS_LAST_PIPELINE

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def branch_captures(graph: onnx.GraphProto, outer_constants: set[str]) -> list[str]:
    """Names a subgraph reads from the enclosing scope (activations only, in first-use order)."""
    defined = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    defined |= {i.name for i in graph.initializer}
    used = [name for n in graph.node for name in n.input if name]
    for n in graph.node:  # names read by nested subgraphs count as reads of this one
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                used.extend(branch_captures(a.g, outer_constants))
    return [u for u in dict.fromkeys(used) if u not in defined and u not in outer_constants]


def _nhwc_value_info(info: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(info)
    out.name = name
    dims = out.type.tensor_type.shape.dim
    if len(dims) == 4:
        permuted = [onnx.TensorShapeProto.Dimension() for _ in range(4)]
        for i, j in enumerate(TO_NHWC):
            permuted[i].CopyFrom(dims[j])
        del dims[:]
        dims.extend(permuted)
    return out


def _rank_of(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: len(v.type.tensor_type.shape.dim)
            for v in [*g.input, *g.value_info, *g.output] if v.type.tensor_type.HasField("shape")}


@register_pass
class ChannelsLastGateBoundaries(CompilerPass):
    name = "channels-last-gate-boundaries"
    stage = "onnx"
    description = "gates take and return NHWC activations, so the skip path and the branch share one buffer layout"
    iree_flags = (CHANNELS_LAST_PIPELINE,)

    def run(self, model: onnx.ModelProto, ctx: PassContext) -> dict[str, Any]:
        top = model.graph
        constants = {i.name for i in top.initializer}
        rank = _rank_of(model)
        nodes: list[onnx.NodeProto] = []
        nhwc_of: dict[str, str] = {}  # NCHW activation -> its NHWC form (shared by all gates reading it)
        rewritten = left_alone = layout_changes = 0
        for node in top.node:
            if node.op_type != "If":
                nodes.append(node)
                continue
            branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
            captured = sorted({c for g in branches.values() for c in branch_captures(g, constants)})
            if (len(captured) != 1 or len(node.output) != 1 or rank.get(captured[0]) != 4
                    or any(len(g.output) != 1 for g in branches.values())):
                nodes.append(node)  # not a gate over one NCHW activation: nothing to gain, leave it
                left_alone += 1
                continue
            x, y = captured[0], node.output[0]
            if x not in nhwc_of:
                nhwc_of[x] = f"{x}__nhwc"
                nodes.append(helper.make_node("Transpose", [x], [nhwc_of[x]], perm=TO_NHWC, name=f"{x}__to_nhwc"))
                layout_changes += 1
            for label, g in branches.items():
                x_in = f"{node.name or y}__{label}__nchw_in"
                for n in g.node:
                    for i, name in enumerate(n.input):
                        if name == x:
                            n.input[i] = x_in
                result = g.output[0]
                result_nhwc = f"{result.name}__nhwc"
                body = list(g.node)
                del g.node[:]
                g.node.extend([helper.make_node("Transpose", [nhwc_of[x]], [x_in], perm=TO_NCHW, name=f"{x_in}__t"),
                               *body,
                               helper.make_node("Transpose", [result.name], [result_nhwc], perm=TO_NHWC,
                                                name=f"{result_nhwc}__t")])
                g.output[0].CopyFrom(_nhwc_value_info(result, result_nhwc))
            node.output[0] = nhwc_of[y] = f"{y}__nhwc"  # the next gate reads it as is
            nodes.append(node)
            nodes.append(helper.make_node("Transpose", [node.output[0]], [y], perm=TO_NCHW, name=f"{y}__to_nchw"))
            rewritten += 1
        del top.node[:]
        top.node.extend(nodes)
        # Stale shapes of renamed values would mislead the importer: infer them again.
        del top.value_info[:]
        model.CopyFrom(onnx.shape_inference.infer_shapes(model))
        return {"gates_rewritten": rewritten, "ifs_left_alone": left_alone, "layout_changes": layout_changes}

    def run_torch(self, model: nn.Module, ctx: PassContext) -> dict[str, Any]:
        """The torch-mlir front end's form: every gate of the GatedModel ``model`` exports NHWC, in place."""
        return {"gates_rewritten": model.set_gate_boundary_layout("nhwc")}
