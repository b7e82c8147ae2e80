"""PNG plots of the design-time results: Figure 1, accuracy against skipped blocks, Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskip_runtime.pareto import ConfigPoint

from edgeskip.plotting import finish, plt, save_png


def plot_figure1(doc: dict[str, Any], path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for entry in doc["models"]:
        xs = [p["n_skipped"] for p in entry["curve"]]
        ax.plot(xs, [100 * p["mean"] for p in entry["curve"]], marker="o", label=entry["label"])
        ax.fill_between(xs, [100 * p["min"] for p in entry["curve"]], [100 * p["max"] for p in entry["curve"]],
                        alpha=0.2)
    finish(ax, "skipped blocks N", f"{doc['split']} accuracy (%)",
           f"Accuracy when skipping blocks ({doc['draws']} random configs per N, min-max band)")
    save_png(fig, path)


def plot_accuracy_vs_skipped(candidates: list[ConfigPoint], path: str | Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p.n_skipped for p in candidates]
    ax.plot(xs, [100 * p.val_accuracy for p in candidates], marker="o", label="validation (selects)")
    if all(p.test_accuracy is not None for p in candidates):
        ax.plot(xs, [100 * p.test_accuracy for p in candidates], marker="s", label="test (reported)")
    finish(ax, "skipped blocks N (least sensitive first)", "accuracy (%)", title or "Accuracy against skipped blocks")
    save_png(fig, path)


def plot_pareto(candidates: list[ConfigPoint], front: list[ConfigPoint], path: str | Path,
                exhaustive: list[ConfigPoint] | None = None, true_front: list[ConfigPoint] | None = None,
                title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    if exhaustive:
        ax.scatter([p.latency_ms for p in exhaustive], [100 * p.val_accuracy for p in exhaustive], s=10,
                   color="lightgrey", label=f"all {len(exhaustive)} configs")
    if true_front:
        ax.step([p.latency_ms for p in sorted(true_front, key=lambda p: p.latency_ms)],
                [100 * p.val_accuracy for p in sorted(true_front, key=lambda p: p.latency_ms)], where="post",
                color="grey", linestyle="--", label="true front (exhaustive)")
    ax.scatter([p.latency_ms for p in candidates], [100 * p.val_accuracy for p in candidates], marker="x",
               label="sensitivity candidates")
    fs = sorted(front, key=lambda p: p.latency_ms)
    ax.plot([p.latency_ms for p in fs], [100 * p.val_accuracy for p in fs], marker="o",
            label=f"Pareto front ({len(fs)}; labels: blocks skipped)")
    step = -(-len(fs) // 12)  # at most about 12 labels: ResNet-110's 35 would overlap
    for p in fs[::step]:
        ax.annotate(str(p.n_skipped), (p.latency_ms, 100 * p.val_accuracy), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    source = fs[0].latency_source.split(" median")[0] if fs and fs[0].latency_source else "batch 1"
    finish(ax, f"latency (ms; {source})", "validation accuracy (%)",
           f"Pareto front{': ' + title if title else ' of skip configurations'}", 8)
    save_png(fig, path)
