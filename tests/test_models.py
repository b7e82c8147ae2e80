"""Registered CIFAR ResNets: depth, skippable blocks (B_s = B - Seg) and MAC accounting."""

from __future__ import annotations

import pytest
import torch
from edgeskip_runtime.registry import UnknownNameError
from torch import nn

from edgeskip.models import create_model, list_models
from edgeskip.models.protocol import residual_blocks

DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110}


def test_all_paper_models_registered() -> None:
    assert set(DEPTHS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_depth_and_skippable_blocks(name: str) -> None:
    model = create_model(name)
    n = (DEPTHS[name] - 2) // 6
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == DEPTHS[name]  # 6n+1 convolutions plus the classifier
    assert len(residual_blocks(model)) == 3 * n
    skippable = model.skippable_blocks()
    assert len(skippable) == 3 * n - 3  # B_s = B - Seg
    assert all(not b.name.endswith(".0") for b in skippable)


@pytest.mark.parametrize("name", ["resnet20", "resnet110"])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 10), (3, 100)])
def test_configurable_io(name: str, in_channels: int, num_classes: int) -> None:
    model = create_model(name, in_channels=in_channels, num_classes=num_classes).eval()
    assert model(torch.randn(2, in_channels, 32, 32)).shape == (2, num_classes)


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_mac_profile_matches_hand_count(name: str) -> None:
    model = create_model(name, in_channels=3)
    profile = model.mac_profile()
    # A 16-channel BasicBlock at 32x32: two 3x3 convs of 16->16 channels.
    assert profile.blocks[0] == 2 * 32 * 32 * 16 * 16 * 9
    # The last stage's blocks run at 8x8 with 64 channels: the same MACs as the first stage's.
    assert profile.blocks[-1] == 2 * 8 * 8 * 64 * 64 * 9
    assert profile.macs([1] * len(profile.blocks)) == profile.total
    assert profile.macs([0] * len(profile.blocks)) == profile.base


def test_resnet20_total_macs() -> None:
    # ResNet-20 is known as ~41 MMAC on 3x32x32 inputs.
    assert 40e6 < create_model("resnet20").mac_profile().total < 42e6


def test_unknown_model_lists_known() -> None:
    with pytest.raises(UnknownNameError, match="resnet20"):
        create_model("resnet21")
