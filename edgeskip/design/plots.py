"""PNG plots of the design-time results: Figure 1, accuracy against skipped blocks, Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: boards and CI have no display
import matplotlib.pyplot as plt

from edgeskip.atomic import atomic_path
from edgeskip.design.pareto import ConfigPoint


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_figure1(doc: dict[str, Any], path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for entry in doc["models"]:
        xs = [p["n_skipped"] for p in entry["curve"]]
        ax.plot(xs, [100 * p["mean"] for p in entry["curve"]], marker="o", label=entry["label"])
        ax.fill_between(xs, [100 * p["min"] for p in entry["curve"]], [100 * p["max"] for p in entry["curve"]],
                        alpha=0.2)
    ax.set_xlabel("skipped blocks N")
    ax.set_ylabel(f"{doc['split']} accuracy (%)")
    ax.set_title(f"Accuracy when skipping blocks ({doc['draws']} random configs per N, min-max band)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_accuracy_vs_skipped(candidates: list[ConfigPoint], path: str | Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p.n_skipped for p in candidates]
    ax.plot(xs, [100 * p.val_accuracy for p in candidates], marker="o", label="validation (selects)")
    if all(p.test_accuracy is not None for p in candidates):
        ax.plot(xs, [100 * p.test_accuracy for p in candidates], marker="s", label="test (reported)")
    ax.set_xlabel("skipped blocks N (least sensitive first)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy against skipped blocks")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_pareto(candidates: list[ConfigPoint], front: list[ConfigPoint], path: str | Path,
                exhaustive: list[ConfigPoint] | None = None, true_front: list[ConfigPoint] | None = None) -> None:
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
    ax.plot([p.latency_ms for p in fs], [100 * p.val_accuracy for p in fs], marker="o", label="Pareto front")
    for p in fs:
        ax.annotate(str(p.n_skipped), (p.latency_ms, 100 * p.val_accuracy), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("latency (ms, batch 1)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Pareto front of skip configurations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
