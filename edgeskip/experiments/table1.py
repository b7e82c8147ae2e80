"""Table I of the paper: accuracy change, processed inferences and inferences per Watt of SkipNet and of
Ours, each relative to the Original, on the same seeded workload (Korol et al., Sec. III-B/C, Table I).

Three bundles of one model serve the same arrivals and images:

* **Original**: the standard-trained network compiled at full depth (``compile --full-depth-only``),
  static policy;
* **SkipNet**: the self-gated bundle (its gates decide per input), static policy (one operating point);
* **Ours**: the stochastic-depth network's Pareto bundle under Algorithm 1 with the runtime's defaults,
  or with ``ours_settings`` (e.g. ``min_acc``, Algorithm 1's accuracy floor, line 1).

Each load regime of ``bench --sweep`` (period = factor x the Original's measured service time, read
again before each regime because a shared machine drifts; the phased and burst workloads) runs every
system ``repeats`` times in alternating order, pooled. The paths are in-process (the engine alone) and
HTTP (the real server as a subprocess, the real client). Energy is the runtime's meter: a sensor where
the machine has one, else the target's power model (``estimate`` says which).

Output ``edgeskip.table1/1`` (``table1.json``), ``table1.md`` and ``table1.png``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeskip_runtime.errors import UsageError

from edgeskip.evaluation.bench import load_inputs, table1_ratios
from edgeskip.evaluation.drivers import Driver, HTTPDriver, InProcessDriver
from edgeskip.evaluation.report import fmt_value
from edgeskip.evaluation.runner import BenchOptions, arrivals, pool_runs, run_once, sweep_regimes
from edgeskip.experiments import paper
from edgeskip.experiments.report_files import write_experiment
from edgeskip.experiments.systems import open_systems
from edgeskip.plotting import plt, save_png

SCHEMA = "edgeskip.table1/1"
PATHS = ("in-process", "http")
# System -> (policy, settings overrides). Original and SkipNet have one operating point each.
SYSTEMS: dict[str, tuple[str, dict[str, Any]]] = {
    "Original": ("static", {"static_config": 0}),
    "SkipNet": ("static", {"static_config": 0}),
    "Ours": ("algorithm1", {}),
}


@contextlib.contextmanager
def open_drivers(bundles: dict[str, Path], path: str) -> Iterator[dict[str, Driver]]:
    """One driver per system: engines in this process, or one real server per bundle on loopback."""
    from edgeskip.evaluation.local_server import LocalServer

    drivers: dict[str, Driver] = {}
    servers: list[LocalServer] = []
    try:
        for name, bundle in bundles.items():
            if path == "http":
                servers.append(LocalServer(bundle, "--no-pin"))
                drivers[name] = HTTPDriver(servers[-1].url)
            else:
                drivers[name] = InProcessDriver(bundle)
        yield drivers
    finally:
        for d in drivers.values():
            with contextlib.suppress(Exception):
                d.close()
        for s in servers:
            s.stop()


def run_path(drivers: dict[str, Driver], path: str, regimes: dict[str, tuple[str, float]], *, requests: int,
             repeats: int, seed: int, data_dir: str | None, progress: bool,
             ours_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    original = drivers["Original"]
    opts = BenchOptions(requests=requests, seed=seed, progress=progress)
    inputs = load_inputs(original.dataset, requests, seed, data_dir)
    results: dict[str, Any] = {}
    for regime, (workload, factor) in regimes.items():
        period_ms = factor * original.configs()["service_time"]["service_ms"]
        offsets = arrivals(workload, requests, period_ms / 1e3, opts)
        reps: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
        for rep in range(repeats):  # alternating order: the machine's speed drifts over seconds
            order = list(SYSTEMS) if rep % 2 == 0 else list(reversed(SYSTEMS))
            for name in order:
                label = f"{path} {regime}: {name} ({rep + 1}/{repeats})"
                policy, overrides = SYSTEMS[name]  # loaded afresh: every run starts from the policy's initial state
                if name == "Ours":
                    overrides = {**overrides, **(ours_settings or {})}
                reps[name].append(run_once(drivers[name], policy, overrides, offsets, inputs, opts, sla_ms=None,
                                           budget_ms=None, priorities=None, label=label))
        pooled = {name: pool_runs(runs, None, keep_timeline=False) for name, runs in reps.items()}
        results[regime] = {
            "workload": workload, "period_factor": factor, "period_ms": period_ms,
            "systems": {name: {k: pooled[name][k] for k in ("processed", "dropped", "online_accuracy",
                                                            "inferences_per_joule", "energy", "latency_ms",
                                                            "skipped_histogram", "processed_per_repeat")}
                        for name in SYSTEMS},
            "SkipNet": table1_ratios(pooled["Original"], pooled["SkipNet"]),
            "Ours": table1_ratios(pooled["Original"], pooled["Ours"]),
        }
    return results


def table1(ours: str | Path, original: str | Path, skipnet: str | Path, out: str | Path, *,
           paths: Sequence[str] = PATHS, regimes: Sequence[str] | None = None, requests: int = 200,
           repeats: int = 3, seed: int = 0, data_dir: str | None = None, progress: bool = True,
           ours_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every system over every regime on every path; write ``out/table1.{json,md,png}``.

    ``ours_settings``: policy settings for Ours' Algorithm 1 over the runtime's defaults (``min_acc``).
    """
    opened = open_systems(ours, original, skipnet)
    bundles = {role: b.path for role, b in opened.items()}
    unknown = set(paths) - set(PATHS)
    if unknown or not paths:
        raise UsageError(f"paths must be among {list(PATHS)}, got {list(paths)}", setting="paths")
    known = sweep_regimes()
    if regimes and set(regimes) - set(known):
        raise UsageError(f"unknown regimes {sorted(set(regimes) - set(known))}; known: {list(known)}",
                         setting="regimes")
    chosen = {k: v for k, v in known.items() if not regimes or k in regimes}
    manifest = opened["Ours"].manifest
    doc: dict[str, Any] = {"schema": SCHEMA, "model": manifest.model, "dataset": manifest.dataset,
                           "bundles": {k: str(v) for k, v in bundles.items()}, "requests_per_run": requests,
                           "repeats": repeats, "seed": seed, "ours_settings": dict(ours_settings or {}),
                           "paper": {d: t.get(manifest.model)
                                                                       for d, t in paper.TABLE1.items()},
                           "paths": {}}
    for path in paths:
        with open_drivers(bundles, path) as drivers:
            doc["paths"][path] = run_path(drivers, path, chosen, requests=requests, repeats=repeats, seed=seed,
                                          data_dir=data_dir, progress=progress, ours_settings=ours_settings)
    doc["best"] = best_regime(doc)
    write_experiment(out, "table1", doc, markdown, plot_table1)
    return doc


