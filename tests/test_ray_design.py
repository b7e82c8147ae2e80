"""The design-time sweeps on Ray (``--ray``): a local Ray with 2 workers computes the accuracies a local run
computes, for sensitivity, the Pareto search (its candidates and all 2^6 masks of ResNet-20) and Figure 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="--ray needs the ray package (pip install -e '.[ray]'; `make test` installs it)")

from edgeskip.design.workflow import DataOptions, pareto, sensitivity

LIMIT = 300


@pytest.fixture(scope="module")
def local_ray():
    import ray

    yield "local"
    ray.shutdown()


def _points(points) -> list[tuple]:
    return [(tuple(p.mask), p.val_accuracy, p.test_accuracy, p.macs, p.n_skipped) for p in points]


def test_ray_pareto_equals_the_local_run(synthetic_checkpoint: Path, tmp_path: Path, local_ray: str) -> None:
    local_opts = DataOptions(limit=LIMIT)
    ray_opts = DataOptions(limit=LIMIT, ray_address=local_ray, ray_workers=2)
    local_rank = sensitivity(synthetic_checkpoint, tmp_path / "s_local.json", local_opts, progress=False)
    ray_rank = sensitivity(synthetic_checkpoint, tmp_path / "s_ray.json", ray_opts, progress=False)
    assert ray_rank["per_block"] == local_rank["per_block"] and ray_rank["order"] == local_rank["order"]

    local = pareto(synthetic_checkpoint, tmp_path / "s_local.json", tmp_path / "local" / "pareto.json", local_opts,
                   repeats=3, plots=False, progress=False)
    remote = pareto(synthetic_checkpoint, tmp_path / "s_ray.json", tmp_path / "ray" / "pareto.json", ray_opts,
                    repeats=3, plots=False, progress=False)
    assert _points(remote.candidates) == _points(local.candidates)
    assert len(remote.exhaustive) == 64 and _points(remote.exhaustive) == _points(local.exhaustive)
    # The latencies are measured by the command's own machine in each run, so the fronts may differ by noise;
    # the configurations they are picked from, and every accuracy, are the same.
    saved = json.loads((tmp_path / "ray" / "pareto.json").read_text())
    assert saved["configs"][0]["mask"] == [1] * 6


def test_ray_on_the_command_line(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    """`--ray` with no address starts a local Ray; figure1's draws come back identical."""
    def figure1(*extra: str) -> dict:
        out = tmp_path / f"f{len(extra)}.json"
        subprocess.run([sys.executable, "-m", "edgeskip", "figure1", str(synthetic_checkpoint), "--draws", "2",
                        "--limit", "60", "--out", str(out), *extra], check=True, capture_output=True, text=True)
        return json.loads(out.read_text())

    local, remote = figure1(), figure1("--ray", "--ray-workers", "2")
    assert remote["models"][0]["curve"] == local["models"][0]["curve"]


def test_an_unreachable_cluster_is_a_clear_error(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edgeskip", "sensitivity", str(synthetic_checkpoint), "--limit", "50",
                           "--ray", "127.0.0.1:1", "--out", str(tmp_path / "s.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "cannot start or join the Ray cluster at '127.0.0.1:1'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "s.json").exists()
