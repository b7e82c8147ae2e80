"""Pass ``channels-last-branch-weights``: store every convolution weight as HWIO, so none is transposed per call.

Why (Korol et al., Sec. II-A.2, gates lowered to ``if`` blocks): IREE's channels-last
preprocessing (``iree-preprocessing-convert-conv-to-channels-last``) rewrites each NCHW
convolution to NHWC/HWCF with transposes around it. Outside control flow the weight
transposes fold into the constants; inside an ``scf.if`` region they do not, so every call
transposes every branch weight again (toolchain facts, ResNet-20 batch 1: 27 ms instead of
0.8 ms). This pass stores each such weight pre-transposed (OIHW -> HWIO) and puts a
``Transpose`` back to OIHW inside the branch; the preprocessing's own transpose then cancels
it, and nothing is left to run per call. Numerically the model is unchanged.

On the torch-mlir front end (:mod:`edgeskip.compile.torch_mlir_export`) the same rewrite is done on the
PyTorch module before ``torch.export`` (:meth:`ChannelsLastBranchWeights.run_torch`): each ``Conv2d``
keeps its weight as HWIO and permutes it back to OIHW in ``forward``, so the exported branch functions
carry the same transpose pair. Measured on ResNet-20 (host, batch 1, all gates on): 52 ms without it,
1.1 ms with it.

Every convolution of the model is rewritten, not only those inside ``If`` branches:
``specialize-configs`` moves the whole gated network (top-level convolutions included) into
control flow, as the fallback for configurations outside the Pareto front. Outside control
flow the rewrite is free (IREE folds the two transposes at compile time as before).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

if TYPE_CHECKING:  # compiling (the onnx form) needs no torch: the torch form imports it when it runs
    from torch import nn

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


@functools.cache
def hwio_conv_class() -> type[nn.Module]:
    """``HwioConv2d``: a ``Conv2d`` whose weight is stored HWIO and permuted back to OIHW where it is used."""
    import torch
    from torch import nn

    class HwioConv2d(nn.Module):
        def __init__(self, conv: nn.Conv2d) -> None:
            super().__init__()
            if conv.padding_mode != "zeros":
                raise NotImplementedError(f"padding_mode {conv.padding_mode!r}")
            self.weight_hwio = nn.Parameter(conv.weight.detach().permute(*OIHW_TO_HWIO).contiguous(),
                                            requires_grad=False)
            self.bias = conv.bias
            self.stride, self.padding, self.dilation, self.groups = (conv.stride, conv.padding, conv.dilation,
                                                                     conv.groups)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv2d(x, self.weight_hwio.permute(*HWIO_TO_OIHW), self.bias, self.stride,
                                        self.padding, self.dilation, self.groups)

    return HwioConv2d


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

    def run_torch(self, model: nn.Module, ctx: PassContext) -> dict[str, Any]:
        """The torch-mlir front end's form: every ``Conv2d`` of ``model`` becomes a :class:`HwioConv2d`, in place."""
        from torch import nn

        cls = hwio_conv_class()
        convs = [name for name, m in model.named_modules() if type(m) is nn.Conv2d]
        for name in convs:
            parent, _, attr = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, attr, cls(getattr(owner, attr)))
        return {"convs_rewritten": len(convs)}