def best_regime(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The (path, regime) where Ours processes the most relative to Original."""
    best = None
    for path, results in doc["paths"].items():
        for regime, r in results.items():
            x = r["Ours"]["processed_inferences_x"]
            if x is not None and (best is None or x > best["processed_inferences_x"]):
                best = {"path": path, "regime": regime, **r["Ours"]}
    return best


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Table I: {doc['model']} on {doc['dataset']}",
             "",
             f"{doc['requests_per_run']} requests per run, {doc['repeats']} repeats per system and regime "
             f"(pooled), seed {doc['seed']}. Ratios against Original; accuracy change in points. Ours: Algorithm 1 "
             + (f"with {doc['ours_settings']}." if doc.get("ours_settings") else "with the runtime's defaults."),
             "", "| path | regime | period ms | acc SkipNet | acc Ours | proc. inf. SkipNet | proc. inf. Ours | "
             "inf/W SkipNet | inf/W Ours | mean skipped Ours |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path, results in doc["paths"].items():
        for regime, r in results.items():
            s, o = r["SkipNet"], r["Ours"]
            hist = {int(k): v for k, v in r["systems"]["Ours"]["skipped_histogram"].items()}
            mean_skipped = sum(k * v for k, v in hist.items()) / max(sum(hist.values()), 1)
            cells = [fmt_value(s["accuracy_change_points"], " pts"), fmt_value(o["accuracy_change_points"], " pts"),
                     *(fmt_value(r[system][key]) for key in ("processed_inferences_x", "inferences_per_watt_x")
                       for system in ("SkipNet", "Ours"))]
            lines.append(f"| {path} | {regime} | {r['period_ms']:.2f} | {' | '.join(cells)} | {mean_skipped:.2f} |")
    lines += ["", "The paper (Table I, on an Odroid XU4):", "",
              "| dataset | acc SkipNet | acc Ours | proc. inf. SkipNet | proc. inf. Ours | inf/W SkipNet | "
              "inf/W Ours |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, p in doc["paper"].items():
        if p:
            lines.append(f"| {dataset} | {p['skipnet_acc']:+.2f} | {p['ours_acc']:+.2f} | {p['skipnet_proc']:.2f}x | "
                         f"{p['ours_proc']:.2f}x | {p['skipnet_ipw']:.2f}x | {p['ours_ipw']:.2f}x |")
    if doc.get("best"):
        b = doc["best"]
        lines += ["", f"Best regime for Ours: {b['path']} {b['regime']}: {fmt_value(b['processed_inferences_x'])} "
                      f"processed at {fmt_value(b['accuracy_change_points'], ' pts')}."]
    return "\n".join(lines) + "\n"


def plot_table1(doc: dict[str, Any], path: str | Path) -> None:
    paths = list(doc["paths"])
    fig, axes = plt.subplots(1, len(paths), figsize=(6.5 * len(paths), 3.8), squeeze=False)
    for ax, p in zip(axes[0], paths, strict=True):
        regimes = list(doc["paths"][p])
        xs = range(len(regimes))
        for k, system in enumerate(("SkipNet", "Ours")):
            vals = [doc["paths"][p][r][system]["processed_inferences_x"] or 0.0 for r in regimes]
            ax.bar([x + (k - 0.5) * 0.38 for x in xs], vals, width=0.38, label=system, color=f"C{3 if k == 0 else 0}")
        ax.axhline(1.0, color="k", lw=1, ls="--", label="Original")
        ax.set_xticks(list(xs), regimes, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("processed inferences / Original's")
        ax.set_title(f"Table I, {doc['model']}: {p}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    save_png(fig, path)
