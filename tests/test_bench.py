"""Workload generator and bench runs against the real server on loopback."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from edgeskip_runtime.errors import UsageError

from edgeskip.evaluation.local_server import LocalServer
from edgeskip.evaluation.runner import BenchOptions, run_bench
from edgeskip.evaluation.workloads import WORKLOADS, WorkloadSpec


def test_paper_workload_deviates_every_tenth_request() -> None:
    offsets = WORKLOADS.get("paper")(WorkloadSpec(50, period_s=1.0, seed=3))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert gaps[:10] == pytest.approx([1.0] * 10)  # the base period until the 10th request
    blocks = [gaps[i : i + 10] for i in range(10, 49, 10)]
    for block in blocks:  # one re-drawn period, held for ten requests, within +-25 %
        assert max(block) - min(block) < 1e-9 and 0.75 <= block[0] <= 1.25
    assert len({round(b[0], 9) for b in blocks}) > 1
    assert offsets == WORKLOADS.get("paper")(WorkloadSpec(50, period_s=1.0, seed=3))
    assert offsets != WORKLOADS.get("paper")(WorkloadSpec(50, period_s=1.0, seed=4))


def test_poisson_and_trace(tmp_path: Path) -> None:
    offsets = WORKLOADS.get("poisson")(WorkloadSpec(2000, rate_hz=100.0, seed=0))
    assert offsets[-1] / len(offsets) == pytest.approx(0.01, rel=0.1)
    (tmp_path / "t.txt").write_text("0.5\n0.1\n0.3\n")
    assert WORKLOADS.get("trace")(WorkloadSpec(10, trace=tmp_path / "t.txt")) == pytest.approx([0.0, 0.2, 0.4])
    (tmp_path / "bad.txt").write_text("soon\n")
    with pytest.raises(ValueError, match="must hold numbers"):
        WORKLOADS.get("trace")(WorkloadSpec(10, trace=tmp_path / "bad.txt"))
    with pytest.raises(UsageError, match="needs a request period or a rate") as no_rate:
        WORKLOADS.get("paper")(WorkloadSpec(10))
    assert no_rate.value.setting == "period_ms"


@pytest.fixture(scope="module")
def server(bundles):
    with LocalServer(bundles("host").path, "--no-pin") as s:
        yield s


def test_compare_reports_table1_ratios(server: LocalServer, tmp_path: Path) -> None:
    doc = run_bench(server.url, BenchOptions(workload="paper", requests=60, period_factor=1.0, compare=True,
                                             out=tmp_path, progress=False))
    runs = doc["runs"]
    assert set(runs) == {"static no-skip", "algorithm1"}
    for r in runs.values():
        assert r["processed"] + r["dropped"] + r["rejected_or_failed"] == 60
        assert r["rejected_or_failed"] == 0
        assert r["energy"]["estimate"] and r["energy"]["joules"] > 0
    assert set(runs["static no-skip"]["skipped_histogram"]) <= {"0"}  # the baseline never skips
    t1 = doc["table1"]
    assert t1["processed_inferences_x"] == pytest.approx(runs["algorithm1"]["processed"]
                                                         / runs["static no-skip"]["processed"])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["table1"] == t1
    assert "Table I" in (tmp_path / "bench.md").read_text()
    for png in ("timeline.png", "skipped_histogram.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # The server is back on the policy the user asked for.
    from edgeskip.evaluation.client import OIPClient

    assert OIPClient(server.url).get_json(f"/v2/models/{server.model}/configs")["policy"] == "algorithm1"


# LoadGen's early stopping makes a p99 verdict VALID only after 459 queries, every one under the bound.
@pytest.mark.parametrize(("requests", "sla_ms", "verdict"), [(460, 5000.0, "VALID"), (40, 0.001, "INVALID")])
def test_loadgen_server_scenario(server: LocalServer, tmp_path: Path, requests: int, sla_ms: float,
                                 verdict: str) -> None:
    """LoadGen's own verdict follows the latency bound: no request takes 5 s, and none takes 1 µs."""
    doc = run_bench(server.url, BenchOptions(workload="loadgen", requests=requests, rate_hz=200.0, sla_ms=sla_ms,
                                             out=tmp_path, progress=False))
    run = doc["runs"]["algorithm1"]
    assert run["loadgen"]["verdict"] == verdict
    assert run["loadgen"]["target_latency_ms"] == sla_ms
    assert run["processed"] + run["dropped"] == requests


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    from edgeskip.evaluation.client import ServerUnreachable

    with pytest.raises(ServerUnreachable, match="no answer from http://127.0.0.1:9"):
        run_bench("http://127.0.0.1:9", BenchOptions(requests=5, out=tmp_path, progress=False))
