"""Figure 1 of the paper as an experiment (Korol et al., Sec. I, Fig. 1): accuracy against skipped
blocks for a stochastic-depth and a standard-trained network of one architecture, random
configurations per N, with the gap between the best and the worst configuration at the paper's N = 37
of 54 (ResNet-110), or at the same share of the blocks for a shallower model.

The measurement is :func:`edgeskip.design.workflow.figure1` (``figure1.json``, ``figure1.png``); this adds
``figure1.md`` with the paper's figure beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import write_text

from edgeskip.design import workflow
from edgeskip.experiments import paper

PAPER_BLOCKS = 54  # ResNet-110's blocks, the denominator of the paper's N = 37


def comparison_n(skippable: int) -> int:
    """The N the paper's gap is read at: 37 where the model has that many, else the same share of blocks."""
    return paper.FIGURE1_N if skippable >= paper.FIGURE1_N else round(skippable * paper.FIGURE1_N / PAPER_BLOCKS)


def figure1(stochastic_depth: str | Path, standard: str | Path, out: str | Path, options: workflow.DataOptions, *,
            draws: int = 100, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = workflow.figure1({"stochastic-depth": stochastic_depth, "standard": standard}, out / "figure1.json",
                           options, draws=draws, seed=seed, progress=progress)
    write_text(out / "figure1.md", markdown(doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    skippable = len(doc["models"][0]["curve"]) - 1
    n = comparison_n(skippable)
    configs = sum(p["distinct"] for m in doc["models"] for p in m["curve"])
    lines = [f"# Figure 1: {doc['models'][0]['model']}, {doc['draws']} random configurations per N "
             f"({configs} distinct in all), {doc['split']} split ({doc['n_samples']} images, "
             f"{doc.get('precision', 'fp32')})", "",
             "| N skipped | " + " | ".join(f"{m['label']} mean (min-max)" for m in doc["models"]) + " |",
             "| --- | " + " | ".join("---" for _ in doc["models"]) + " |"]
    for k in range(skippable + 1):
        cells = []
        for m in doc["models"]:
            p = m["curve"][k]
            cells.append(f"{100 * p['mean']:.2f} % ({100 * p['min']:.2f}-{100 * p['max']:.2f})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in doc["models"]:
        p = m["curve"][n]
        lines.append(f"- {m['label']}: at N = {n} of {skippable}, best minus worst configuration = "
                     f"{100 * p['spread']:.2f} points; mean accuracy loss over all N "
                     f"{100 * m['mean_accuracy_loss']:.2f} points.")
    lines.append(f"- The paper (ResNet-110, CIFAR-10): {paper.FIGURE1_GAP_POINTS} points between the best and "
                 f"worst configuration at N = {paper.FIGURE1_N} of {PAPER_BLOCKS}.")
    return "\n".join(lines) + "\n"
