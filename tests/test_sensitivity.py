"""Sensitivity analysis finds a block made destructive, and every ranker yields a permutation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeskip.data import load_dataset
from edgeskip.design.config_eval import ConfigEvaluator
from edgeskip.design.sensitivity import RANKERS, run_sensitivity
from edgeskip.training.checkpoint import load_checkpoint


def evaluator_for(checkpoint: Path, destroy: int | None = None) -> ConfigEvaluator:
    ck = load_checkpoint(checkpoint)
    model = ck.build_model()
    if destroy is not None:
        # Make skippable block `destroy` wreck the features: a huge residual drowns the identity path.
        block = model.get_submodule(model.skippable_blocks()[destroy].name)
        with torch.no_grad():
            block.bn2.weight.mul_(-40.0)
    data = load_dataset(ck.dataset, limit=300, seed=ck.train_config["seed"])
    data.normalization = ck.normalization
    return ConfigEvaluator(model, data)


@pytest.mark.parametrize("destroy", [0, 3, 5])
def test_sensitivity_ranks_a_destructive_block_as_most_important(synthetic_checkpoint: Path, destroy: int) -> None:
    ev = evaluator_for(synthetic_checkpoint, destroy)
    doc = run_sensitivity(ev, progress=False)
    # Skipping the destructive block *raises* accuracy, so it must come first (least important to keep).
    assert doc["order"][0] == destroy
    per_block = {p["index"]: p["accuracy_skipped"] for p in doc["per_block"]}
    assert per_block[destroy] == max(per_block.values())
    assert per_block[destroy] > doc["baseline_accuracy"]


@pytest.mark.parametrize("ranker", RANKERS.names())
def test_every_ranker_returns_a_permutation_and_full_document(synthetic_checkpoint: Path, ranker: str) -> None:
    ev = evaluator_for(synthetic_checkpoint)
    doc = run_sensitivity(ev, ranker=ranker, seed=3, progress=False)
    assert sorted(doc["order"]) == list(range(6))
    assert doc["schema"] == "edgeskip.sensitivity/1" and doc["split"] == "val"
    assert [p["name"] for p in doc["per_block"]] == ev.gated.block_names
    for p in doc["per_block"]:
        assert p["accuracy_drop"] == pytest.approx(doc["baseline_accuracy"] - p["accuracy_skipped"])


def test_random_ranker_is_seeded(synthetic_checkpoint: Path) -> None:
    ev = evaluator_for(synthetic_checkpoint)
    a = run_sensitivity(ev, ranker="random", seed=1, progress=False)["order"]
    b = run_sensitivity(ev, ranker="random", seed=1, progress=False)["order"]
    c = [run_sensitivity(ev, ranker="random", seed=s, progress=False)["order"] for s in range(2, 6)]
    assert a == b and any(o != a for o in c)


def test_greedy_first_choice_agrees_with_sensitivity(synthetic_checkpoint: Path) -> None:
    ev = evaluator_for(synthetic_checkpoint, destroy=2)
    greedy = run_sensitivity(ev, ranker="greedy", progress=False)["order"]
    assert greedy[0] == 2


def test_l2_ranker_orders_by_weight_norm(synthetic_checkpoint: Path) -> None:
    ev = evaluator_for(synthetic_checkpoint)
    gate = ev.gated.model.get_submodule(ev.gated.block_names[4])
    with torch.no_grad():
        for p in gate.block.parameters():
            p.mul_(1e-3)
    assert run_sensitivity(ev, ranker="l2", progress=False)["order"][0] == 4
