"""The prefix-sharing design-time engine gives exactly the naive per-mask loop's answers, with less work."""

from __future__ import annotations

import random

import pytest
import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.accuracy import evaluate
from edgeskip.data import load_dataset
from edgeskip.data.base import ImageSet
from edgeskip.design.config_eval import ConfigEvaluator, native_bf16, prepare_for_evaluation, resolve_precision
from edgeskip.design.prefix_engine import PrefixSharingEngine, PrefixSharingUnsupported
from edgeskip.gating import GatedModel
from edgeskip.models import create_model

MODELS = ["resnet20", "resnet110"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", limit=96)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, in_channels=1).eval()
    with torch.no_grad():  # random BatchNorm statistics, so that skipping a block changes the logits
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _masks(n: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    sensitivity = [tuple([1] * n)] + [tuple(int(j != i) for j in range(n)) for i in range(n)]
    order = rng.sample(range(n), n)  # nested candidates: skip the first N of a ranking
    nested = [tuple(int(j not in order[:k]) for j in range(n)) for k in range(n + 1)]
    randoms = [tuple(rng.randint(0, 1) for _ in range(n)) for _ in range(12)]
    return sensitivity + nested + randoms + randoms[:3]  # duplicates are evaluated once


def _naive(gated: GatedModel, masks, split, normalization, memory_format=torch.contiguous_format):
    return {m: evaluate(lambda x, m=m: gated(x, torch.tensor(m)), split, normalization, batch_size=32,
                        memory_format=memory_format) for m in set(masks)}


@pytest.mark.parametrize("budget", [1 << 30, 200_000], ids=["kept", "over-budget"])
@pytest.mark.parametrize("name", MODELS)
def test_engine_equals_the_naive_loop(name: str, budget: int, data) -> None:
    gated = GatedModel(_model(name)).eval()
    masks = _masks(gated.num_gates, seed=1)
    images = data.val
    if name == "resnet110":  # the naive loop is the slow part of this test: a third of the masks, 48 images
        masks, images = masks[::3], ImageSet(images.images[:48], images.labels[:48])
    engine = PrefixSharingEngine(gated, memory_budget_bytes=budget)
    got = engine.evaluate(masks, images, data.normalization, batch_size=32)
    want = _naive(gated, masks, images, data.normalization)
    assert set(got) == set(want)
    assert got == want  # accuracy, loss and margin, to the last bit
    assert len({e.accuracy for e in want.values()}) > 1  # the masks really differ
    assert engine.peak_bytes <= budget
    assert all(not g._forward_pre_hooks for g in gated.modules())  # hooks live only while it runs


@pytest.mark.parametrize("name", MODELS)
def test_sensitivity_masks_cost_about_half_of_the_naive_loop(name: str, data) -> None:
    gated = GatedModel(_model(name)).eval()
    n = gated.num_gates
    masks = [tuple([1] * n)] + [tuple(int(j != i) for j in range(n)) for i in range(n)]
    engine = PrefixSharingEngine(gated)
    engine.evaluate(masks, data.val, data.normalization, batch_size=len(data.val))
    # The plain loop walks (n + 1) * n gate positions. The engine walks the no-skip chain once (n steps) and,
    # for "skip i", only the n - i gates from i on: n (n + 1) / 2 + n, about half.
    assert engine.gate_passes == n * (n + 1) // 2 + n


def test_channels_last_engine_equals_channels_last_naive(data) -> None:
    gated = GatedModel(_model("resnet20")).eval().to(memory_format=torch.channels_last)
    masks = _masks(gated.num_gates, seed=2)
    got = PrefixSharingEngine(gated, memory_format=torch.channels_last).evaluate(masks, data.test, data.normalization,
                                                                                  batch_size=32)
    assert got == _naive(gated, masks, data.test, data.normalization, torch.channels_last)


class ImageAgain(nn.Module):
    """A network whose head reads the image again: a pass resumed at a gate cannot reproduce it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = create_model("resnet20", in_channels=1)
        self.scale = nn.Parameter(torch.tensor(0.5))

    def skippable_block_names(self) -> list[str]:
        return [b.name.removeprefix("inner.") and f"inner.{b.name}" for b in self.inner.skippable_blocks()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.scale * x.mean(dim=(1, 2, 3)).unsqueeze(1)


def test_a_network_that_rereads_the_image_falls_back_to_the_plain_loop(data) -> None:
    model = ImageAgain().eval()
    gated = GatedModel(model).eval()
    masks = _masks(gated.num_gates, seed=3)[:10]
    with pytest.raises(PrefixSharingUnsupported, match="ImageAgain"):
        PrefixSharingEngine(gated).evaluate(masks, data.val, data.normalization, batch_size=32)
    evaluator = ConfigEvaluator(model, data, batch_size=32)
    with pytest.warns(UserWarning, match="one by one"):
        evaluator.prefetch(masks, "val", progress=False)
    assert {m: evaluator.evaluation(m, "val") for m in masks} == _naive(evaluator.gated, masks, data.val,
                                                                         data.normalization)


def test_config_evaluator_prefetch_matches_single_evaluations(data) -> None:
    model = _model("resnet20")
    masks = _masks(6, seed=4)
    shared = ConfigEvaluator(model, data, batch_size=32)
    shared.prefetch(masks, "test", progress=False)
    plain = ConfigEvaluator(model, data, batch_size=32, prefix_sharing=False)
    assert all(shared.evaluation(m, "test") == plain.evaluation(m, "test") for m in masks)
    assert shared.evaluations == len(set(masks))


def test_cli_memory_default_is_the_engines() -> None:
    from edgeskip.cli import main
    from edgeskip.design.prefix_engine import DEFAULT_MEMORY_BUDGET

    option = next(p for p in main.commands["sensitivity"].params if p.name == "memory_mb")
    assert option.default << 20 == DEFAULT_MEMORY_BUDGET


def test_bf16_engine_equals_the_bf16_naive_loop(data) -> None:
    gated = prepare_for_evaluation(GatedModel(_model("resnet20"))).to(torch.bfloat16)
    masks = _masks(gated.num_gates, seed=5)
    got = PrefixSharingEngine(gated, dtype=torch.bfloat16).evaluate(masks, data.val, data.normalization, batch_size=32)
    want = {m: evaluate(lambda x, m=m: gated(x.to(torch.bfloat16), torch.tensor(m)).float(), data.val,
                        data.normalization, batch_size=32) for m in set(masks)}
    assert got == want


def test_selection_precision_runs_validation_in_bf16_and_test_in_fp32(data) -> None:
    model = _model("resnet20")
    masks = _masks(6, seed=6)[:8]
    fp32 = ConfigEvaluator(model, data, batch_size=32)
    bf16 = ConfigEvaluator(model, data, batch_size=32, selection_precision="bf16")
    assert (fp32.selection_precision, bf16.selection_precision) == ("fp32", "bf16")
    for ev in (fp32, bf16):
        ev.prefetch(masks, "val", progress=False)
        ev.prefetch(masks, "test", progress=False)
    assert all(bf16.evaluation(m, "test") == fp32.evaluation(m, "test") for m in masks)  # reported: float32
    assert any(bf16.evaluation(m, "val").loss != fp32.evaluation(m, "val").loss for m in masks)  # selected: bf16
    assert all(abs(bf16.accuracy(m) - fp32.accuracy(m)) <= 0.05 for m in masks)


def test_report_precision_bf16_runs_test_in_bf16_and_validation_as_selected(data) -> None:
    # Figure 1's --precision bf16: the test split uses the bfloat16 network, validation stays float32.
    model = _model("resnet20")
    masks = _masks(6, seed=7)[:8]
    fp32 = ConfigEvaluator(model, data, batch_size=32)
    fig1 = ConfigEvaluator(model, data, batch_size=32, report_precision="bf16")
    for ev in (fp32, fig1):
        for split in ("val", "test"):
            ev.prefetch(masks, split, progress=False)
    assert all(fig1.evaluation(m, "val") == fp32.evaluation(m, "val") for m in masks)
    assert any(fig1.evaluation(m, "test").loss != fp32.evaluation(m, "test").loss for m in masks)
    assert all(abs(fig1.accuracy(m, "test") - fp32.accuracy(m, "test")) <= 0.05 for m in masks)


def test_auto_precision_follows_the_cpu_and_bad_names_are_refused() -> None:
    assert resolve_precision("auto") == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("fp32") == "fp32"
    with pytest.raises(UsageError, match="unknown precision 'fp16'"):
        resolve_precision("fp16")
