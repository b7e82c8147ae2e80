"""Latency measurement and summaries (median, p90, p99), shared by design-time timing, on-board profiling
and the benchmarks: the one round-robin timing loop and the one percentile."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
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


def time_round_robin(calls: Sequence[Callable[[], object]], *, repeats: int, warmup: int = 0,
                     per_round: int = 1) -> list[list[float]]:
    """Milliseconds per call of each of ``calls``, measured in turns.

    Each callable is first called ``warmup`` times. Then each of ``repeats`` rounds calls every one of
    them in turn, ``per_round`` times back to back, and records the time of that call (the median of the
    ``per_round`` calls when more than one): drift on a busy machine hits all of them alike.
    """
    for call in calls:
        for _ in range(warmup):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            times = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1e3)
            samples[i].append(times[0] if per_round == 1 else statistics.median(times))
    return samples
