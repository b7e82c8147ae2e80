"""Latency summaries (median, p90, p99) shared by design-time timing and on-board profiling."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    p99_ms: float
    samples: int


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    if not samples_ms:
        raise ValueError("no latency samples")
    s = sorted(samples_ms)

    def pct(q: float) -> float:  # nearest-rank percentile
        return s[min(len(s) - 1, round(q * (len(s) - 1)))]

    return LatencyStats(statistics.median(s), pct(0.90), pct(0.99), len(s))
