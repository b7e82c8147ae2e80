"""The design-time CLI end to end on real (synthetic) training, and its error messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from edgeskip_runtime.errors import UsageError

from edgeskip.cli import EdgeskipGroup, main


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def design_run(synthetic_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run("sensitivity", synthetic_checkpoint, "--limit", 200, "--out", out / "sensitivity.json")
    run("pareto", synthetic_checkpoint, "--sensitivity", out / "sensitivity.json", "--limit", 200, "--repeats", 3,
        "--out", out / "pareto.json")
    return out


def test_pareto_file_follows_the_schema(design_run: Path) -> None:
    doc = json.loads((design_run / "pareto.json").read_text())
    assert doc["schema"] == "edgeskip.pareto/1" and doc["model"] == "resnet20" and doc["dataset"] == "synthetic"
    assert doc["skippable_blocks"] == 6 and doc["selection_split"] == "val"
    configs = doc["configs"]
    assert configs[0]["mask"] == [1] * 6 and configs[0]["n_skipped"] == 0
    assert [c["n_skipped"] for c in configs] == sorted(c["n_skipped"] for c in configs)
    for c in configs:
        assert set(c) >= {"mask", "n_skipped", "val_accuracy", "test_accuracy", "macs", "latency_ms",
                          "latency_source"}
        assert c["n_skipped"] == 6 - sum(c["mask"]) and "pytorch" in c["latency_source"]
    macs = [c["macs"] for c in configs]
    assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1]
    assert doc["exhaustive_configs"] == 64 and 0 < doc["hypervolume_ratio"] <= 1.0 + 1e-9
    for png in ("pareto_front.png", "accuracy_vs_skipped.png"):
        assert (design_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_front_members_are_not_dominated(design_run: Path) -> None:
    configs = json.loads((design_run / "pareto.json").read_text())["configs"]
    assert all(c["pareto_optimal"] for c in configs[1:])  # only the no-skip entry may be kept regardless
    for a in [c for c in configs if c["pareto_optimal"]]:
        for b in configs:
            assert not (b["val_accuracy"] > a["val_accuracy"] and b["latency_ms"] < a["latency_ms"])


def test_figure1_command(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    result = run("figure1", f"sd={synthetic_checkpoint}", "--draws", 100, "--limit", 100, "--out",
                 tmp_path / "fig1.json")
    doc = json.loads((tmp_path / "fig1.json").read_text())
    curve = doc["models"][0]["curve"]
    assert [p["n_skipped"] for p in curve] == list(range(7))
    assert all(p["min"] <= p["mean"] <= p["max"] for p in curve)
    assert curve[0]["distinct"] == 1 and curve[3]["distinct"] == 20  # C(6,3) masks, all drawn in 100 tries
    assert (tmp_path / "fig1.png").exists() and "mean accuracy loss" in result.output


def test_train_command_writes_checkpoint_and_log(tmp_path: Path) -> None:
    result = run("train", "--dataset", "synthetic", "--epochs", 1, "--limit", 64, "--batch-size", 32,
                 "--out", tmp_path / "m.pt")
    assert "val accuracy" in result.output
    assert (tmp_path / "m.pt").exists() and (tmp_path / "m.metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet21", "--dataset", "synthetic", "--out", "{tmp}/m.pt"], "unknown model 'resnet21'"),
        (["train", "--dataset", "fashion-mnist", "--data-dir", "{tmp}", "--out", "{tmp}/m.pt"],
         "missing train-images-idx3-ubyte.gz"),
        (["train", "--recipe", "nope", "--dataset", "synthetic", "--out", "{tmp}/m.pt"], "unknown recipe 'nope'"),
        (["train", "--dataset", "cifar10", "--out", "{tmp}/m.pt"], "name their folder (option --data-dir)"),
        (["sensitivity", "{tmp}/missing.pt", "--out", "{tmp}/s.json"], "does not exist"),
        (["sensitivity", "{tmp}/corrupt.pt", "--out", "{tmp}/s.json"], "corrupt or truncated"),
        (["sensitivity", "{ckpt}", "--ranker", "fisher", "--out", "{tmp}/s.json"], "unknown ranker 'fisher'"),
        (["pareto", "{ckpt}", "--sensitivity", "{tmp}/missing.json", "--out", "{tmp}/p.json"], "run `edgeskip sens"),
        (["pareto", "{ckpt}", "--sensitivity", "{tmp}/wrong.json", "--out", "{tmp}/p.json"], "ranks 3 blocks"),
    ],
)
def test_bad_input_gets_one_clear_line(args: list[str], message: str, tmp_path: Path,
                                       synthetic_checkpoint: Path) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"\x00" * 64)
    (tmp_path / "wrong.json").write_text(json.dumps({"schema": "edgeskip.sensitivity/1", "model": "resnet20",
                                                     "skippable_blocks": 3, "order": [0, 1, 2]}))
    args = [a.format(tmp=tmp_path, ckpt=synthetic_checkpoint) for a in args]
    result = run(*args, ok=False)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "s.json").exists()


def test_console_script_help_explains_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "edgeskip", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "sensitivity", "pareto", "figure1", "demo", "list"):
        assert command in out.stdout


def test_evaluate_command(synthetic_checkpoint: Path) -> None:
    full = run("evaluate", synthetic_checkpoint, "--limit", 100).output
    skipped = run("evaluate", synthetic_checkpoint, "--limit", 100, "--mask", "000000").output
    assert "mask [1, 1, 1, 1, 1, 1]" in full and "mask [0, 0, 0, 0, 0, 0]" in skipped

    def accuracies(output: str) -> tuple[float, float]:
        found = re.search(r"val ([\d.]+) \(n=\d+\), test ([\d.]+)", output)
        assert found, output
        return float(found.group(1)), float(found.group(2))

    # skipping every block must change what is measured, not only the mask that is printed
    assert accuracies(full) != accuracies(skipped)
    bad = run("evaluate", synthetic_checkpoint, "--mask", "12", ok=False)
    assert bad.exit_code != 0 and "0/1 digits" in bad.output


def _group_raising(error: Exception) -> click.Group:
    @click.group(cls=EdgeskipGroup)
    def group() -> None: ...

    @group.command()
    @click.option("--data-dir")
    def cmd(data_dir: str | None) -> None:
        raise error

    return group


def test_domain_errors_are_one_line_naming_the_option() -> None:
    result = CliRunner().invoke(_group_raising(UsageError("no data here", setting="data_dir")), ["cmd"])
    assert result.exit_code == 1 and result.output.strip() == "Error: no data here (option --data-dir)"


@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("k"), FileNotFoundError("f")])
def test_other_exceptions_are_bugs_and_keep_their_traceback(bug: Exception) -> None:
    result = CliRunner().invoke(_group_raising(bug), ["cmd"])
    assert result.exit_code != 0 and result.exception is bug  # not turned into a friendly one-liner
