"""``edgeskip bench``: a seeded workload against a server, one run or the Table I comparison
(Korol et al., Sec. III-B: the same workload against the Original model and the adaptive one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskip.evaluation.bench import load_inputs, run_workload, table1_ratios
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


def run_bench(url: str, opts: BenchOptions) -> dict[str, Any]:
    client = OIPClient(url)
    model = client.model_name()
    meta = client.metadata(model)["parameters"]
    period_s = opts.period_ms / 1e3 if opts.period_ms else None
    if period_s is None and opts.rate_hz is None and opts.workload != "trace":
        # On the host, a period tied to the profiled no-skip latency emulates the board's overload regime.
        period_s = opts.period_factor * meta["no_skip_latency_ms"] / 1e3
    if opts.workload == "loadgen":
        offsets = []
    else:
        spec = WorkloadSpec(opts.requests, period_s, opts.rate_hz, opts.seed, opts.trace)
        offsets = WORKLOADS.get(opts.workload)(spec)
    inputs = load_inputs(opts.dataset or meta["dataset"], opts.requests, opts.seed, opts.data_dir)
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
                           "seed": opts.seed, "runs": runs}
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
