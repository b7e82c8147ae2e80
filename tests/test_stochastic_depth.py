"""Stochastic depth: the survival rule, dropped blocks not computed, inverted scaling."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import randomize_batchnorm
from torch import nn

from edgeskip.models import create_model
from edgeskip.models.protocol import residual_blocks
from edgeskip.training.stochastic_depth import (
    StochasticDepth,
    apply_stochastic_depth,
    remove_stochastic_depth,
    survival_probability,
)


@pytest.mark.parametrize("name", ["resnet20", "resnet110"])
@pytest.mark.parametrize("p_last", [0.5, 0.8])
def test_survival_probabilities_follow_linear_rule(name: str, p_last: float) -> None:
    model = create_model(name)
    blocks = residual_blocks(model)
    survivals = apply_stochastic_depth(model, p_last)
    big_l = len(blocks)
    expected = [1 - (b.depth_index / big_l) * (1 - p_last) for b in blocks if b.skippable]
    assert survivals == pytest.approx(expected)
    wrapped = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    assert [w.survival for w in wrapped] == pytest.approx(expected)
    assert survivals[-1] == pytest.approx(p_last)  # the last block is block L
    assert all(a > b for a, b in itertools.pairwise(survivals))  # decays with depth


def test_survival_probability_rejects_bad_arguments() -> None:
    assert survival_probability(1, 1, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        survival_probability(0, 9, 0.5)
    with pytest.raises(ValueError):
        survival_probability(1, 9, 0.0)


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.delta = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + self.delta


def test_dropped_block_is_not_computed_and_kept_block_is_rescaled() -> None:
    block = Counting()
    sd = StochasticDepth(block, survival=0.25, generator=torch.Generator().manual_seed(0)).train()
    x = torch.zeros(4)
    outs = [sd(x) for _ in range(400)]
    kept = [o for o in outs if o.abs().sum() > 0]
    assert block.calls == len(kept)  # one forward per kept mini-batch, none for a dropped one
    assert 60 < len(kept) < 140  # ~25 % of 400
    torch.testing.assert_close(kept[0], torch.full((4,), 1 / 0.25))  # inverted scaling
    # The expectation over mini-batches equals the deterministic eval output.
    assert torch.stack(outs).mean().item() == pytest.approx(1.0, abs=0.25)
    sd.eval()
    torch.testing.assert_close(sd(x), torch.ones(4))


def test_wrappers_come_off_and_leave_the_plain_network() -> None:
    model = randomize_batchnorm(create_model("resnet20"))
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    apply_stochastic_depth(model, 0.5)
    torch.testing.assert_close(model.eval()(x), before)  # eval mode: no drop, no rescale
    remove_stochastic_depth(model)
    assert list(model.state_dict()) == keys
