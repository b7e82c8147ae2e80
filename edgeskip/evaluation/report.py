"""Bench and sweep reports: JSON, markdown and PNG plots (Korol et al., Table I; the concept note's
"Evaluation Implications": processed and accuracy across load, depth distributions, SLA
violations, oscillation).

Plots of one bench: ``timeline.png`` (the configuration of every processed request over
time, drops per time bin below it, load phases shaded) and ``skipped_histogram.png``. Plots
of a sweep: ``processed_vs_load.png``, ``accuracy_vs_load.png``, ``depth_distribution.png``
and ``phased_timeline.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import atomic_path, write_json

from edgeskip.plotting import plt, save_png

DROP_BINS = 60


def _timeline_axes(runs: dict[str, dict[str, Any]], title: str, phases: list[dict[str, Any]] | None = None):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    end = max((p["t"] for run in runs.values() for p in run["timeline"]), default=1.0) or 1.0
    width = end / DROP_BINS
    most = 0
    for k, (name, run) in enumerate(runs.items()):
        color = f"C{k}"
        done = sorted((p["t"], p["n_skipped"]) for p in run["timeline"] if p["status"] == 200)
        if done:
            top.step([t for t, _ in done], [s for _, s in done], where="post", color=color, lw=1.2,
                     label=f"{name} ({len(done)} processed)")
            most = max(most, max(s for _, s in done))
        drops = [p["t"] for p in run["timeline"] if p["status"] == 503]
        counts = [0] * DROP_BINS
        for t in drops:
            counts[min(DROP_BINS - 1, int(t / width))] += 1
        bottom.step([i * width for i in range(DROP_BINS)], counts, where="post", color=color, lw=1.2,
                    label=f"{name} ({len(drops)} dropped)")
    for ax in (top, bottom):
        for ph in phases or []:
            if ph["period_factor"] < 1:
                ax.axvspan(ph["start_s"], ph["end_s"], color="0.85", zorder=0,
                           label=f"overload (period x{ph['period_factor']:g})" if ax is top else None)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, end)
    top.set_ylim(-0.05, most + 0.6)
    top.set_yticks(range(most + 1))
    top.set_ylabel("skipped blocks")
    top.set_title(title)
    top.legend(fontsize=8, loc="upper right")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel(f"drops per\n{width * 1e3:.0f} ms")
    bottom.set_xlabel("time since the first request (s)")
    bottom.legend(fontsize=8, loc="upper right")
    return fig


def plot_timeline(doc: dict[str, Any], path: Path) -> None:
    period = f", period {doc['period_ms']:.2f} ms" if doc.get("period_ms") else ""
    title = f"Configuration per processed request ({doc['workload']} workload{period}, {doc.get('path', 'http')})"
    save_png(_timeline_axes(doc["runs"], title, doc.get("phases")), path)


def plot_skipped_histogram(runs: dict[str, dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(runs), 1)
    for j, (name, run) in enumerate(runs.items()):
        hist = {int(k): v for k, v in run["skipped_histogram"].items()}
        ax.bar([k + j * width for k in hist], list(hist.values()), width=width, label=name)
    ax.set_xlabel("skipped blocks")
    ax.set_ylabel("processed requests")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)


def _row(name: str, r: dict[str, Any]) -> str:
    acc = f"{100 * r['online_accuracy']:.2f} %" if r["online_accuracy"] is not None else "-"
    ipj = f"{r['inferences_per_joule']:.2f}" if r["inferences_per_joule"] else "-"
    p50, p99 = r["latency_ms"]["p50"], r["latency_ms"]["p99"]
    lat = f"{p50:.2f} | {p99:.2f}" if p50 is not None else "- | -"
    sla = f"{100 * r['sla_violation_rate']:.1f} %" if r.get("sla_violation_rate") is not None else "-"
    depth = ", ".join(f"{k}:{v}" for k, v in r["skipped_histogram"].items()) or "-"
    return (f"| {name} | {r['processed']} | {r['dropped']} | {acc} | {lat} | {sla} | {depth} | "
            f"{r['switches_per_100']:.1f} | {r['energy']['joules']:.3f} | {ipj} |")


HEADER = ["| run | processed | dropped | online accuracy | p50 ms | p99 ms | SLA violations | "
          "skipped blocks: requests | switches /100 | energy J | inf/J |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def markdown(doc: dict[str, Any]) -> str:
    period = f"{doc['period_ms']:.3f} ms" if doc.get("period_ms") else "-"
    st = doc["service_time_at_start"]
    lines = [f"# edgeskip bench: {doc['workload']} workload, {doc['requests']} requests", "",
             f"Target {doc['target']} ({doc['path']}), model {doc['model']}, period {period}, seed {doc['seed']}. "
             f"No-skip service time measured by the runtime at start: {st['service_ms']:.3f} ms "
             f"(module {st['module_ms']:.3f} + handling {st['handling_ms']:.3f}).", "", *HEADER]
    lines += [_row(name, r) for name, r in doc["runs"].items()]
    lines += ["", "Policies and settings as the runtime reported them:", ""]
    for name, r in doc["runs"].items():
        s = r["server"]
        lines.append(f"* {name}: policy `{s['policy']}`, delta_req {s.get('delta_req')}, "
                     f"settings `{_nondefault(s.get('settings'))}`")
    est = any(r["energy"]["estimate"] for r in doc["runs"].values())
    if est:
        lines += ["", "Energy is an **estimate** from the target's power model (no power sensor was readable)."]
    if "table1" in doc:
        t = doc["table1"]
        ideal = t.get("ideal_processed_x")
        lines += ["", "## Table I ratios (vs. static no-skip)", "",
                  "| accuracy change | processed inferences | ideal bound | share of ideal | inferences per watt |",
                  "| --- | --- | --- | --- | --- |",
                  f"| {fmt_value(t['accuracy_change_points'], ' pts')} | {fmt_value(t['processed_inferences_x'])} | "
                  f"{fmt_value(ideal, 'x')} | {fmt_value(t.get('share_of_ideal'), '')} | "
                  f"{fmt_value(t['inferences_per_watt_x'], 'x')} |"]
    if len(doc.get("repeats", [])) > 1:
        lines += ["", "Alternating repeats (same arrivals; Table I above pools them):", "",
                  "| repeat | processed static | processed adaptive | ratio | ideal bound | share of ideal |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for i, rep in enumerate(doc["repeats"]):
            counts = list(rep["processed"].values())
            lines.append(f"| {i + 1} | {counts[0]} | {counts[1]} | {fmt_value(rep['processed_x'], 'x')} | "
                         f"{fmt_value(rep['ideal_processed_x'], 'x')} | {fmt_value(rep['share_of_ideal'], '')} |")
    if doc.get("table1_by_phase"):
        lines += ["", "## By phase", "", "| phase | period factor | processed static | processed adaptive | ratio | "
                  "mean skipped |", "| --- | --- | --- | --- | --- | --- |"]
        for ph in doc["table1_by_phase"]:
            lines.append(f"| {ph['phase']} | {ph['period_factor']:g} | {ph['static no-skip']['processed']} | "
                         f"{ph['adaptive']['processed']} | {fmt_value(ph['processed_x'], 'x')} | "
                         f"{fmt_value(ph['adaptive']['mean_skipped'], '')} |")
    return "\n".join(lines) + "\n"


def _nondefault(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The settings that differ from the defaults, so the table stays readable."""
    if not settings:
        return {}
    from edgeskip_runtime.policies import PolicySettings

    defaults = PolicySettings().to_dict()
    return {k: v for k, v in settings.items() if defaults.get(k) != v}


