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


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    if not samples_ms:
        raise ValueError("no latency samples")
    return LatencyStats(statistics.median(samples_ms), percentile(samples_ms, 0.90), percentile(samples_ms, 0.99),
                        len(samples_ms))
