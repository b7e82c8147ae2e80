"""Shared plotting plumbing: headless matplotlib, axis finishing, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: boards and CI have no display
import matplotlib.pyplot as plt
from edgeskip_runtime.atomic import atomic_path


def finish(ax, xlabel: str, ylabel: str, title: str | None = None, legend_fontsize: float | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_fontsize)


def save_png(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


__all__ = ["finish", "plt", "save_png"]
