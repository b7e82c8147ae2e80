"""Convolution fusion for design-time evaluation: the same outputs, only true conv -> add -> relu chains fused."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import UserResNet, randomize_batchnorm
from torch import nn

from edgeskip.design.fold_batchnorm import fold_batchnorm
from edgeskip.design.fuse_convolutions import FusedConv2d, fuse_convolutions
from edgeskip.gating import GatedModel
from edgeskip.models import create_model


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() <= 1e-5 * a.abs().max().item() + 1e-5


def _fused(model: nn.Module) -> list[FusedConv2d]:
    return [m for m in model.modules() if isinstance(m, FusedConv2d)]


@pytest.mark.parametrize(("name", "convs"), [("resnet20", 19), ("resnet110", 109)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_registry_models_fuse_every_convolution_and_keep_their_outputs(name: str, convs: int,
                                                                       memory_format: torch.memory_format) -> None:
    folded, _ = fold_batchnorm(randomize_batchnorm(create_model(name, num_classes=10, in_channels=1)))
    fused, n = fuse_convolutions(folded)
    # Stem and every block's two convolutions; the residual adds ride on the second one.
    assert n == convs == len(_fused(fused))
    assert sum(f.add for f in _fused(fused)) == (convs - 1) // 2
    folded, fused = folded.to(memory_format=memory_format), fused.to(memory_format=memory_format)
    for batch in (5, 1):  # a second shape packs its weights again
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        x = x.contiguous(memory_format=memory_format)
        with torch.no_grad():
            assert _close(fused(x), folded(x))
    # After running (weights packed into opaque oneDNN tensors) it still copies and changes dtype.
    copied = copy.deepcopy(fused)
    with torch.no_grad():
        assert torch.equal(copied(x), fused(x))
        low = copy.deepcopy(fused).to(torch.bfloat16)(x.to(torch.bfloat16))
        assert low.dtype == torch.bfloat16 and low.shape == fused(x).shape and torch.isfinite(low).all()


def test_a_gated_model_fuses_inside_its_gates_and_still_skips() -> None:
    folded, _ = fold_batchnorm(GatedModel(randomize_batchnorm(create_model("resnet20", num_classes=10, in_channels=1))))
    fused, n = fuse_convolutions(folded)
    assert n == 19
    assert all(isinstance(fused.model.get_submodule(b), type(folded.model.get_submodule(b)))
               for b in folded.block_names)  # the gates keep their names: the engine's hooks find them
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outs = set()
    for cfg in ([1] * 6, [0, 1, 0, 1, 1, 0], [0] * 6):
        c = torch.tensor(cfg)
        with torch.no_grad():
            y = fused(x, c)
            assert _close(y, folded(x, c))
        outs.add(y.sum().item())
    assert len(outs) == 3  # each mask computes something different


class Tricky(nn.Module):
    """Chains that must not fuse: a convolution read twice, and an add that broadcasts."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.bias = nn.Parameter(torch.randn(1, 8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        z = F.relu(y) + y  # y has two readers: fusing relu into a would lose the plain y
        w = F.relu(self.b(z) + self.bias)  # broadcast add: fused form, separate ops at run time
        return self.c(w)  # a lone convolution: nothing to fuse


def test_only_safe_chains_fuse_and_broadcasts_fall_back() -> None:
    model = Tricky().eval()
    fused, n = fuse_convolutions(model)
    assert n == 1 and _fused(fused)[0].add and _fused(fused)[0].relu
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert _close(fused(x), model(x))


def test_autograd_and_other_dtypes_run_the_separate_ops() -> None:
    model = randomize_batchnorm(UserResNet("basic"))
    fused, _ = fuse_convolutions(model)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        assert _close(fused(x), expected)
        assert _close(fused.double()(x.double()).float(), expected)
    fused.float()
    out = fused(x.requires_grad_())  # no oneDNN inference op under autograd
    out.sum().backward()
    assert x.grad is not None and _close(out.detach(), expected)


def test_a_users_bottleneck_network_fuses_and_keeps_its_outputs() -> None:
    model = randomize_batchnorm(UserResNet("bottleneck"))
    folded, _ = fold_batchnorm(model)
    fused, n = fuse_convolutions(folded)
    assert n >= 5
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _close(fused(x), model(x))
