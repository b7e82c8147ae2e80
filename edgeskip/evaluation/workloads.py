"""Workload generators: when each request is sent (Korol et al., Sec. III-B; MLPerf Server scenario).

* ``paper``: one request every T seconds; every 10th request the rate is re-drawn with up to
  25 % random deviation (uniform in ±25 % of T) and held for the next 10, seeded — the paper's
  "25 % random workload deviation every 10th request".
* ``poisson``: exponential inter-arrival times at ``rate`` requests/s, seeded.
* ``trace``: arrival offsets replayed from a file (one number of seconds per line, or a JSON
  list), sorted, truncated to ``n``.
* ``phased``: low load, overload, low load (``PHASES``: a quarter, half and quarter of the
  requests, at 3, 0.7 and 3 × the period), the regime change Algorithm 1 must follow both ways.
* ``bursts``: ``BURST_SIZE`` requests at ``BURST_SPACING`` × the period, then an idle gap,
  so that the mean period is the given one: short overloads the policy must absorb.

Each returns arrival offsets in seconds from the start of the run. The fourth workload,
``loadgen``, lets MLPerf LoadGen schedule the queries itself (see ``loadgen.py``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeskip_runtime.errors import FileFormatError, UsageError
from edgeskip_runtime.registry import Registry


@dataclass
class WorkloadSpec:
    n: int
    period_s: float | None = None
    rate_hz: float | None = None
    seed: int = 0
    trace: Path | None = None


Workload = Callable[[WorkloadSpec], list[float]]
WORKLOADS: Registry[Workload] = Registry("workload")


def _period(spec: WorkloadSpec) -> float:
    if spec.period_s is not None:
        return spec.period_s
    if spec.rate_hz:
        return 1.0 / spec.rate_hz
    raise UsageError("this workload needs a request period or a rate", setting="period_ms")


@WORKLOADS.register("paper")
def paper(spec: WorkloadSpec) -> list[float]:
    rng = random.Random(spec.seed)
    base = _period(spec)
    period, t, out = base, 0.0, []
    for i in range(spec.n):
        if i and i % 10 == 0:
            period = base * (1 + rng.uniform(-0.25, 0.25))
        out.append(t)
        t += period
    return out


# (period factor, share of the requests): low load, overload, low load. With the period at the no-skip
# service time S, the factors are chosen for what Algorithm 1 must show (Sec. II-B):
# * 3, not 2: the step back down needs the idle time after a completion to exceed delta_req = S. At 2x that
#   idle time is 2S - s_k, only S - s_k (0.3 ms on the host ResNet-20) above delta_req, and the HTTP
#   client's jitter and a drifting service estimate ate it: the controller stayed skipping after the overload.
# * 0.7, not 0.5: static no-skip drops about 30 %, while the allowed skipping configurations (down to about
#   0.55 S on that host) can keep up. At 0.5 even the fastest one saturated (ideal bound 1.07x).
# * Half of the requests in the overload, so that it lasts long enough to see in the timeline.
PHASES = ((3.0, 0.25), (0.7, 0.5), (3.0, 0.25))
BURST_SIZE = 10
BURST_SPACING = 0.25  # x the period, inside a burst


def _phase_bounds(n: int) -> list[int]:
    """Index of the first request of each phase, and ``n``."""
    bounds, share = [0], 0.0
    for _, s in PHASES:
        share += s
        bounds.append(round(n * share))
    return bounds


@WORKLOADS.register("phased")
def phased(spec: WorkloadSpec) -> list[float]:
    base = _period(spec)
    bounds = _phase_bounds(spec.n)
    t, out = 0.0, []
    for j, (factor, _) in enumerate(PHASES):
        for _ in range(bounds[j], bounds[j + 1]):
            out.append(t)
            t += base * factor
    return out


def phased_phases(offsets: list[float]) -> list[dict[str, float]]:
    """Start, end and period factor of each phase of a ``phased`` arrival sequence (for plots and reports)."""
    n = len(offsets)
    bounds = _phase_bounds(n)
    out = []
    for j, (factor, _) in enumerate(PHASES):
        lo, hi = bounds[j], bounds[j + 1]
        if lo < hi:
            end = offsets[hi] if hi < n else offsets[-1]
            out.append({"start_s": offsets[lo], "end_s": end, "period_factor": factor, "first": lo, "last": hi - 1})
    return out


@WORKLOADS.register("bursts")
def bursts(spec: WorkloadSpec) -> list[float]:
    base = _period(spec)
    gap = base * BURST_SIZE - base * BURST_SPACING * (BURST_SIZE - 1)  # mean period stays `base`
    t, out = 0.0, []
    for i in range(spec.n):
        out.append(t)
        t += gap if (i + 1) % BURST_SIZE == 0 else base * BURST_SPACING
    return out


@WORKLOADS.register("poisson")
def poisson(spec: WorkloadSpec) -> list[float]:
    rng = random.Random(spec.seed)
    rate = 1.0 / _period(spec)
    t, out = 0.0, []
    for _ in range(spec.n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


@WORKLOADS.register("trace")
def trace(spec: WorkloadSpec) -> list[float]:
    if spec.trace is None:
        raise UsageError("the trace workload needs a trace file", setting="trace")
    try:
        text = Path(spec.trace).read_text()
    except OSError as e:
        raise FileFormatError(f"cannot read trace {spec.trace}: {e}") from e
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [float(x) for x in text.split()]
        offsets = sorted(float(v) for v in values)
    except (ValueError, TypeError) as e:
        raise FileFormatError(f"trace {spec.trace} must hold numbers of seconds (one per line, or a JSON list): "
                              f"{e}") from e
    if not offsets or offsets[0] < 0:
        raise FileFormatError(f"trace {spec.trace} is empty or has negative offsets")
    return [o - offsets[0] for o in offsets][: spec.n]
