"""What one workload run measured, as the paper measures it (Korol et al., Sec. III-B and
Table I): processed inferences, drops, online accuracy, latency, SLA violations, energy and
inferences per joule; plus what dynamic depth scheduling asks to watch (the concept note's
"Evaluation Implications"): the depth distribution and how often the configuration switches.

Images come from the test split of the bundle's dataset with their labels, so accuracy is
measured online. The drivers that send them (over HTTP, or in-process) are in
``drivers.py``; this module only turns their records into summaries.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from edgeskip_runtime.stats import percentile


@dataclass
class Record:
    index: int
    scheduled_s: float
    sent_s: float  # when the request actually went out (HTTP) or was admitted (in-process)
    status: int  # 200 processed, 503 dropped, 4xx/5xx rejected, 0 no answer
    round_trip_ms: float
    label: int
    correct: bool | None = None
    n_skipped: int | None = None
    config: int | None = None
    server_latency_ms: float | None = None  # time in the compiled module
    server_total_ms: float | None = None  # the engine's admission to completion (module + its own work)
    error: str | None = None


@dataclass
class Inputs:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray


def load_inputs(dataset: str, n: int, seed: int, data_dir: str | None = None) -> Inputs:
    """``n`` test images (cycled if the split is smaller), in a seeded order."""
    from edgeskip.data import load_dataset

    test = load_dataset(dataset, data_dir).test
    order = np.random.default_rng(seed).permutation(len(test))
    idx = np.resize(order, n)
    return Inputs(test.images.numpy()[idx], test.labels.numpy()[idx])


def switches_per_100(records: list[Record]) -> float:
    """Configuration changes between consecutive processed requests, per 100 processed (oscillation)."""
    configs = [r.config for r in sorted(records, key=lambda r: r.sent_s) if r.status == 200]
    if len(configs) < 2:
        return 0.0
    return 100.0 * sum(a != b for a, b in itertools.pairwise(configs)) / len(configs)


def summarize(records: list[Record], duration_s: float, sla_ms: float | None,
              energy: dict[str, Any]) -> dict[str, Any]:
    """``energy``: ``{"joules", "estimate", "source"}`` spent during the run."""
    processed = [r for r in records if r.status == 200]
    dropped = [r for r in records if r.status == 503]
    lat = [r.round_trip_ms for r in processed]
    hist: dict[int, int] = {}
    for r in processed:
        hist[r.n_skipped] = hist.get(r.n_skipped, 0) + 1
    correct = sum(bool(r.correct) for r in processed)
    violations = sum(r.round_trip_ms > sla_ms for r in processed) if sla_ms else 0
    joules = energy["joules"]
    return {
        "requests": len(records),
        "processed": len(processed),
        "dropped": len(dropped),
        "rejected_or_failed": len(records) - len(processed) - len(dropped),
        "online_accuracy": correct / len(processed) if processed else None,
        "accuracy_over_sent": correct / len(records) if records else None,
        "latency_ms": {"p50": percentile(lat, 0.5) if lat else None, "p99": percentile(lat, 0.99) if lat else None,
                       "mean": statistics.fmean(lat) if lat else None},
        "server_latency_ms_p50": percentile([r.server_latency_ms for r in processed], 0.5) if processed else None,
        "sla_ms": sla_ms,
        "sla_violations": violations,
        "sla_violation_rate": violations / len(processed) if processed and sla_ms else None,
        "duration_s": duration_s,
        "energy": energy,
        "inferences_per_joule": len(processed) / joules if joules > 0 else None,
        "skipped_histogram": {str(k): v for k, v in sorted(hist.items())},
        "switches_per_100": switches_per_100(records),
        "timeline": [{"t": r.sent_s, "status": r.status, "n_skipped": r.n_skipped} for r in records],
        "records": [asdict(r) for r in records],
    }


def table1_ratios(baseline: dict[str, Any], adaptive: dict[str, Any]) -> dict[str, float | None]:
    """The paper's Table I, relative to the static no-skip baseline ("Original")."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b not in (None, 0) else None

    acc_b, acc_a = baseline["online_accuracy"], adaptive["online_accuracy"]
    return {
        "accuracy_change_points": None if acc_a is None or acc_b is None else 100 * (acc_a - acc_b),
        "processed_inferences_x": ratio(adaptive["processed"], baseline["processed"]),
        "inferences_per_watt_x": ratio(adaptive["inferences_per_joule"], baseline["inferences_per_joule"]),
    }