def fmt_value(v: float | None, unit: str = "x") -> str:
    """A ratio (``x``), signed points (`` pts``) or any other figure for a report; ``-`` when missing."""
    if v is None:
        return "-"
    return f"{v:+.2f}{unit}" if unit.strip() == "pts" else f"{v:.2f}{unit}"


def write_report(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "timeline": out / "timeline.png",
             "histogram": out / "skipped_histogram.png"}
    write_json(paths["json"], doc)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(doc))
    if all("timeline" in r for r in doc["runs"].values()):
        plot_timeline(doc, paths["timeline"])
    plot_skipped_histogram(doc["runs"], paths["histogram"])
    return paths


# -- sweep -----------------------------------------------------------------------------------

def sweep_markdown(doc: dict[str, Any]) -> str:
    st = doc["service_time_at_start"]
    lines = [f"# edgeskip sweep: {len(doc['policies'])} policies x {len(doc['regimes'])} load regimes", "",
             f"Target {doc['target']} ({doc['path']}), model {doc['model']}, {doc['requests_per_run']} requests "
             f"per run, {doc.get('repeats', 1)} alternating repeats pooled, seed {doc['seed']}. Each regime's "
             "period is a multiple of the no-skip service time the runtime measured just before it; at the start "
             f"it was {st['service_ms']:.3f} ms (module {st['module_ms']:.3f} + handling {st['handling_ms']:.3f}). "
             f"SLA {doc['sla_ms']:.3f} ms (1.5x the unloaded no-skip round trip this bench measured, "
             f"{doc['unloaded_round_trip_ms']:.3f} ms); every "
             f"request carries latency_budget_ms {doc['budget_ms']:.3f} and a priority drawn from "
             f"{doc['priority_mix']}.", ""]
    for regime, runs in doc["results"].items():
        spec = doc["regimes"][regime]
        ideal = doc["ideal"].get(regime)
        bound = f"; ideal processed bound {ideal['processed_x']:.2f}x static" if ideal else ""
        lines += [f"## {regime} ({spec['workload']} workload, period {spec['period_ms']:.3f} ms{bound})", "", *HEADER]
        lines += [_row(name, r) for name, r in runs.items()]
        lines.append("")
    if "table1" in doc:
        lines += ["## Table I by regime (algorithm1 vs static no-skip)", "",
                  "| regime | processed | ideal bound | accuracy change | inferences per watt |",
                  "| --- | --- | --- | --- | --- |"]
        for regime, t in doc["table1"].items():
            lines.append(f"| {regime} | {fmt_value(t['processed_inferences_x'], 'x')} | "
                         f"{fmt_value(t['ideal_processed_x'])} | {fmt_value(t['accuracy_change_points'], ' pts')} | "
                         f"{fmt_value(t['inferences_per_watt_x'], 'x')} |")
    lines += ["", "Policies and their settings overrides (all else as the runtime was configured):", ""]
    lines += [f"* {name}: `{p['policy']}` {p['overrides'] or ''}" for name, p in doc["policies"].items()]
    return "\n".join(lines) + "\n"


