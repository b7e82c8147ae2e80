"""Pass ``channels-last-branch-weights``: store every convolution weight as HWIO, so none is transposed per call.

Why (Korol et al., Sec. II-A.2, gates lowered to ``if`` blocks): IREE's channels-last
preprocessing (``iree-preprocessing-convert-conv-to-channels-last``) rewrites each NCHW
convolution to NHWC/HWCF with transposes around it. Outside control flow the weight
transposes fold into the constants; inside an ``scf.if`` region they do not, so every call
transposes every branch weight again (toolchain facts, ResNet-20 batch 1: 27 ms instead of
0.8 ms). This pass stores each such weight pre-transposed (OIHW -> HWIO) and puts a
``Transpose`` back to OIHW inside the branch; the preprocessing's own transpose then cancels
it, and nothing is left to run per call. Numerically the model is unchanged.

Every convolution of the model is rewritten, not only those inside ``If`` branches:
``specialize-configs`` moves the whole gated network (top-level convolutions included) into
control flow, as the fallback for configurations outside the Pareto front. Outside control
flow the rewrite is free (IREE folds the two transposes at compile time as before).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import CompilerPass, PassContext, register_pass

CHANNELS_LAST_PIPELINE = (
    "--iree-preprocessing-pass-pipeline=builtin.module(util.func(iree-preprocessing-convert-conv-to-channels-last))")
OIHW_TO_HWIO = (2, 3, 1, 0)
HWIO_TO_OIHW = [3, 2, 0, 1]
HWIO_SUFFIX = "__hwio"


def _used_names(graph: onnx.GraphProto, out: set[str]) -> set[str]:
    for node in graph.node:
        out.update(node.input)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _used_names(a.g, out)
    return out


@register_pass
class ChannelsLastBranchWeights(CompilerPass):
    name = "channels-last-branch-weights"
    stage = "onnx"
    description = "store conv weights as HWIO with a Transpose back to OIHW beside each conv (folds in branches too)"
    iree_flags = (CHANNELS_LAST_PIPELINE,)

    def run(self, model: onnx.ModelProto, ctx: PassContext) -> dict[str, Any]:
        top = model.graph
        inits = {i.name: i for i in top.initializer}
        hwio: dict[str, str] = {}  # OIHW initializer -> its HWIO copy (shared by all uses)
        rewritten = 0

        def rewrite(graph: onnx.GraphProto) -> None:
            nonlocal rewritten
            nodes = []
            for node in graph.node:
                for a in node.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        rewrite(a.g)
                w = node.input[1] if node.op_type == "Conv" and len(node.input) > 1 else None
                if w in inits and len(inits[w].dims) == 4:
                    if w not in hwio:
                        arr = np.ascontiguousarray(numpy_helper.to_array(inits[w]).transpose(OIHW_TO_HWIO))
                        hwio[w] = w + HWIO_SUFFIX
                        top.initializer.append(numpy_helper.from_array(arr, hwio[w]))
                    oihw = f"{node.name or w}{HWIO_SUFFIX}_to_oihw"
                    nodes.append(helper.make_node("Transpose", [hwio[w]], [oihw], perm=HWIO_TO_OIHW,
                                                  name=f"{node.name or w}_weight_to_oihw"))
                    node.input[1] = oihw
                    rewritten += 1
                nodes.append(node)
            del graph.node[:]
            graph.node.extend(nodes)

        rewrite(top)
        used = _used_names(top, set())
        kept = [i for i in top.initializer if i.name in used or i.name not in hwio]
        dropped = len(top.initializer) - len(kept)
        del top.initializer[:]
        top.initializer.extend(kept)
        return {"convs_rewritten": rewritten, "weights_stored_hwio": len(hwio), "oihw_weights_dropped": dropped}
