"""Convolution + element-wise fusion for design-time evaluation (Korol et al., Sec. II-A.3/4: sensitivity
and the Pareto search run the same trained network over the same images many times).

After batch-norm folding (:mod:`edgeskip.design.fold_batchnorm`) a residual block is
``relu(conv2(relu(conv1(x))) + identity)``: two convolutions and three passes over the activations.
oneDNN applies the bias, the ReLU and the residual add inside the convolution (post-ops), on weights
packed once into its blocked layout, so the block is two calls and no extra passes.

Measured on ResNet-110, batch 200 channels-last, 2 cores, side by side: 1.26x faster than the folded
eager network, with logits bit-identical to it (oneDNN post-ops round as the separate ops do). The
engine and the per-mask loop both evaluate the fused copy, so their answers are identical to each other.

Patterns are read from the traced data flow (:mod:`edgeskip.design.traced_regions`): a ``Conv2d`` whose
output has one user that is ``relu``, or ``add`` (then optionally ``relu``) with a tensor of the
convolution's output shape. A fused call falls back to the separate ops whenever oneDNN cannot run it
(not float32 on CPU, a broadcasting add, mkldnn unavailable), so fusion never changes what a network
computes, only how fast.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeskip.design.traced_regions import module_call_counts, rewrite_traced

_RELU = {torch.relu, F.relu}
_DTYPES = (torch.float32, torch.bfloat16)
_ADD = {operator.add, torch.add}


@functools.cache
def _has_fused_ops() -> bool:
    try:  # built with oneDNN, and a build that registers the fused ops (x86 and aarch64 wheels do)
        torch.ops.mkldnn._convolution_pointwise.binary  # noqa: B018 (looking the op up is the check)
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


def available() -> bool:
    return torch.backends.mkldnn.enabled and _has_fused_ops()


class FusedConv2d(nn.Module):
    """``unary(conv(x) [+ other])`` in one oneDNN call; the original convolution stays a submodule (its weights
    are still the parameters, so norms and ``.to()`` see them)."""

    def __init__(self, conv: nn.Conv2d, *, add: bool, relu: bool) -> None:
        super().__init__()
        self.conv = conv
        self.add = add
        self.relu = relu
        # oneDNN's layout of conv.weight, per input shape (the layout it picks depends on it): the batch, the
        # last partial batch, the one-image timing runs.
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"add={self.add}, relu={self.relu}"

    def _unfused(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        y = self.conv(x)
        if other is not None:
            y = y + other
        return torch.relu(y) if self.relu else y

    def _output_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        c = self.conv
        spatial = tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                        for size, p, d, k, s in zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride,
                                                    strict=True))
        return (x.shape[0], c.out_channels, *spatial)

    def _fusable(self, x: torch.Tensor, other: torch.Tensor | None) -> bool:
        """oneDNN runs it: float32 or bfloat16 on CPU, no autograd, and an add of a same-shape tensor in x's
        memory format."""
        if (torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype not in _DTYPES or x.dim() != 4
                or self.conv.weight.dtype != x.dtype or not available()):
            return False
        fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        if not x.is_contiguous(memory_format=fmt):
            return False
        return other is None or (other.dtype == x.dtype and tuple(other.shape) == self._output_shape(x)
                                 and other.is_contiguous(memory_format=fmt))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if not self._fusable(x, other):
            return self._unfused(x, other)
        c = self.conv
        packed = self._packed.get(tuple(x.shape))
        if packed is None:
            if len(self._packed) >= 8:  # a caller cycling through sizes: keep memory bounded
                self._packed.clear()
            packed = self._packed[tuple(x.shape)] = torch._C._nn.mkldnn_reorder_conv2d_weight(
                c.weight.detach().to_mkldnn(), list(c.padding), list(c.stride), list(c.dilation), c.groups,
                list(x.shape))
        bias = None if c.bias is None else c.bias.detach()
        args = (list(c.padding), list(c.stride), list(c.dilation), c.groups)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, *args,
                                                           "relu" if self.relu else "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, packed, bias, *args, "add", None,
                                                              "relu" if self.relu else None, [], "")

    def __getstate__(self) -> dict:
        # Packed weights are opaque oneDNN tensors that cannot be copied; a copy packs its own.
        return {**self.__dict__, "_packed": {}}

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> FusedConv2d:
        self._packed = {}  # the weights moved or changed type: pack again on the next call
        return super()._apply(fn, recurse)


def _is_relu(root: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _RELU and len(node.args) == 1 and not node.kwargs.get("inplace", False)
    if node.op == "call_method":
        return node.target == "relu" and len(node.args) == 1 and not node.kwargs
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        return type(m) is nn.ReLU and len(node.args) == 1 and not node.kwargs
    return False


def _is_plain_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADD and len(node.args) == 2 and not node.kwargs
            and all(isinstance(a, fx.Node) for a in node.args))


def _drop_identities(root: nn.Module, graph: fx.Graph) -> bool:
    """Remove calls of ``nn.Identity`` (what folding leaves of a norm), so conv -> relu chains become adjacent."""
    changed = False
    for node in list(graph.nodes):
        if (node.op == "call_module" and type(root.get_submodule(node.target)) is nn.Identity
                and len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node)):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            changed = True
    return changed


def _fuse_traced(root: nn.Module, graph: fx.Graph) -> tuple[nn.Module, int]:
    changed = _drop_identities(root, graph)
    calls = module_call_counts(graph)
    fused = 0
    for node in list(graph.nodes):
        if node.op != "call_module" or calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        conv = root.get_submodule(node.target)
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        chain, other = [node], None
        if len(node.users) == 1 and _is_plain_add(user := next(iter(node.users))):
            a, b = user.args
            other = b if a is node else a
            if other is node:  # conv(x) + conv(x)
                continue
            chain.append(user)
        if len(chain[-1].users) == 1 and _is_relu(root, user := next(iter(chain[-1].users))):
            chain.append(user)
        if len(chain) == 1:
            continue  # a lone convolution: nothing to fuse
        name = f"{node.target.replace('.', '_')}_fused"
        root.add_module(name, FusedConv2d(conv, add=other is not None, relu=_is_relu(root, chain[-1])))
        with graph.inserting_after(chain[-1]):
            new = graph.call_module(name, (node.args[0],) if other is None else (node.args[0], other))
        chain[-1].replace_all_uses_with(new)
        for dead in reversed(chain):  # each is unused once its successor is gone
            graph.erase_node(dead)
        fused += 1
    if not (fused or changed):
        return root, 0
    graph.lint()
    return fx.GraphModule(root, graph, class_name=type(root).__name__), fused


def fuse_convolutions(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with conv -> add -> relu chains fused; and how many convolutions were."""
    return rewrite_traced(model, _fuse_traced)
