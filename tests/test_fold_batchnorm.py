"""Batch-norm folding for design-time evaluation: same outputs, only true conv -> norm pairs folded."""

from __future__ import annotations

import pytest
import torch
from conftest import UserResNet, randomize_batchnorm
from torch import nn

from edgeskip.design.fold_batchnorm import fold_batchnorm
from edgeskip.gating import GatedModel
from edgeskip.models import create_model


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to float rounding, relative to the output's scale (a deep net with random statistics reaches 1e10)."""
    return (a - b).abs().max().item() <= 1e-5 * a.abs().max().item() + 1e-5


def _bn_count(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


@pytest.mark.parametrize(("name", "pairs"), [("resnet20", 19), ("resnet110", 109)])
def test_registry_models_fold_every_pair_and_keep_their_outputs(name: str, pairs: int) -> None:
    model = randomize_batchnorm(create_model(name, num_classes=10, in_channels=1)).eval()
    folded, n = fold_batchnorm(model)
    assert n == pairs and _bn_count(folded) == 0 and _bn_count(model) == pairs  # the original is untouched
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert _close(folded(x), model(x))


def test_a_gated_model_folds_inside_its_gates_and_still_skips() -> None:
    gated = GatedModel(randomize_batchnorm(create_model("resnet20", num_classes=10, in_channels=1))).eval()
    folded, n = fold_batchnorm(gated)
    assert n == 19
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    for cfg in ([1] * 6, [0, 1, 0, 1, 1, 0], [0] * 6):
        c = torch.tensor(cfg)
        with torch.no_grad():
            assert _close(folded(x, c), gated(x, c))


class SharedConvOutput(nn.Module):
    """conv -> bn, but the conv's output is also used directly: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = self.bn(y) + y
        return self.bn2(self.conv2(z))


def test_only_pairs_where_the_norm_alone_reads_the_conv_are_folded() -> None:
    model = randomize_batchnorm(SharedConvOutput()).eval()
    folded, n = fold_batchnorm(model)
    assert n == 1 and type(folded.bn) is nn.BatchNorm2d and type(folded.bn2) is nn.Identity
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert _close(folded(x), model(x))


def test_a_users_torchvision_style_network_folds_and_keeps_its_outputs() -> None:
    model = randomize_batchnorm(UserResNet("bottleneck")).eval()
    folded, n = fold_batchnorm(model)
    assert n == _bn_count(model) - _bn_count(folded) and n >= 1
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _close(folded(x), model(x))
