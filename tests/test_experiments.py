"""The paper's evaluation commands (Figure 1, Figure 6, Table I) on real bundles of the synthetic
resnet20: the Original (standard checkpoint, full depth only), SkipNet (self-gated) and Ours (a front),
each exported, compiled with IREE and run through the real runtime, in-process and over HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_skipnet_checkpoint
from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.module import CompiledModel

from edgeskip.cli import main
from edgeskip.compile.bundle import build_bundle
from edgeskip.compile.errors import CompileError
from edgeskip.compile.export import export_checkpoint
from edgeskip.data import load_dataset
from edgeskip.experiments import figure1 as fig1
from edgeskip.experiments.figure6 import figure6, overtakes_at, trimmed_mean
from edgeskip.experiments.table1 import table1
from edgeskip.training.checkpoint import load_checkpoint
from edgeskip.training.skipnet import evaluate_skipnet

LIMIT = 300  # test images: enough for accuracies to differ between systems, seconds to run


@pytest.fixture(scope="module")
def systems(standard_checkpoint: Path, bundles, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("experiment")
    original = export_checkpoint(standard_checkpoint, root / "original.onnx").path
    skipnet_ck = make_skipnet_checkpoint(standard_checkpoint, root / "skipnet.pt")
    skipnet = export_checkpoint(skipnet_ck, root / "skipnet.onnx").path
    return {"ours": bundles("host").path,
            "original": build_bundle(original, "host", None, root / "original", full_depth_only=True).path,
            "skipnet": build_bundle(skipnet, "host", None, root / "skipnet").path,
            "skipnet_checkpoint": skipnet_ck, "original_onnx": original}


def test_full_depth_only_bundle_is_the_standard_network_at_full_depth(systems: dict[str, Path],
                                                                      standard_checkpoint: Path) -> None:
    bundle = Bundle.open(systems["original"])
    front = bundle.pareto
    ck = load_checkpoint(standard_checkpoint)
    assert len(front.configs) == 1 and front.configs[0].mask == [1] * 6
    assert front.configs[0].val_accuracy == ck.metrics[-1]["val_accuracy"]
    assert front.meta.get("full_depth_only") is True and not bundle.manifest.self_gated
    net = ck.build_model().eval()
    x = torch.randn(1, *ck.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x).numpy()
    assert np.allclose(CompiledModel(bundle).infer(x.numpy(), [1] * 6), want, atol=1e-4)


def test_full_depth_only_takes_no_pareto_file(systems: dict[str, Path], pareto_file: Path, tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="give no Pareto file"):
        build_bundle(systems["original_onnx"], "host", pareto_file, tmp_path / "b", full_depth_only=True)
    assert not (tmp_path / "b").exists()


def test_trimmed_mean_drops_the_slowest_samples() -> None:
    assert trimmed_mean([1.0] * 98 + [100.0, 100.0]) == 1.0
    assert trimmed_mean([2.0]) == 2.0


def test_overtakes_at_is_where_every_deeper_skip_is_faster() -> None:
    front = [{"n_skipped": k, "latency_ms": ms} for k, ms in enumerate([10, 9, 8.5, 7, 6, 5])]
    assert overtakes_at(front, 7.5) == 3
    assert overtakes_at(front, 4.0) is None
    assert overtakes_at(front, 11.0) == 0
    bumpy = [{"n_skipped": k, "latency_ms": ms} for k, ms in enumerate([10, 6, 8, 5])]
    assert overtakes_at(bumpy, 7.0) == 3  # 6 ms at one skip does not count: 8 ms at two is slower again


def test_figure6_measures_three_systems_through_their_compiled_modules(systems: dict[str, Path],
                                                                       standard_checkpoint: Path,
                                                                       tmp_path: Path) -> None:
    doc = figure6(systems["ours"], systems["original"], systems["skipnet"], tmp_path,
                  skipnet_checkpoint=systems["skipnet_checkpoint"], limit=LIMIT, repeats=5, progress=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"figure6.json", "figure6.png", "figure6.md"}
    assert json.loads((tmp_path / "figure6.json").read_text())["schema"] == "edgeskip.figure6/1"
    assert [p["n_skipped"] for p in doc["ours"]] == [c.n_skipped for c in Bundle.open(systems["ours"]).pareto.configs]
    assert doc["original"]["speedup"] == 1.0
    for p in doc["ours"]:
        assert p["speedup"] == pytest.approx(doc["original"]["latency_ms"] / p["latency_ms"])
        assert p["energy_mj"] > 0
    # The compiled modules' accuracies are the eager networks' on the same images.
    test = load_dataset("synthetic").test
    images, labels = test.images[:LIMIT], test.labels[:LIMIT]
    std = load_checkpoint(standard_checkpoint)
    with torch.no_grad():
        eager = (std.build_model().eval()(std.normalization.apply(images)).argmax(1) == labels).float().mean().item()
    assert doc["original"]["test_accuracy"] == pytest.approx(eager, abs=1 / LIMIT)
    sk = doc["skipnet"]["test_set"]["skipnet"]
    ck = load_checkpoint(systems["skipnet_checkpoint"])
    net = ck.build_model()
    subset = type(test)(images, labels)
    want = evaluate_skipnet(net, subset, ck.normalization)
    assert sk["mean_skipped"] == pytest.approx(want.mean_skipped)
    assert sk["eager_compiled_agreement"] >= 1 - 1 / LIMIT
    assert doc["skipnet"]["test_accuracy"] == pytest.approx(want.accuracy, abs=1 / LIMIT)
    assert sum(sk["skipped_histogram"].values()) == LIMIT
    lat = doc["skipnet"]["test_set"]["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["max"] and lat["max_over_min"] >= 1
    md = (tmp_path / "figure6.md").read_text()
    assert "| Original | 0 |" in md and "SkipNet per-input latency" in md


def test_figure6_refuses_bundles_in_the_wrong_roles(systems: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a self-gated"):
        figure6(systems["ours"], systems["original"], systems["original"], tmp_path, limit=10, progress=False)
    with pytest.raises(UsageError, match="full-depth-only"):
        figure6(systems["ours"], systems["ours"], systems["skipnet"], tmp_path, limit=10, progress=False)
    assert not (tmp_path / "figure6.json").exists()


def test_figure6_needs_the_fronts_test_accuracies(systems: dict[str, Path], tmp_path: Path) -> None:
    from edgeskip_runtime.bundle import rewrite_bundle

    shutil.copytree(systems["ours"], tmp_path / "ours")
    doc = json.loads((tmp_path / "ours" / "pareto.json").read_text())
    for c in doc["configs"]:
        c.pop("test_accuracy")
    rewrite_bundle(tmp_path / "ours", {"pareto.json": json.dumps(doc).encode()})
    with pytest.raises(UsageError, match="no test accuracies"):
        figure6(tmp_path / "ours", systems["original"], systems["skipnet"], tmp_path / "out", limit=10,
                progress=False)


@pytest.mark.parametrize("path", ["in-process", "http"])
def test_table1_runs_the_three_systems_on_the_same_workload(systems: dict[str, Path], path: str,
                                                           tmp_path: Path) -> None:
    doc = table1(systems["ours"], systems["original"], systems["skipnet"], tmp_path, paths=[path],
                 regimes=["period x0.5"], requests=60, repeats=2, progress=False)
    r = doc["paths"][path]["period x0.5"]
    counts = {name: r["systems"][name]["processed"] for name in ("Original", "SkipNet", "Ours")}
    assert all(n > 0 for n in counts.values())
    for name in ("Original", "SkipNet", "Ours"):
        s = r["systems"][name]
        assert s["processed"] + s["dropped"] == 2 * 60 and len(s["processed_per_repeat"]) == 2
    assert r["Ours"]["processed_inferences_x"] == pytest.approx(counts["Ours"] / counts["Original"])
    assert r["SkipNet"]["processed_inferences_x"] == pytest.approx(counts["SkipNet"] / counts["Original"])
    acc = {name: r["systems"][name]["online_accuracy"] for name in ("Original", "Ours")}
    assert r["Ours"]["accuracy_change_points"] == pytest.approx(100 * (acc["Ours"] - acc["Original"]))
    assert set(r["systems"]["SkipNet"]["skipped_histogram"]) == {"0"}  # one operating point
    assert doc["best"]["path"] == path
    assert "The paper (Table I" in (tmp_path / "table1.md").read_text() and (tmp_path / "table1.png").is_file()


def test_table1_ours_settings_set_algorithm1_floor(systems: dict[str, Path], tmp_path: Path) -> None:
    # A floor at the no-skip accuracy leaves Ours one operating point: under overload it drops, never skips.
    front = json.loads((systems["ours"] / "pareto.json").read_text())
    floor = front["configs"][0]["val_accuracy"]
    doc = table1(systems["ours"], systems["original"], systems["skipnet"], tmp_path, paths=["in-process"],
                 regimes=["period x0.5"], requests=40, repeats=1, progress=False, ours_settings={"min_acc": floor})
    ours = doc["paths"]["in-process"]["period x0.5"]["systems"]["Ours"]
    assert set(ours["skipped_histogram"]) == {"0"} and ours["dropped"] > 0
    assert doc["ours_settings"] == {"min_acc": floor} and f"'min_acc': {floor}" in (tmp_path / "table1.md").read_text()


def test_table1_cli_names_the_option_of_a_bad_regime(systems: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["experiment", "table1", "--ours", str(systems["ours"]), "--original",
                                       str(systems["original"]), "--skipnet", str(systems["skipnet"]),
                                       "--regime", "period x9", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown regimes ['period x9']" in result.output and "(option --regime)" in result.output


def test_figure1_experiment_writes_the_gap_at_the_papers_share_of_blocks(synthetic_checkpoint: Path,
                                                                        standard_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    from edgeskip.design.workflow import DataOptions

    doc = fig1.figure1(synthetic_checkpoint, standard_checkpoint, tmp_path, DataOptions(limit=200), draws=3,
                       progress=False)
    assert [m["label"] for m in doc["models"]] == ["stochastic-depth", "standard"]
    n = fig1.comparison_n(6)
    assert n == 4 and fig1.comparison_n(51) == 37
    md = (tmp_path / "figure1.md").read_text()
    spread = doc["models"][0]["curve"][n]["spread"]
    assert f"at N = 4 of 6, best minus worst configuration = {100 * spread:.2f} points" in md
    assert md.count("\n| ") == 2 + 7  # header, rule and N = 0..6
