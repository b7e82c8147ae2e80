"""Batch-norm folding for design-time evaluation (Korol et al., Sec. II-A.3/4: sensitivity and the Pareto
search evaluate the trained network many times; nothing in it changes between evaluations).

In eval mode a BatchNorm2d that reads only a Conv2d's output is an affine map per channel, so it can be
folded into the convolution's weights and bias: one pass over the activations fewer per convolution.
Measured on ResNet-110, batch 200 channels-last, 2 cores: 1.18x faster. The outputs agree to float
rounding (about 5e-6 on the logits), and the engine and the per-mask loop both evaluate the folded copy,
so their answers stay identical to each other.

Which convolution feeds which norm is read from the data flow, not from attribute names: every region
:mod:`edgeskip.design.traced_regions` traces is searched, and a pair is folded only where the
convolution is called once, its output goes to the norm alone, and the norm is called once on it.
"""

from __future__ import annotations

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgeskip.design.traced_regions import module_call_counts, rewrite_traced


def _set(root: nn.Module, qualified: str, module: nn.Module) -> None:
    parent_name, _, name = qualified.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)


def _fold_traced(root: nn.Module, graph: fx.Graph) -> int:
    calls = module_call_counts(graph)
    folded = 0
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        bn = root.get_submodule(node.target)
        if type(bn) is not nn.BatchNorm2d or not bn.track_running_stats or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or src.op != "call_module" or calls[src.target] != 1 or len(src.users) != 1:
            continue
        conv = root.get_submodule(src.target)
        if type(conv) is not nn.Conv2d or conv.out_channels != bn.num_features:
            continue
        _set(root, src.target, fuse_conv_bn_eval(conv, bn))
        _set(root, node.target, nn.Identity())
        folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded; and how many were folded."""
    return rewrite_traced(model, lambda module, graph: (module, _fold_traced(module, graph)))
