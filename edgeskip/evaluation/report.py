"""Bench reports: JSON, markdown and PNG plots (config timeline, skipped-block histogram)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskip.atomic import atomic_path, write_json
from edgeskip.plotting import finish, plt, save_png


def plot_timeline(runs: dict[str, dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, run in runs.items():
        done = [p for p in run["timeline"] if p["status"] == 200]
        ax.step([p["t"] for p in done], [p["n_skipped"] for p in done], where="post", label=f"{name}: skipped blocks")
        drops = [p["t"] for p in run["timeline"] if p["status"] == 503]
        ax.scatter(drops, [-0.3] * len(drops), marker="|", s=40, label=f"{name}: drops")
    finish(ax, "time (s)", "skipped blocks", "Configuration chosen per processed request", 8)
    save_png(fig, path)


def plot_skipped_histogram(runs: dict[str, dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(runs), 1)
    for j, (name, run) in enumerate(runs.items()):
        hist = {int(k): v for k, v in run["skipped_histogram"].items()}
        ax.bar([k + j * width for k in hist], list(hist.values()), width=width, label=name)
    finish(ax, "skipped blocks", "processed requests", legend_fontsize=8)
    save_png(fig, path)


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# edgeskip bench: {doc['workload']} workload, {doc['requests']} requests", "",
             f"Server {doc['url']}, model {doc['model']}, period {doc.get('period_ms')} ms, seed {doc['seed']}.", "",
             "| run | processed | dropped | online accuracy | p50 ms | p99 ms | SLA violations | energy J | inf/J |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in doc["runs"].items():
        acc = f"{100 * r['online_accuracy']:.2f} %" if r["online_accuracy"] is not None else "-"
        ipj = f"{r['inferences_per_joule']:.2f}" if r["inferences_per_joule"] else "-"
        p50, p99 = r["latency_ms"]["p50"], r["latency_ms"]["p99"]
        lines.append(f"| {name} | {r['processed']} | {r['dropped']} | {acc} | "
                     f"{p50:.2f} | {p99:.2f} | {r['sla_violations']} | {r['energy']['joules']:.3f} | {ipj} |"
                     if p50 is not None else f"| {name} | 0 | {r['dropped']} | - | - | - | - | - | - |")
    est = any(r["energy"]["estimate"] for r in doc["runs"].values())
    if est:
        lines += ["", "Energy is an **estimate** from the target's power model (no power sensor was readable)."]
    if "table1" in doc:
        t = doc["table1"]
        lines += ["", "## Table I ratios (vs. static no-skip)", "",
                  "| accuracy change | processed inferences | inferences per watt |", "| --- | --- | --- |",
                  f"| {_fmt(t['accuracy_change_points'], ' pts')} | {_fmt(t['processed_inferences_x'], 'x')} | "
                  f"{_fmt(t['inferences_per_watt_x'], 'x')} |"]
    return "\n".join(lines) + "\n"


def _fmt(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:+.2f}{unit}" if unit.strip() == "pts" else f"{v:.2f}{unit}"


def write_report(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "timeline": out / "timeline.png",
             "histogram": out / "skipped_histogram.png"}
    write_json(paths["json"], doc)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown(doc))
    plot_timeline(doc["runs"], paths["timeline"])
    plot_skipped_histogram(doc["runs"], paths["histogram"])
    return paths
