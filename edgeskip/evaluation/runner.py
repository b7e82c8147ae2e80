"""``edgeskip bench``: seeded workloads against the runtime, over HTTP or in-process (Korol et al.,
Sec. III-B, Table I; the concept note's "Evaluation Implications": every policy across load
regimes).

Three modes, all on arrivals fixed by the seed:

* one run with the server's current policy;
* ``compare``: static no-skip (the paper's "Original") and ``policy`` on the same arrivals,
  with Table I's ratios and the ideal bound of the processed ratio (``ideal.py``);
* ``sweep``: every policy in :data:`SWEEP_POLICIES` over every regime in :func:`sweep_regimes`.

Periods are multiples of the no-skip *service* time the server itself measured (module plus
its handling), read from ``/configs`` before the first run, so a factor below 1 overloads
the static baseline on any machine. Each run loads its policy with explicit settings
*overrides*; every other setting stays as the server was configured, and each run records
the exact policy and settings the server reported back.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskip_runtime.errors import UsageError

from edgeskip.evaluation.bench import Inputs, Record, load_inputs, summarize, table1_ratios
from edgeskip.evaluation.drivers import Driver, HTTPDriver, open_driver
from edgeskip.evaluation.ideal import ideal_bound
from edgeskip.evaluation.report import write_report, write_sweep_report
from edgeskip.evaluation.workloads import WORKLOADS, WorkloadSpec, phased_phases

BASELINE = "static no-skip"
SWEEP_FACTORS = (2.0, 1.2, 1.0, 0.8, 0.6, 0.5)  # x the no-skip service time
SWEEP_SLA_FACTOR = 1.5  # SLA for violation rates: x the unloaded no-skip round trip the bench itself sees
PRIORITY_MIX = ((0, 0.6), (1, 0.3), (2, 0.1))  # priority, share of requests (sweep and priority policy)


@dataclass
class BenchOptions:
    workload: str = "paper"
    requests: int = 200
    period_ms: float | None = None
    rate_hz: float | None = None
    period_factor: float = 1.0  # default period = factor x the measured no-skip service time
    seed: int = 0
    trace: Path | None = None
    policy: str = "algorithm1"
    compare: bool = False
    repeats: int = 1  # compare: alternating (static, policy) pairs; sweep: runs per (policy, regime); pooled
    sweep: bool = False
    policies: list[str] | None = None  # sweep: a subset of SWEEP_POLICIES
    regimes: list[str] | None = None  # sweep: a subset of the regime names
    budget_ms: float | None = None
    sla_ms: float | None = None
    send_labels: bool = False
    dataset: str | None = None
    data_dir: str | None = None
    out: Path = Path("runs/bench")
    progress: bool = True
    pin: bool = False  # in-process: pin the worker to the target's serving cores
    decision_log: Path | None = None  # in-process


def sweep_policies(configs: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Run name -> (policy, settings overrides). The priority tiers are set from the allowed depths."""
    deepest_skip = max(c["n_skipped"] for c in configs["configs"] if c["allowed"])
    return {
        BASELINE: ("static", {"static_config": 0}),
        "algorithm1": ("algorithm1", {}),
        "load-aware": ("load-aware", {}),
        "budget": ("budget", {}),
        "priority": ("priority", {"tier_max_skipped": {1: deepest_skip // 2, 2: 0}}),
        "performance-aware": ("performance-aware", {}),
    }


def sweep_regimes() -> dict[str, tuple[str, float]]:
    """Regime name -> (workload, period factor)."""
    regimes = {f"period x{f:g}": ("paper", f) for f in SWEEP_FACTORS}
    regimes["phased"] = ("phased", 1.0)
    regimes["bursts"] = ("bursts", 1.0)
    return regimes


def _priorities(n: int, seed: int) -> list[int]:
    rng = random.Random(seed + 1)
    levels, weights = zip(*PRIORITY_MIX, strict=True)
    return rng.choices(levels, weights, k=n)


def arrivals(workload: str, n: int, period_s: float | None, opts: BenchOptions) -> list[float]:
    return WORKLOADS.get(workload)(WorkloadSpec(n, period_s, opts.rate_hz, opts.seed, opts.trace))


def run_once(driver: Driver, policy: str | None, overrides: dict[str, Any], offsets: list[float], inputs: Inputs,
             opts: BenchOptions, *, sla_ms: float | None, budget_ms: float | None,
             priorities: list[int] | None, label: str) -> dict[str, Any]:
    server = driver.load(policy, overrides) if policy is not None else None
    configs = driver.configs()
    records, duration, energy = driver.run(offsets, inputs, priorities=priorities, budget_ms=budget_ms,
                                           send_labels=opts.send_labels, progress=opts.progress, label=label)
    run = summarize(records, duration, sla_ms, energy)
    run["path"] = driver.path
    run["server"] = _server_info(configs)
    if server is not None:
        run["server"]["load_answer"] = {k: server.get(k) for k in ("policy", "settings", "bundle")}
    run["_configs"] = configs
    return run


def _server_info(configs: dict[str, Any]) -> dict[str, Any]:
    """The policy and settings a run was measured with, as the runtime reported them."""
    return {"policy": configs["policy"], "settings": configs.get("settings"), "delta_req": configs.get("delta_req"),
            "service_time": configs.get("service_time"),
            "allowed_configurations": [c["index"] for c in configs["configs"] if c["allowed"]]}


def _ideal(baseline: dict[str, Any], adaptive: dict[str, Any]) -> dict[str, float]:
    return ideal_bound(baseline, adaptive, adaptive["_configs"])


def _strip(run: dict[str, Any], keep_timeline: bool = True) -> dict[str, Any]:
    run = {k: v for k, v in run.items() if k != "_configs"}
    if not keep_timeline:
        run.pop("timeline", None)
        run.pop("records", None)
    return run


def run_bench(target: str, opts: BenchOptions) -> dict[str, Any]:
    """One run, or ``compare``, or ``sweep``; writes the report into ``opts.out``."""
    driver = open_driver(target, pin=opts.pin, decision_log=opts.decision_log)
    try:
        if opts.sweep:
            return run_sweep(driver, target, opts)
        return _run_single_or_compare(driver, target, opts)
    finally:
        driver.close()


def _run_single_or_compare(driver: Driver, target: str, opts: BenchOptions) -> dict[str, Any]:
    start = driver.configs()
    service_ms = start["service_time"]["service_ms"]
    inputs = load_inputs(opts.dataset or driver.dataset, opts.requests, opts.seed, opts.data_dir)
    period_s = opts.period_ms / 1e3 if opts.period_ms else None
    if period_s is None and opts.rate_hz is None and opts.workload not in ("trace", "loadgen"):
        period_s = opts.period_factor * service_ms / 1e3
    runs: dict[str, dict[str, Any]] = {}
    pairs: list[dict[str, dict[str, Any]]] = []
    plan = [(BASELINE, "static", {"static_config": 0}), (opts.policy, opts.policy, {})] if opts.compare \
        else [(start["policy"], None, {})]
    doc: dict[str, Any] = {"schema": "edgeskip.bench/2", "target": target, "path": driver.path,
                           "model": driver.model, "workload": opts.workload, "requests": opts.requests,
                           "period_ms": None if period_s is None else period_s * 1e3,
                           "period_factor": opts.period_factor if opts.period_ms is None else None,
                           "seed": opts.seed, "service_time_at_start": start["service_time"]}
    try:
        if opts.workload == "loadgen":
            if not isinstance(driver, HTTPDriver):
                raise UsageError("the loadgen workload drives a server URL, not a bundle directory")
            from edgeskip.evaluation.loadgen import run_loadgen

            qps = opts.rate_hz or 1.0 / period_s
            for name, policy, overrides in plan:
                if policy is not None:
                    driver.load(policy, overrides)
                runs[name] = run_loadgen(driver.client, driver.model, inputs, target_qps=qps,
                                         min_queries=opts.requests,
                                         target_latency_ms=opts.sla_ms or 10 * service_ms,
                                         log_dir=opts.out / f"loadgen-{name.replace(' ', '-')}")
                runs[name].update(path=driver.path, server=_server_info(driver.configs()))
        else:
            offsets = arrivals(opts.workload, opts.requests, period_s, opts)
            repeats = opts.repeats if opts.compare else 1
            for rep in range(repeats):  # alternate the policies: the machine's speed drifts over seconds
                pair = {}
                for name, policy, overrides in plan:
                    label = f"bench {name}" + (f" ({rep + 1}/{repeats})" if repeats > 1 else "")
                    pair[name] = run_once(driver, policy, overrides, offsets, inputs, opts, sla_ms=opts.sla_ms,
                                          budget_ms=opts.budget_ms, priorities=None, label=label)
                pairs.append(pair)
            if opts.workload == "phased":
                doc["phases"] = phased_phases(offsets)
    finally:
        if opts.compare:  # leave the server on the policy it served before, with its configured settings
            driver.load(start["policy"], {})
    if pairs and opts.compare:
        per_pair = []
        for pair in pairs:
            ratio = table1_ratios(pair[BASELINE], pair[opts.policy])["processed_inferences_x"]
            ideal = _ideal(pair[BASELINE], pair[opts.policy])
            per_pair.append({"processed_x": ratio, "ideal_processed_x": ideal["processed_x"],
                             "share_of_ideal": ratio / ideal["processed_x"] if ratio and ideal["processed_x"] else None,
                             "processed": {n: pair[n]["processed"] for n in pair},
                             "configs_used": {n: len(pair[n]["skipped_histogram"]) for n in pair}, "ideal": ideal})
        middle = sorted(range(len(pairs)), key=lambda i: per_pair[i]["processed_x"] or 0)[len(pairs) // 2]
        runs = pairs[middle]  # the plots show the pair with the median ratio
        doc["repeats"] = per_pair
        doc["ideal"] = per_pair[middle]["ideal"]
        doc["table1"] = {**table1_ratios(pool([p[BASELINE] for p in pairs]), pool([p[opts.policy] for p in pairs])),
                         "ideal_processed_x": statistics.median(p["ideal_processed_x"] for p in per_pair),
                         "processed_x_per_repeat": [p["processed_x"] for p in per_pair]}
        doc["table1"]["share_of_ideal"] = doc["table1"]["processed_inferences_x"] / doc["table1"]["ideal_processed_x"]
        if opts.workload == "phased":
            doc["table1_by_phase"] = _table1_by_phase(runs[BASELINE], runs[opts.policy], doc["phases"])
    elif pairs:
        runs = pairs[0]
    if opts.compare and runs and "table1" not in doc:  # loadgen: one pair, no ideal bound
        doc["table1"] = table1_ratios(runs[BASELINE], runs[opts.policy])
    doc["runs"] = {name: _strip(run) for name, run in runs.items()}
    write_report(doc, opts.out)
    return doc


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one policy as one: summed counts and energy, accuracy over all processed."""
    processed = sum(r["processed"] for r in runs)
    correct = sum((r["online_accuracy"] or 0.0) * r["processed"] for r in runs)
    joules = sum(r["energy"]["joules"] for r in runs)
    return {"processed": processed, "online_accuracy": correct / processed if processed else None,
            "inferences_per_joule": processed / joules if joules > 0 else None}


def _unloaded_round_trip_ms(driver: Driver, inputs: Inputs, service_ms: float, n: int = 40) -> float:
    """Median round trip of no-skip requests at low load, as this bench measures it (over HTTP that
    includes the client's own time on the same machine): the base of the sweep's SLA."""
    driver.load("static", {"static_config": 0})
    offsets = [i * 3 * service_ms / 1e3 for i in range(min(n, len(inputs.labels)))]
    records, _, _ = driver.run(offsets, inputs, progress=False)
    return statistics.median(r.round_trip_ms for r in records[5:] if r.status == 200)


def pool_runs(runs: list[dict[str, Any]], sla_ms: float | None, *, keep_timeline: bool) -> dict[str, Any]:
    """Repeats of one (policy, regime) as one summary; the timeline is the first repeat's."""
    records = [Record(**r) for run in runs for r in run["records"]]
    energy = {"joules": sum(r["energy"]["joules"] for r in runs), "estimate": runs[0]["energy"]["estimate"],
              "source": runs[0]["energy"]["source"]}
    pooled = summarize(records, sum(r["duration_s"] for r in runs), sla_ms, energy)
    pooled.update(path=runs[0]["path"], server=runs[0]["server"], repeats=len(runs),
                  processed_per_repeat=[r["processed"] for r in runs],
                  switches_per_100=statistics.fmean(r["switches_per_100"] for r in runs))
    pooled.pop("records")
    if keep_timeline:
        pooled["timeline"] = runs[0]["timeline"]
    else:
        pooled.pop("timeline")
    return pooled


def _table1_by_phase(baseline: dict[str, Any], adaptive: dict[str, Any], phases: list[dict]) -> list[dict]:
    out = []
    for k, ph in enumerate(phases):
        counts = []
        for run in (baseline, adaptive):
            recs = [r for r in run["records"] if ph["first"] <= r["index"] <= ph["last"]]
            counts.append({"processed": sum(r["status"] == 200 for r in recs),
                           "mean_skipped": _mean([r["n_skipped"] for r in recs if r["status"] == 200])})
        out.append({"phase": k, "period_factor": ph["period_factor"], "requests": ph["last"] - ph["first"] + 1,
                    BASELINE: counts[0], "adaptive": counts[1],
                    "processed_x": counts[1]["processed"] / counts[0]["processed"] if counts[0]["processed"] else None})
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def run_sweep(driver: Driver, target: str, opts: BenchOptions) -> dict[str, Any]:
    """Every policy over every load regime, on the same seeded arrivals per regime."""
    start = driver.configs()
    service_ms = start["service_time"]["service_ms"]
    policies = sweep_policies(start)
    regimes = sweep_regimes()
    for name, chosen, known in (("policies", opts.policies, policies), ("regimes", opts.regimes, regimes)):
        if chosen and set(chosen) - set(known):
            raise UsageError(f"unknown sweep {name} {sorted(set(chosen) - set(known))}; known: {sorted(known)}")
    policies = {k: v for k, v in policies.items() if not opts.policies or k in opts.policies}
    regimes = {k: v for k, v in regimes.items() if not opts.regimes or k in opts.regimes}
    inputs = load_inputs(opts.dataset or driver.dataset, opts.requests, opts.seed, opts.data_dir)
    unloaded_ms = _unloaded_round_trip_ms(driver, inputs, service_ms)
    sla_ms = opts.sla_ms or SWEEP_SLA_FACTOR * unloaded_ms
    budget_ms = opts.budget_ms or service_ms
    priorities = _priorities(opts.requests, opts.seed)
    results: dict[str, dict[str, Any]] = {}
    ideals: dict[str, Any] = {}
    phases: dict[str, list[dict[str, float]]] = {}
    periods_ms: dict[str, float] = {}
    try:
        for regime, (workload, factor) in regimes.items():
            # The period follows the runtime's current estimate: a shared machine's speed drifts.
            periods_ms[regime] = factor * driver.configs()["service_time"]["service_ms"]
            offsets = arrivals(workload, opts.requests, periods_ms[regime] / 1e3, opts)
            if workload == "phased":
                phases[regime] = phased_phases(offsets)
            reps: dict[str, list[dict[str, Any]]] = {name: [] for name in policies}
            for rep in range(opts.repeats):  # alternating order: the machine's speed drifts over seconds
                order = list(policies.items()) if rep % 2 == 0 else list(reversed(policies.items()))
                for name, (policy, overrides) in order:
                    label = f"{regime}: {name}" + (f" ({rep + 1}/{opts.repeats})" if opts.repeats > 1 else "")
                    reps[name].append(run_once(driver, policy, overrides, offsets, inputs, opts, sla_ms=sla_ms,
                                               budget_ms=budget_ms, priorities=priorities, label=label))
            if BASELINE in reps and "algorithm1" in reps:
                bounds = [_ideal(b, a) for b, a in zip(reps[BASELINE], reps["algorithm1"], strict=True)]
                ideals[regime] = sorted(bounds, key=lambda b: b["processed_x"])[len(bounds) // 2]
            results[regime] = {name: pool_runs(runs, sla_ms, keep_timeline=workload == "phased")
                               for name, runs in reps.items()}
    finally:
        driver.load(start["policy"], {})
    doc: dict[str, Any] = {"schema": "edgeskip.sweep/1", "target": target, "path": driver.path,
                           "model": driver.model, "requests_per_run": opts.requests, "repeats": opts.repeats,
                           "seed": opts.seed,
                           "service_time_at_start": start["service_time"], "sla_ms": sla_ms,
                           "unloaded_round_trip_ms": unloaded_ms,
                           "budget_ms": budget_ms, "priority_mix": dict(PRIORITY_MIX),
                           "send_labels": opts.send_labels,
                           "policies": {k: {"policy": p, "overrides": o} for k, (p, o) in policies.items()},
                           "regimes": {k: {"workload": w, "period_factor": f, "period_ms": periods_ms[k],
                                           **({"phases": phases[k]} if k in phases else {})}
                                       for k, (w, f) in regimes.items()},
                           "ideal": ideals, "results": results}
    if BASELINE in policies and "algorithm1" in policies:
        doc["table1"] = {regime: {**table1_ratios(r[BASELINE], r["algorithm1"]),
                                  "ideal_processed_x": ideals[regime]["processed_x"]}
                         for regime, r in results.items()}
    write_sweep_report(doc, opts.out)
    return doc


def summary_lines(doc: dict[str, Any]) -> list[str]:
    if doc.get("schema") == "edgeskip.sweep/1":
        lines = [f"sweep over {len(doc['regimes'])} regimes x {len(doc['policies'])} policies ({doc['path']})"]
        for regime, t in doc.get("table1", {}).items():
            lines.append(f"{regime:>12}: algorithm1 processed {_x(t['processed_inferences_x'])} static no-skip "
                         f"(ideal bound {_x(t['ideal_processed_x'])}), accuracy "
                         f"{_pts(t['accuracy_change_points'])}")
        return lines
    lines = []
    for name, r in doc["runs"].items():
        acc = "-" if r["online_accuracy"] is None else f"{100 * r['online_accuracy']:.2f} %"
        hist = ", ".join(f"{k}:{v}" for k, v in r["skipped_histogram"].items())
        lines.append(f"{name:>16}: processed {r['processed']}/{r['requests']}, dropped {r['dropped']}, "
                     f"online accuracy {acc}, skipped blocks {{{hist}}}, energy {r['energy']['joules']:.3f} J")
    if "table1" in doc:
        t = doc["table1"]
        reps = t.get("processed_x_per_repeat") or []
        spread = f", {len(reps)} alternating pairs: {min(reps):.2f}-{max(reps):.2f}x" if len(reps) > 1 else ""
        period = f", period {doc['period_ms']:.3f} ms" if doc.get("period_ms") else ""
        line = (f"Table I ({doc['path']}, {doc['workload']} workload{period}): processed "
                f"{_x(t['processed_inferences_x'])} static no-skip{spread}")
        if "ideal" in doc:
            i = doc["ideal"]
            line += (f"; ideal bound {_x(t['ideal_processed_x'])} from the arrivals as sent and the least busy "
                     f"time, {i['fastest_busy_ms']:.3f} ms at the fastest allowed configuration (no-skip median "
                     f"{i['no_skip_busy_ms']:.3f} ms; static simulated {i['simulated_processed_no_skip']} vs "
                     f"measured {i['measured_processed_no_skip']} processed), {100 * t['share_of_ideal']:.0f} % of it")
        line += (f", inferences per watt {_x(t['inferences_per_watt_x'])}, accuracy "
                 f"{_pts(t['accuracy_change_points'])}")
        lines.append(line)
    for ph in doc.get("table1_by_phase", []):
        lines.append(f"  phase {ph['phase']} (period x{ph['period_factor']:g}): processed "
                     f"{_x(ph['processed_x'])}, mean skipped blocks {ph['adaptive']['mean_skipped'] or 0:.2f}")
    return lines


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pts(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f} points"
