"""The Gated Depth recipe (seed 003): sub-paths, skip-aware batch norm, the gating schedule, self-distillation,
and a gated-depth checkpoint through training, loading, design-time evaluation and gating."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.data import load_dataset
from edgeskip.design.config_eval import ConfigEvaluator, all_masks, prepare_for_evaluation
from edgeskip.design.prefix_engine import PrefixSharingEngine, PrefixSharingUnsupported
from edgeskip.gating import GatedModel
from edgeskip.models import create_model
from edgeskip.models.gated_depth import SkipAwareBatchNorm2d, stages, to_gated_depth
from edgeskip.models.protocol import ProtocolError
from edgeskip.training.checkpoint import load_checkpoint
from edgeskip.training.gated_depth import (
    SCHEDULES,
    GatedDepthObjective,
    GatedDepthOptions,
    gate_probabilities,
    is_distillation_step,
)
from edgeskip.training.trainer import TrainConfig, train
from tests.conftest import randomize_batchnorm

MODELS = ["resnet20", "resnet56"]


def _gd(name: str = "resnet20") -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(to_gated_depth(create_model(name, in_channels=1)))


@pytest.mark.parametrize("name", MODELS)
def test_stages_split_about_one_to_one_and_the_gated_units_are_the_skippable_blocks(name: str) -> None:
    model = _gd(name)
    n = {"resnet20": 3, "resnet56": 9}[name]
    for stage in stages(model):
        assert (len(stage.base), len(stage.gated)) == ((n + 1) // 2, n // 2)
    assert GatedModel(model).block_names == ["layer1.gated", "layer2.gated", "layer3.gated"]
    with pytest.raises(ProtocolError, match="already split"):
        to_gated_depth(model)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("num_stages", [1, 3, 4])
def test_the_schedule_stays_within_p_min_and_p_max(schedule: str, num_stages: int) -> None:
    options = GatedDepthOptions(schedule=schedule)
    for progress in [-0.5, 0.0, 0.1, 0.5, 0.99, 1.0, 2.0]:
        ps = gate_probabilities(options, num_stages, progress)
        assert len(ps) == num_stages and all(0.5 - 1e-12 <= p <= 0.9 + 1e-12 for p in ps)
    start, end = gate_probabilities(options, num_stages, 0.0), gate_probabilities(options, num_stages, 1.0)
    if schedule == "stage":
        assert start == end and start[0] == pytest.approx(0.9)
        assert num_stages == 1 or start[-1] == pytest.approx(0.5)
    if schedule == "time":
        assert start == [pytest.approx(0.9)] * num_stages and end == [pytest.approx(0.5)] * num_stages
    if schedule == "both":
        assert start == [pytest.approx(0.9)] * num_stages
        assert end == pytest.approx(gate_probabilities(GatedDepthOptions(), num_stages, 1.0))


def test_bad_options_are_refused_with_the_setting_named() -> None:
    for bad, setting in [(GatedDepthOptions(p_min=0.95), "gd_p_min"),
                         (GatedDepthOptions(schedule="sine"), "gd_schedule"),
                         (GatedDepthOptions(distill_every=0), "distill_every"),
                         (GatedDepthOptions(distill_alpha=1.5), "distill_alpha")]:
        with pytest.raises(UsageError) as e:
            bad.validate()
        assert e.value.setting == setting


def _call_counts(model: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, m in model.named_modules():
        if isinstance(m, SkipAwareBatchNorm2d):
            for which in ("on", "off"):
                key = f"{name}.{which}"
                counts[key] = 0
                getattr(m, which).register_forward_hook(lambda *_, key=key: counts.__setitem__(key, counts[key] + 1))
    for i, stage in enumerate(stages(model)):
        counts[f"gated{i}"] = 0
        stage.gated.register_forward_hook(lambda *_, i=i: counts.__setitem__(f"gated{i}", counts[f"gated{i}"] + 1))
    return counts


def test_distillation_runs_every_kth_step_with_the_full_network_as_teacher() -> None:
    model = _gd().train()
    objective = GatedDepthObjective(model, GatedDepthOptions(distill_every=4, distill_alpha=0.3),
                                    torch.Generator().manual_seed(0))
    x, y = torch.randn(6, 1, 32, 32), torch.randint(0, 10, (6,))
    counts = _call_counts(model)
    distilled = []
    for step in range(12):
        before = objective.distillation_steps
        objective(model, x, y, step, step / 12)
        distilled.append(objective.distillation_steps > before)
    assert distilled == [is_distillation_step(s, 4) for s in range(12)] == [s in (3, 7, 11) for s in range(12)]
    # The loss of a distillation step is CE(full) + a CE(base) + (1 - a) KL(full || base), by hand:
    torch.manual_seed(1)
    loss, logits = objective(model, x, y, 3, 0.5)
    switches = [s.switch for s in stages(model)]
    assert all(s.on and s.scale == 1.0 for s in switches)  # reset after the step
    torch.manual_seed(1)
    for s, p in zip(switches, gate_probabilities(objective.options, 3, 0.5), strict=True):
        s.on, s.scale = True, 1 / p
    full = model(x)
    for s in switches:
        s.on = False
    base = model(x)
    for s in switches:
        s.on, s.scale = True, 1.0
    kl = (full.softmax(1) * (full.log_softmax(1) - base.log_softmax(1))).sum(1).mean()
    ce = nn.functional.cross_entropy
    assert torch.allclose(logits, full, atol=1e-5)
    assert loss.item() == pytest.approx((ce(full, y) + 0.3 * ce(base, y) + 0.7 * kl).item(), rel=1e-4)
    assert counts["gated0"] > 0


def test_batch_norm_sets_follow_the_gate_in_training_and_under_the_gated_model() -> None:
    model = _gd().train()
    objective = GatedDepthObjective(model, GatedDepthOptions(distill_every=1000), torch.Generator().manual_seed(3))
    counts = _call_counts(model)
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    on_runs = [0, 0, 0]
    for step in range(40):  # per mini-batch: one draw per stage; the base BN set and the gated path agree
        objective(model, x, y, step, 0.0)
        for i in range(3):
            ran = counts[f"gated{i}"] - on_runs[i]
            on_runs[i] += ran
            assert counts[f"layer{i + 1}.base.0.bn1.on"] + counts[f"layer{i + 1}.base.0.bn1.off"] == step + 1
    assert [counts[f"layer{i + 1}.base.0.bn1.on"] for i in range(3)] == on_runs
    assert 0 < on_runs[2] < on_runs[0] <= 40  # p = 0.9, 0.7, 0.5 over the stages

    gated = GatedModel(model).eval()  # inference: the cfg bit picks the set (a deep copy: fresh counters)
    counts = _call_counts(gated.model)
    gated(x, torch.tensor([1, 0, 1]))
    assert counts["layer1.base.1.bn2.on"] == 1 and counts["layer1.base.1.bn2.off"] == 0
    assert counts["layer2.base.1.bn2.on"] == 0 and counts["layer2.base.1.bn2.off"] == 1
    assert counts["layer3.base.0.bn1.on"] == 1


def test_training_draws_skip_the_gated_path_and_calibrate_it_by_one_over_p() -> None:
    model = _gd().train()
    stage = stages(model)[0]
    h = torch.randn(2, 16, 32, 32)
    stage.switch.on, stage.switch.scale = False, 2.0
    assert torch.equal(stage(h), stage.base(h))
    stage.switch.on = True
    base = stage.base(h)
    torch.testing.assert_close(stage(h), base + 2.0 * (stage.gated(base) - base))


def test_design_time_keeps_both_batch_norm_sets_and_evaluates_mask_by_mask() -> None:
    gated = GatedModel(_gd())
    with pytest.raises(PrefixSharingUnsupported, match="layer1.base.0.bn1 reads the bit of a later gate"):
        PrefixSharingEngine(gated)
    # Folding and fusion must leave the skip-aware batch norms (gate followers) as they are: a fold into the
    # "on" set alone would give every mask that skips a stage the wrong statistics.
    prepared = prepare_for_evaluation(gated)
    assert sum(isinstance(m, SkipAwareBatchNorm2d) for m in prepared.modules()) == 12
    x = torch.randn(3, 1, 32, 32)
    for m in all_masks(3):
        torch.testing.assert_close(prepared(x, m.tensor()), gated(x, m.tensor()), atol=1e-4, rtol=1e-4)
    data = load_dataset("synthetic", limit=64)
    ev = ConfigEvaluator(to_gated_depth(create_model("resnet20", in_channels=data.in_channels)), data, batch_size=16)
    assert all(b.engine is None for b in ev._backends.values())
    ev.prefetch([m.mask for m in all_masks(3)], "val", progress=False)
    assert ev.evaluations == 8


def test_a_gated_depth_checkpoint_trains_resumes_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "gd.pt"
    config = TrainConfig(model="resnet20", dataset="synthetic", recipe="gated-depth", epochs=1, limit=128,
                         batch_size=32, lr=0.05, distill_every=2)
    train(config, out, progress=False)
    config.epochs = 2
    ck = train(config, out, resume=True, progress=False)
    assert ck.epoch == 2 and ck.recipe == "gated-depth"
    model = load_checkpoint(out).build_model()
    assert [len(s.gated) for s in stages(model)] == [1, 1, 1]
    off = dict(model.named_modules())["layer1.base.0.bn1"].off
    on = dict(model.named_modules())["layer1.base.0.bn1"].on
    assert not torch.equal(on.running_mean, off.running_mean)  # both sets were trained, separately
    gated = GatedModel(model).eval()
    x = torch.randn(2, *ck.input_shape)
    outs = {m.mask: gated(x, m.tensor()) for m in all_masks(3)}
    assert len({o.sum().item() for o in outs.values()}) == 8
    torch.testing.assert_close(outs[(1, 1, 1)], model(x))  # the plain forward is the full network


@pytest.fixture(scope="module")
def gd_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gd") / "gd.pt"
    train(TrainConfig(model="resnet20", dataset="synthetic", recipe="gated-depth", epochs=1, limit=128,
                      batch_size=32, lr=0.05), out, progress=False)
    return out


def test_a_gated_depth_bundle_compiles_and_every_configuration_equals_eager(gd_checkpoint: Path,
                                                                           tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from edgeskip_runtime.bundle import Bundle
    from edgeskip_runtime.module import CompiledModel
    from edgeskip_runtime.pareto import ConfigPoint, ParetoFront

    from edgeskip.compile.bundle import build_bundle
    from edgeskip.compile.export import export_checkpoint

    result = export_checkpoint(gd_checkpoint, tmp_path / "gd.onnx")
    assert len(result.gates) == 3  # the skip-aware batch norms are selects, not more Ifs
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert ops.count("If") == 3 and ops.count("Where") >= 24  # scale and shift of 12 skip-aware batch norms
    ck = load_checkpoint(gd_checkpoint)
    masks = [m.mask for m in all_masks(3)]
    front = ParetoFront(ck.model, ck.dataset, 3, [ConfigPoint(list(m), 0.5, 1.0) for m in
                                                  sorted(masks, key=lambda m: -sum(m))[:4]])
    front.save(tmp_path / "pareto.json")  # half the configurations specialized, half through the gates
    build_bundle(result.path, "host", tmp_path / "pareto.json", tmp_path / "bundle")
    compiled = CompiledModel(Bundle.open(tmp_path / "bundle"))
    gated = GatedModel(ck.build_model()).eval()
    rng = np.random.default_rng(0)
    for m in masks:
        x = rng.standard_normal((1, *ck.input_shape)).astype(np.float32)
        want = gated(torch.from_numpy(x), torch.tensor(m)).detach().numpy()
        got = np.asarray(compiled.infer_raw(x, compiled.check_cfg(list(m)))).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"configuration {m}")


def test_recipes_are_compared_on_one_report(gd_checkpoint: Path, synthetic_checkpoint: Path,
                                            standard_checkpoint: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgeskip.cli import main
    from edgeskip.design.workflow import DataOptions, pareto, sensitivity

    opts = DataOptions(limit=64)
    paths = {"standard": standard_checkpoint, "stochastic-depth": synthetic_checkpoint, "gated-depth": gd_checkpoint}
    fronts = {}
    for label, ck in paths.items():
        sensitivity(ck, tmp_path / f"{label}-s.json", opts, progress=False)
        pareto(ck, tmp_path / f"{label}-s.json", tmp_path / label / "pareto.json", opts, repeats=3, plots=False,
               progress=False)
        fronts[label] = tmp_path / label / "pareto.json"
    args = ["experiment", "recipes", "--limit", "64", "--samples", "16", "--out", str(tmp_path / "report")]
    for label in paths:
        args += ["--checkpoint", f"{label}={paths[label]}", "--front", f"{label}={fronts[label]}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "report" / "recipes.json").read_text())
    gd, sd = doc["systems"]["gated-depth"], doc["systems"]["stochastic-depth"]
    assert gd["configurations"]["count"] == 8 and gd["configurations"]["exhaustive"]
    # 8 masks fit in 16 samples, 64 do not: 16 uniform draws.
    assert sd["configurations"]["count"] == 16 and not sd["configurations"]["exhaustive"]
    assert sd["skippable_units"] == 6
    for s in doc["systems"].values():
        c = s["configurations"]
        assert c["min"] <= c["mean"] <= c["max"] and s["hypervolume"] >= 0
        at = s["accuracy_at_macs"]
        assert at["1.0"] == max(p["test_accuracy"] for p in s["front"])  # the whole front fits the full budget
        got = [at[k] for k in sorted(at) if at[k] is not None]
        assert got == sorted(got)  # a larger budget never does worse
    for a in paths:
        assert doc["fronts"]["coverage"][a][a] == 1.0  # a front covers itself
        for b in doc["fronts"]["dominates"][a]:
            assert doc["fronts"]["coverage"][a][b] == 1.0 and doc["fronts"]["coverage"][b][a] < 1.0
    md = (tmp_path / "report" / "recipes.md").read_text()
    assert "| gated-depth | gated-depth |" in md and "Front coverage C(row, column)" in md
    assert (tmp_path / "report" / "recipes.png").stat().st_size > 10_000
    bad = CliRunner().invoke(main, ["experiment", "recipes", "--checkpoint", f"gd={gd_checkpoint}", "--front",
                                    f"sd={fronts['stochastic-depth']}", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "every system needs a checkpoint and a front" in bad.output


def test_front_coverage_counts_weak_dominance_and_dominance_needs_the_other_way_to_fail() -> None:
    from edgeskip_runtime.pareto import ConfigPoint

    from edgeskip.experiments.recipes import front_coverage, front_dominance

    def pts(*acc_lat: tuple[float, float]) -> list[ConfigPoint]:
        return [ConfigPoint(mask=[1], val_accuracy=a, latency_ms=t) for a, t in acc_lat]

    parent = pts((0.90, 2.0), (0.80, 1.0))
    better = pts((0.90, 2.0), (0.85, 1.0), (0.70, 0.5))  # ties one point, beats the other, adds a faster one
    crossing = pts((0.95, 3.0), (0.60, 0.8))
    assert front_coverage(better, parent) == 1.0  # an equal point counts as covered
    assert front_coverage(parent, better) == pytest.approx(1 / 3)
    assert front_coverage(crossing, parent) == 0.0 and front_coverage(parent, crossing) == 0.0
    assert front_coverage(parent, []) == 1.0
    d = front_dominance({"parent": parent, "better": better, "crossing": crossing, "same": list(parent)})
    assert d["dominates"]["better"] == ["parent", "same"]
    assert d["dominates"]["parent"] == [] and d["dominates"]["same"] == []  # equal fronts: neither dominates
    assert d["dominates"]["crossing"] == []


# --- The hybrid (gated-depth-hybrid): block-level units inside the gated sub-paths, stochastic depth there. ---

def _hybrid(name: str) -> tuple[nn.Module, Any]:
    from edgeskip.training.recipes import RECIPES, RecipeOptions

    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name, in_channels=1)).train()
    objective = RECIPES.get("gated-depth-hybrid")(model, RecipeOptions(p_last=0.5), torch.Generator().manual_seed(0))
    return model, objective


@pytest.mark.parametrize("name", MODELS)
def test_the_hybrid_has_one_unit_per_gated_block_and_the_batch_norms_follow_each_head(name: str) -> None:
    model, _ = _hybrid(name)
    per_stage = {"resnet20": 1, "resnet56": 4}[name]
    names = [f"layer{s}.gated.{i}" for s in (1, 2, 3) for i in range(per_stage)]
    assert model.skippable_block_names() == names
    follows = {m.follows for m in model.modules() if isinstance(m, SkipAwareBatchNorm2d)}
    assert follows == {"layer1.gated.0", "layer2.gated.0", "layer3.gated.0"}
    gated = GatedModel(model).eval()  # the cfg bit of a head picks its stage's batch-norm set
    assert gated.block_names == names
    counts = _call_counts(gated.model)
    cfg = torch.ones(len(names), dtype=torch.int64)
    cfg[names.index("layer2.gated.0")] = 0
    gated(torch.randn(1, 1, 32, 32), cfg)
    assert counts["layer1.base.0.bn1.on"] == 1 and counts["layer2.base.0.bn1.off"] == 1
    assert counts["layer2.base.0.bn1.on"] == 0


def test_the_hybrid_drops_blocks_after_each_head_with_decaying_survival() -> None:
    from edgeskip.training.stochastic_depth import StochasticDepth

    model, objective = _hybrid("resnet56")
    wrapped = {n: m.survival for n, m in model.named_modules() if isinstance(m, StochasticDepth)}
    assert sorted(wrapped) == sorted(f"layer{s}.gated.{i}" for s in (1, 2, 3) for i in (1, 2, 3))
    order = [wrapped[f"layer{s}.gated.{i}"] for s in (1, 2, 3) for i in (1, 2, 3)]
    assert order == sorted(order, reverse=True) and 0.5 <= order[-1] < order[0] < 1.0
    assert order[-1] == pytest.approx(0.5)  # layer3.gated.3 is the network's last block
    runs = {"head": 0, "later": 0}
    stage = stages(model)[0]
    stage.gated[0].register_forward_hook(lambda *_: runs.__setitem__("head", runs["head"] + 1))
    stage.gated[3].block.register_forward_hook(lambda *_: runs.__setitem__("later", runs["later"] + 1))
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 10, (2,))
    for step in range(60):
        objective(model, x, y, step, 0.0)
    assert 0 < runs["later"] < runs["head"]  # a later block runs only with its head, and not always then


def test_a_hybrid_checkpoint_saves_the_plain_network_and_loads_at_block_level(tmp_path: Path) -> None:
    out = tmp_path / "hybrid.pt"
    ck = train(TrainConfig(model="resnet56", dataset="synthetic", recipe="gated-depth-hybrid", epochs=1, limit=64,
                           batch_size=32, lr=0.05, p_last=0.6), out, progress=False)
    assert ck.recipe == "gated-depth-hybrid" and ck.p_last == 0.6
    assert not any(".block." in k for k in ck.state_dict)  # the stochastic-depth wrappers are stripped
    model = load_checkpoint(out).build_model()
    assert len(model.skippable_block_names()) == 12
    gated = GatedModel(model).eval()
    x = torch.randn(1, *ck.input_shape)
    torch.testing.assert_close(gated(x, torch.ones(12, dtype=torch.int64)), model(x))
