"""The ideal bound of Table I's processed-inferences ratio, computed from measured service
times (Korol et al., Sec. III-B: a request that arrives while the device is busy is dropped).

For a given arrival sequence, a drop-when-busy server whose worker is busy for a constant B
per request processes a request iff it arrives after the previous processed one freed the
worker. The best any depth policy can do is to serve every request with the fastest
allowed configuration, so

    ideal = processed(arrivals, B_fastest) / processed(arrivals, B_no_skip)

where ``B_k`` is the busy time of the worker with configuration k: its module time plus the
engine's own per-request work (admission to completion, ``total_ms − latency_ms``). Both
come from the two runs being compared: every processed request's module time, turned into
its no-skip equivalent with the profiled latency ratios, gives one no-skip module time for
the pair (so the machine's speed over the pair, not one run's luck, sets the scale), and
the profiled ratio of the fastest allowed configuration gives its time.
Over HTTP the server's parsing and encoding run in handler threads beside the worker, so
they delay arrivals but do not make the worker busy; they are not in B. The report also
simulates the static run with B_no_skip and prints it beside the measured count, a check of
the model. A measured ratio near the bound means the controller lost little to adapting.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def processed_when_busy_drops(arrivals_s: Sequence[float], service_s: float) -> int:
    """How many of ``arrivals_s`` a drop-when-busy server with constant ``service_s`` processes."""
    free_at = float("-inf")
    processed = 0
    for t in sorted(arrivals_s):
        if t >= free_at:
            processed += 1
            free_at = t + service_s
    return processed


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ideal_bound(arrivals_s: Sequence[float], baseline: dict[str, Any], adaptive: dict[str, Any],
                configs: dict[str, Any]) -> dict[str, float]:
    """The bound for ``adaptive`` against ``baseline`` (static no-skip) on ``arrivals_s``; ``configs`` is
    ``/configs`` of the adaptive run (allowed set and profiled latencies, whose ratios scale module times)."""
    profiled = {c["index"]: c["latency_ms"] for c in configs["configs"]}
    allowed = [c["index"] for c in configs["configs"] if c["allowed"]]
    done = [r for run in (baseline, adaptive) for r in run["records"] if r["status"] == 200]
    engine_ms = _median([r["server_total_ms"] - r["server_latency_ms"] for r in done
                         if r.get("server_total_ms") is not None])
    engine_ms = 0.0 if engine_ms != engine_ms else engine_ms  # NaN: no engine timing reported
    no_skip_module = _median([r["server_latency_ms"] * profiled[0] / profiled[r["config"]]
                              for r in done if profiled.get(r["config"])])
    fastest_index = min(allowed, key=lambda i: profiled[i])
    no_skip = no_skip_module + engine_ms
    fastest = no_skip_module * profiled[fastest_index] / profiled[0] + engine_ms
    base = processed_when_busy_drops(arrivals_s, no_skip / 1e3)
    best = processed_when_busy_drops(arrivals_s, fastest / 1e3)
    return {"processed_x": best / base if base else float("nan"), "no_skip_busy_ms": no_skip,
            "fastest_busy_ms": fastest, "fastest_config": fastest_index, "engine_overhead_ms": engine_ms,
            "simulated_processed_no_skip": base, "simulated_processed_fastest": best,
            "measured_processed_no_skip": baseline["processed"]}
