"""The ideal bound of Table I's processed-inferences ratio, computed from measured service
times (Korol et al., Sec. III-B: a request that arrives while the device is busy is dropped).

For a given arrival sequence, a drop-when-busy server with a constant service time S
processes a request iff it arrives after the previous processed one finished. The best any
depth policy can do is to serve every request with the fastest allowed configuration, so

    ideal = processed(arrivals, S_fastest) / processed(arrivals, S_no_skip)

where ``S_k = module_k + handling``: the module time of configuration k and the server's
own per-request handling, both as measured in the runs being compared. A measured ratio near this
bound means the controller lost little to adapting; far below it, it adapted too late or
too little.
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
    """The bound for ``adaptive`` against ``baseline`` (static no-skip) on ``arrivals_s``.

    Service times come from the runs themselves, since a shared machine's speed drifts between
    runs: S_no_skip is the baseline run's median module time plus the handling estimate; for the
    adaptive run, each request's module time is turned into its no-skip equivalent with the
    profiled latency ratios, and the fastest allowed configuration's time is that median
    divided by its ratio, plus the same handling. ``configs`` is ``/configs`` of the adaptive
    run (allowed set, profiled latencies, handling estimate).
    """
    handling = configs["service_time"]["handling_ms"]
    profiled = {c["index"]: c["latency_ms"] for c in configs["configs"]}
    allowed = [c["index"] for c in configs["configs"] if c["allowed"]]
    base_module = _median([r["server_latency_ms"] for r in baseline["records"] if r["status"] == 200])
    equivalent = [r["server_latency_ms"] * profiled[0] / profiled[r["config"]]
                  for r in adaptive["records"] if r["status"] == 200 and profiled.get(r["config"])]
    fastest_index = min(allowed, key=lambda i: profiled[i])
    no_skip = base_module + handling
    fastest = _median(equivalent) * profiled[fastest_index] / profiled[0] + handling
    base = processed_when_busy_drops(arrivals_s, no_skip / 1e3)
    best = processed_when_busy_drops(arrivals_s, fastest / 1e3)
    return {"processed_x": best / base if base else float("nan"), "no_skip_service_ms": no_skip,
            "fastest_service_ms": fastest, "fastest_config": fastest_index, "handling_ms": handling,
            "simulated_processed_no_skip": base, "simulated_processed_fastest": best}
