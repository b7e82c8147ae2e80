"""Weightless skip gates: exactness against the plain network, per-block skipping, bad cfgs."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import ExplicitNet, UserResNet, randomize_batchnorm
from torch import nn

from edgeskip.gating import GatedModel, SkipConfig, SkipConfigError
from edgeskip.models import create_model
from edgeskip.models.protocol import ProtocolError, replace_module, skippable_blocks

NETWORKS = {
    "resnet20": lambda: create_model("resnet20", in_channels=3),
    "resnet32": lambda: create_model("resnet32", in_channels=3),
    "user-basic": lambda: UserResNet("basic"),
    "user-bottleneck": lambda: UserResNet("bottleneck"),
    "user-explicit": ExplicitNet,
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(NETWORKS[name]())


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_all_ones_equals_ungated(name: str, dtype: torch.dtype) -> None:
    model = build(name)
    gated = GatedModel(model).eval()
    x = torch.randn(3, 3, 32, 32)
    cfg = torch.ones(gated.num_gates, dtype=dtype)
    torch.testing.assert_close(gated(x, cfg), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_skipping_block_equals_identity(name: str) -> None:
    model = build(name)
    gated = GatedModel(model).eval()
    x = torch.randn(2, 3, 32, 32)
    for i, ref in enumerate(skippable_blocks(model)):
        reference = copy.deepcopy(model)
        replace_module(reference, ref.name, nn.Identity())
        out = gated(x, SkipConfig.skipping(gated.num_gates, [i]).tensor())
        torch.testing.assert_close(out, reference(x), rtol=0, atol=0)
        assert not torch.equal(out, model(x)), f"skipping block {i} changed nothing"


def test_skipped_block_is_not_computed() -> None:
    model = build("resnet20")
    gated = GatedModel(model).eval()
    calls = []
    for name in gated.block_names:
        gated.model.get_submodule(name).block.register_forward_hook(lambda *_, n=name: calls.append(n))
    gated(torch.randn(1, 3, 32, 32), torch.tensor([1, 0, 1, 0, 0, 1]))
    assert calls == [gated.block_names[i] for i in (0, 2, 5)]


def test_gating_leaves_original_untouched() -> None:
    model = build("resnet20")
    before = model(torch.ones(1, 3, 32, 32))
    GatedModel(model)
    assert not any("SkipGate" in type(m).__name__ for m in model.modules())
    torch.testing.assert_close(model(torch.ones(1, 3, 32, 32)), before)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (torch.ones(5, dtype=torch.int64), r"shape \(6,\)"),
        (torch.ones(7, dtype=torch.int64), r"shape \(6,\)"),
        (torch.ones(1, 6, dtype=torch.int64), r"shape \(6,\)"),
        (torch.tensor([1, 1, 2, 1, 1, 1]), r"0 \(skip\) or 1 \(run\), found \[2\]"),
        (torch.tensor([1, -1, 1, 1, 1, 1]), r"found \[-1\]"),
        (torch.ones(6), "integer or bool"),
        ([1, 1, 1, 1, 1, 1], "must be a tensor"),
    ],
)
def test_bad_cfg_is_rejected_clearly(cfg, message: str) -> None:
    gated = GatedModel(build("resnet20"))
    with pytest.raises(SkipConfigError, match=message):
        gated(torch.randn(1, 3, 32, 32), cfg)


def test_skip_config_helpers() -> None:
    c = SkipConfig.skipping(4, [0, 3])
    assert c.mask == (0, 1, 1, 0) and c.n_skipped == 2
    assert SkipConfig.of(torch.tensor([True, False])).mask == (1, 0)
    with pytest.raises(SkipConfigError, match="entries"):
        SkipConfig.of([1, 0, 1], length=4)
    with pytest.raises(SkipConfigError):
        SkipConfig.skipping(3, [3])


def test_network_without_protocol_is_refused() -> None:
    with pytest.raises(ProtocolError, match="skippable_block_names"):
        GatedModel(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU()))


def test_shape_changing_block_cannot_be_skippable() -> None:
    class Bad(ExplicitNet):
        def __init__(self) -> None:
            super().__init__()
            from conftest import UserBlock

            self.blocks[2] = UserBlock(8, 8, stride=2)

    with pytest.raises(ProtocolError, match="downsample"):
        GatedModel(Bad())