def _load_regimes(doc: dict[str, Any]) -> list[tuple[float, str]]:
    """(offered load = 1 / period factor, regime) for the constant-period regimes, by load."""
    out = [(1.0 / s["period_factor"], r) for r, s in doc["regimes"].items() if s["workload"] == "paper"]
    return sorted(out)


def plot_vs_load(doc: dict[str, Any], path: Path, metric: str) -> None:
    regimes = _load_regimes(doc)
    if not regimes:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(next(iter(doc["results"].values())).keys())
    loads = [x for x, _ in regimes]
    for name in names:
        ys = []
        for _, regime in regimes:
            r = doc["results"][regime][name]
            if metric == "processed":
                ys.append(100 * r["processed"] / r["requests"])
            else:
                ys.append(None if r["online_accuracy"] is None else 100 * r["online_accuracy"])
        ax.plot(loads, ys, marker="o", label=name)
    if metric == "processed" and all(regime in doc["ideal"] for _, regime in regimes):
        ideal = [100 * min(1.0, doc["ideal"][regime]["simulated_processed_fastest"] / doc["requests_per_run"])
                 for _, regime in regimes]
        ax.plot(loads, ideal, ls="--", color="0.4",
                label="fastest allowed config, drop-when-busy simulation\n(worker busy time only)")
        ax.set_ylabel("processed requests (% of sent)")
        ax.set_title("Processed requests against offered load")
    else:
        ax.set_ylabel("online accuracy of processed requests (%)")
        ax.set_title("Accuracy against offered load")
    ax.set_xlabel("offered load (no-skip service time / mean period)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)


def plot_depth_distribution(doc: dict[str, Any], path: Path) -> None:
    regimes = list(doc["results"])
    names = list(doc["results"][regimes[0]].keys())
    depths = sorted({int(k) for runs in doc["results"].values() for r in runs.values() for k in r["skipped_histogram"]})
    cols = min(4, len(regimes))
    rows = (len(regimes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis", max(len(depths), 2))
    for ax, regime in zip(axes.flat, regimes, strict=False):
        for j, name in enumerate(names):
            r = doc["results"][regime][name]
            total = max(r["processed"], 1)
            bottom = 0.0
            for d_i, d in enumerate(depths):
                share = r["skipped_histogram"].get(str(d), 0) / total
                ax.bar(j, share, bottom=bottom, color=cmap(d_i), label=f"{d} skipped" if j == 0 else None)
                bottom += share
        ax.set_title(regime, fontsize=9)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(regimes):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("share of processed")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("Depth distribution per load regime (share of processed requests by skipped blocks)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(depths), fontsize=8, frameon=False)
    save_png(fig, path)


def write_sweep_report(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "markdown": out / "sweep.md",
             "processed": out / "processed_vs_load.png", "accuracy": out / "accuracy_vs_load.png",
             "depth": out / "depth_distribution.png", "phased": out / "phased_timeline.png"}
    write_json(paths["json"], doc)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(sweep_markdown(doc))
    plot_vs_load(doc, paths["processed"], "processed")
    plot_vs_load(doc, paths["accuracy"], "accuracy")
    plot_depth_distribution(doc, paths["depth"])
    if "phased" in doc["results"]:
        runs = {k: v for k, v in doc["results"]["phased"].items() if k in ("static no-skip", "algorithm1",
                                                                           "load-aware", "performance-aware")}
        title = "Phased load: low, overload, low (configuration per processed request)"
        save_png(_timeline_axes(runs, title, doc["regimes"]["phased"].get("phases")), paths["phased"])
    return paths
