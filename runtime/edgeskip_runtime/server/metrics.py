"""Prometheus metrics of the server, in the text exposition format (no client library needed on a board).

Counters for received, processed, dropped and rejected requests, config switches and SLA
violations; histograms of inference latency and of skipped blocks (the depth
distribution to monitor; README, "Serving"); gauges for the current
configuration and queue depth.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Sequence

from edgeskip_runtime.energy import EnergyMeter
from edgeskip_runtime.service_time import ServiceTimeEstimate

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = list(buckets)
        self._per_bucket = [0] * (len(self.buckets) + 1)  # not cumulative; the last is above every bound
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        self._per_bucket[bisect.bisect_left(self.buckets, value)] += 1  # one bucket per request, not all

    @property
    def counts(self) -> list[int]:
        """Cumulative counts per upper bound (``le``), as Prometheus exposes them."""
        return list(itertools.accumulate(self._per_bucket[:-1]))

    def render(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        pairs = zip(self.buckets, self.counts, strict=True)
        lines = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {c}' for b, c in pairs]
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {self.sum:.9g}", f"{name}_count{suffix} {self.total}"]
        return lines


class ServerMetrics:
    """Thread-safe counters; ``received == processed + dropped + rejected`` once requests finish."""

    def __init__(self, num_blocks: int, energy: EnergyMeter | None = None) -> None:
        self._lock = threading.Lock()
        self.energy = energy
        self.received = 0
        self.outcomes = {"processed": 0, "dropped": 0, "rejected": 0}
        self.config_switches = 0
        self.sla_violations = 0
        self.current_config = 0
        self.current_skipped = 0
        self.queue_depth = 0
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.skipped = Histogram([float(k) for k in range(num_blocks + 1)])
        self.service: ServiceTimeEstimate | None = None

    def receive(self) -> None:
        with self._lock:
            self.received += 1

    def outcome(self, kind: str) -> None:
        with self._lock:
            self.outcomes[kind] += 1

    def processed(self, latency_s: float, config: int, n_skipped: int, sla_violated: bool) -> None:
        with self._lock:
            self.outcomes["processed"] += 1
            self.latency.observe(latency_s)
            self.skipped.observe(float(n_skipped))
            if config != self.current_config:
                self.config_switches += 1
            self.current_config, self.current_skipped = config, n_skipped
            self.sla_violations += int(sla_violated)
        if self.energy is not None:
            self.energy.add_busy(latency_s)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"received": self.received, **self.outcomes, "config_switches": self.config_switches,
                    "sla_violations": self.sla_violations}

    def render(self, model: str, delta_req_ms: float | None = None) -> str:
        m = f'model="{model}"'
        with self._lock:
            lines = [
                "# HELP edgeskip_requests_received_total Inference requests received.",
                "# TYPE edgeskip_requests_received_total counter",
                f"edgeskip_requests_received_total{{{m}}} {self.received}",
                "# HELP edgeskip_requests_total Inference requests by outcome (processed, dropped, rejected).",
                "# TYPE edgeskip_requests_total counter",
                *[f'edgeskip_requests_total{{{m},outcome="{k}"}} {v}' for k, v in self.outcomes.items()],
                "# HELP edgeskip_inference_latency_seconds Time in the compiled module per processed request.",
                "# TYPE edgeskip_inference_latency_seconds histogram",
                *self.latency.render("edgeskip_inference_latency_seconds", m),
                "# HELP edgeskip_skipped_blocks Skipped blocks of the configuration used per processed request.",
                "# TYPE edgeskip_skipped_blocks histogram",
                *self.skipped.render("edgeskip_skipped_blocks", m),
                "# HELP edgeskip_config_switches_total Changes of configuration between processed requests.",
                "# TYPE edgeskip_config_switches_total counter",
                f"edgeskip_config_switches_total{{{m}}} {self.config_switches}",
                "# HELP edgeskip_sla_violations_total Processed requests slower than their latency budget or SLA.",
                "# TYPE edgeskip_sla_violations_total counter",
                f"edgeskip_sla_violations_total{{{m}}} {self.sla_violations}",
                "# HELP edgeskip_current_skipped_blocks Skipped blocks of the configuration in use.",
                "# TYPE edgeskip_current_skipped_blocks gauge",
                f"edgeskip_current_skipped_blocks{{{m}}} {self.current_skipped}",
                "# HELP edgeskip_queue_depth Requests waiting for the worker.",
                "# TYPE edgeskip_queue_depth gauge",
                f"edgeskip_queue_depth{{{m}}} {self.queue_depth}",
            ]
        if self.service is not None:
            lines += [
                "# HELP edgeskip_service_time_seconds Measured no-skip service time: module, handling, and their sum.",
                "# TYPE edgeskip_service_time_seconds gauge",
                *[f'edgeskip_service_time_seconds{{{m},part="{part}"}} {v / 1e3:.9g}'
                  for part, v in (("module", self.service.module_ms), ("handling", self.service.handling_ms),
                                  ("total", self.service.service_ms))],
            ]
        if delta_req_ms is not None:
            lines += [
                "# HELP edgeskip_delta_req_seconds Algorithm 1's idle spell before skipping one block less.",
                "# TYPE edgeskip_delta_req_seconds gauge",
                f"edgeskip_delta_req_seconds{{{m}}} {delta_req_ms / 1e3:.9g}",
            ]
        if self.energy is not None:
            e = self.energy
            lines += [
                "# HELP edgeskip_energy_joules_total Energy since the server started (estimate=true: power model).",
                "# TYPE edgeskip_energy_joules_total counter",
                f'edgeskip_energy_joules_total{{{m},source="{e.source}",estimate="{str(e.estimate).lower()}"}} '
                f"{e.joules():.6f}",
                "# HELP edgeskip_busy_seconds_total Time the worker spent in the compiled module.",
                "# TYPE edgeskip_busy_seconds_total counter",
                f"edgeskip_busy_seconds_total{{{m}}} {e.busy_seconds:.6f}",
            ]
        return "\n".join(lines) + "\n"
