"""``edgeskip bench``: a seeded workload against a server, one run or the Table I comparison
(Korol et al., Sec. III-B: the same workload against the Original model and the adaptive one).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskip.evaluation.bench import Inputs, load_inputs, run_workload, table1_ratios
from edgeskip.evaluation.client import OIPClient
from edgeskip.evaluation.loadgen import run_loadgen
from edgeskip.evaluation.report import write_report
from edgeskip.evaluation.workloads import WORKLOADS, WorkloadSpec


@dataclass
class BenchOptions:
    workload: str = "paper"
    requests: int = 200
    period_ms: float | None = None
    rate_hz: float | None = None
    period_factor: float = 1.0  # default period = factor x profiled no-skip latency
    seed: int = 0
    trace: Path | None = None
    policy: str = "algorithm1"
    compare: bool = False
    budget_ms: float | None = None
    sla_ms: float | None = None
    dataset: str | None = None
    data_dir: str | None = None
    out: Path = Path("runs/bench")
    progress: bool = True


def calibrate_service_ms(client: OIPClient, model: str, inputs: Inputs, n: int = 30) -> float:
    """Median round trip of ``n`` back-to-back requests (the first few warm up the connection)."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        client.infer_uint8(model, inputs.images[i % len(inputs.labels)])
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_bench(url: str, opts: BenchOptions) -> dict[str, Any]:
    client = OIPClient(url)
    model = client.model_name()
    meta = client.metadata(model)["parameters"]
    period_s = opts.period_ms / 1e3 if opts.period_ms else None
    inputs = load_inputs(opts.dataset or meta["dataset"], opts.requests, opts.seed, opts.data_dir)
    calibrated_ms = None
    if period_s is None and opts.rate_hz is None and opts.workload != "trace":
        # A period tied to the no-skip service time emulates the board's overload regime on the host.
        # On the host the HTTP handling can cost more than the module itself, so the service time is
        # the larger of the profiled no-skip latency and a measured round trip.
        calibrated_ms = calibrate_service_ms(client, model, inputs)
        period_s = opts.period_factor * max(meta["no_skip_latency_ms"], calibrated_ms) / 1e3
    if opts.workload == "loadgen":
        offsets = []
    else:
        spec = WorkloadSpec(opts.requests, period_s, opts.rate_hz, opts.seed, opts.trace)
        offsets = WORKLOADS.get(opts.workload)(spec)
    runs: dict[str, dict[str, Any]] = {}
    plan = [("static no-skip", "static", {"static_config": 0}), (opts.policy, opts.policy, {})] if opts.compare \
        else [(opts.policy, None, {})]
    try:
        for name, policy, settings in plan:
            if policy is not None:
                client.load(model, {"policy": policy, "settings": settings})
            if opts.workload == "loadgen":
                qps = opts.rate_hz or 1.0 / period_s
                runs[name] = run_loadgen(client, model, inputs, target_qps=qps, min_queries=opts.requests,
                                         target_latency_ms=opts.sla_ms or 10 * meta["no_skip_latency_ms"],
                                         log_dir=opts.out / f"loadgen-{name.replace(' ', '-')}")
            else:
                runs[name] = run_workload(client, model, offsets, inputs, budget_ms=opts.budget_ms,
                                          sla_ms=opts.sla_ms, progress=opts.progress, label=f"bench {name}")
    finally:
        if opts.compare:  # leave the server on the policy the user asked for
            client.load(model, {"policy": opts.policy})
    doc: dict[str, Any] = {"schema": "edgeskip.bench/1", "url": client.url, "model": model, "workload": opts.workload,
                           "requests": opts.requests, "period_ms": None if period_s is None else period_s * 1e3,
                           "seed": opts.seed, "calibrated_service_ms": calibrated_ms,
                           "profiled_no_skip_latency_ms": meta["no_skip_latency_ms"], "runs": runs}
    if opts.compare:
        doc["table1"] = table1_ratios(runs["static no-skip"], runs[opts.policy])
    write_report(doc, opts.out)
    return doc


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in doc["runs"].items():
        acc = "-" if r["online_accuracy"] is None else f"{100 * r['online_accuracy']:.2f} %"
        lines.append(f"{name:>16}: processed {r['processed']}/{r['requests']}, dropped {r['dropped']}, "
                     f"online accuracy {acc}, energy {r['energy']['joules']:.3f} J")
    if "table1" in doc:
        lines.append("Table I ratios: " + json.dumps({k: None if v is None else round(v, 3)
                                                      for k, v in doc["table1"].items()}))
    return lines
