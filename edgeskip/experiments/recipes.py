"""Training recipes compared on one network (Darzi et al., seed 003, Sec. 6.2: Tables 2-3, Figs. 2-3; Korol et
al., Sec. I-A): standard, stochastic depth and Gated Depth versions of one model, side by side.

* **Full depth**: test accuracy with every block (every gated sub-path) on.
* **Accuracy over the configurations** (the seed's Fig. 3): mean, standard deviation, minimum and maximum of
  the test accuracy over every skip configuration when there are at most ``samples`` of them, else over
  ``samples`` uniform draws (each block kept with probability 1/2). Different recipes have different
  configuration sets (stochastic depth one bit per block, Gated Depth one per stage); each is summarised
  over its own.
* **Pareto fronts** in (validation accuracy, latency) from each system's front file: a profiled bundle's
  ``pareto.json`` gives the compiled module's measured latency. The hypervolumes share one reference
  point (the lowest accuracy and the highest latency over all fronts), so they compare.
* **Accuracy at matched MACs**: for budgets of 50 to 100 % of the full network's MACs, the best test
  accuracy of a front configuration within the budget.
* **Front coverage** (Zitzler's C metric): for each ordered pair of systems, the share of the second's front
  points that some point of the first's front is at least as accurate and as fast as. One front *dominates*
  another when it covers all of the other's points and is not itself fully covered by it (issue 17: does the
  hybrid's front dominate both parents'?).

Output ``edgeskip.recipes/1`` (``recipes.json``), ``recipes.png`` and ``recipes.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.pareto import ConfigPoint, ParetoFront, hypervolume, pareto_filter, weakly_dominates

from edgeskip.design import workflow
from edgeskip.design.config_eval import all_masks
from edgeskip.experiments.report_files import write_experiment
from edgeskip.gating import SkipConfig
from edgeskip.plotting import finish, plt, save_png

SCHEMA = "edgeskip.recipes/1"
MAC_BUDGETS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def is_exhaustive(num_blocks: int, samples: int) -> bool:
    """Whether every mask fits in the budget of ``samples`` evaluations."""
    return 2**num_blocks <= samples


def configurations(num_blocks: int, samples: int, seed: int) -> list[SkipConfig]:
    """Every mask of ``num_blocks`` bits if they fit in ``samples``, else ``samples`` uniform draws (duplicates
    kept)."""
    if is_exhaustive(num_blocks, samples):
        return all_masks(num_blocks)
    g = torch.Generator().manual_seed(seed)
    return [SkipConfig(tuple(int(v) for v in torch.randint(0, 2, (num_blocks,), generator=g))) for _ in range(samples)]


def front_coverage(a: Sequence[ConfigPoint], b: Sequence[ConfigPoint]) -> float:
    """C(a, b): the share of ``b``'s points that a point of ``a`` weakly dominates (at least as accurate on
    validation and as fast); 1.0 when ``b`` is empty."""
    if not b:
        return 1.0
    covered = sum(any(weakly_dominates(p, q) for p in a) for q in b)
    return covered / len(b)


def front_dominance(fronts: dict[str, Sequence[ConfigPoint]]) -> dict[str, Any]:
    """The coverage of every ordered pair, and which fronts dominate which: A dominates B when C(A, B) = 1
    and C(B, A) < 1."""
    coverage = {a: {b: front_coverage(fa, fb) for b, fb in fronts.items()} for a, fa in fronts.items()}
    dominates = {a: [b for b in fronts if b != a and coverage[a][b] == 1.0 and coverage[b][a] < 1.0]
                 for a in fronts}
    return {"coverage": coverage, "dominates": dominates}


def load_front(path: str | Path) -> ParetoFront:
    """A front file, or the ``pareto.json`` of a bundle folder."""
    path = Path(path)
    return ParetoFront.load(path / "pareto.json" if path.is_dir() else path)


def accuracy_at_macs(front: list[ConfigPoint], full_macs: int) -> dict[str, float | None]:
    """Best test accuracy of a configuration within each budget (share of ``full_macs``); None: none fits."""
    out: dict[str, float | None] = {}
    for b in MAC_BUDGETS:
        fits = [p.test_accuracy for p in front if p.macs <= b * full_macs and p.test_accuracy is not None]
        out[f"{b:.1f}"] = max(fits) if fits else None
    return out


def compare_recipes(checkpoints: dict[str, str | Path], fronts: dict[str, str | Path], out: str | Path,
                    options: workflow.DataOptions, *, samples: int = 256, seed: int = 0,
                    progress: bool = True) -> dict[str, Any]:
    """Compare the systems named by ``checkpoints`` (label -> checkpoint) and ``fronts`` (label -> bundle folder or
    front file; the same labels); write ``out/recipes.{json,png,md}``."""
    if not checkpoints or set(checkpoints) != set(fronts):
        raise UsageError(f"every system needs a checkpoint and a front: checkpoints {sorted(checkpoints)}, "
                         f"fronts {sorted(fronts)}", setting="fronts")
    if samples < 1:
        raise UsageError(f"samples must be positive, got {samples}", setting="samples")
    systems: dict[str, Any] = {}
    kept_fronts: dict[str, list[ConfigPoint]] = {}
    n_test = 0
    loaded = {label: load_front(fronts[label]) for label in checkpoints}
    models = {(f.model, f.dataset) for f in loaded.values()}
    if len(models) != 1:
        raise UsageError(f"the systems are not one model on one dataset: {sorted(models)}", setting="fronts")
    everything = [p for f in loaded.values() for p in f.configs]
    ref_acc, ref_lat = min(p.val_accuracy for p in everything), max(p.latency_ms for p in everything)
    for label, path in checkpoints.items():
        s = workflow.open_session(path, options)
        n_test = len(s.data.test)
        front = loaded[label]
        if front.skippable_blocks != s.evaluator.num_blocks:
            raise UsageError(f"{label}: the front has {front.skippable_blocks}-bit masks, the checkpoint "
                             f"{s.evaluator.num_blocks} skippable units", setting="fronts")
        masks = configurations(s.evaluator.num_blocks, samples, seed)
        s.evaluator.prefetch(masks, "test", label=f"{label}: configurations", progress=progress)
        accs = [s.evaluator.accuracy(m, "test") for m in masks]
        kept = kept_fronts[label] = pareto_filter(front.configs)
        full_macs = max(p.macs for p in front.configs)
        systems[label] = {
            "checkpoint": str(path), "recipe": s.checkpoint.recipe, "front_file": str(fronts[label]),
            "skippable_units": s.evaluator.num_blocks,
            "full_depth_test_accuracy": s.evaluator.accuracy([1] * s.evaluator.num_blocks, "test"),
            "configurations": {"count": len(masks), "exhaustive": is_exhaustive(s.evaluator.num_blocks, samples),
                               "mean": statistics.fmean(accs), "std": statistics.pstdev(accs),
                               "min": min(accs), "max": max(accs), "accuracies": accs},
            "front": [p.to_dict() for p in kept],
            "latency_source": front.configs[0].latency_source,
            "hypervolume": hypervolume(kept, ref_acc, ref_lat),
            "accuracy_at_macs": accuracy_at_macs(kept, full_macs),
        }
    doc = {"schema": SCHEMA, "model": models.pop()[0], "dataset": next(iter(loaded.values())).dataset,
           "split": "test", "n_samples": n_test, "samples": samples, "seed": seed,
           "hypervolume_reference": {"val_accuracy": ref_acc, "latency_ms": ref_lat}, "systems": systems,
           "fronts": front_dominance(kept_fronts)}
    write_experiment(out, "recipes", doc, markdown, plot_recipes)
    return doc


def markdown(doc: dict[str, Any]) -> str:
    budgets = [f"{b:.1f}" for b in MAC_BUDGETS]
    lines = [f"# Recipes compared: {doc['model']} on {doc['dataset']}", "",
             f"Test split ({doc['n_samples']} images). Hypervolume of each front in (validation accuracy, latency), "
             f"reference point {100 * doc['hypervolume_reference']['val_accuracy']:.2f} % and "
             f"{doc['hypervolume_reference']['latency_ms']:.3f} ms.", "",
             "| system | recipe | full depth | configurations | mean | std | min | max | front | hypervolume |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, s in doc["systems"].items():
        c = s["configurations"]
        lines.append(f"| {label} | {s['recipe']} | {100 * s['full_depth_test_accuracy']:.2f} % | {c['count']} "
                     f"({'all' if c['exhaustive'] else 'sampled'}) | {100 * c['mean']:.2f} % | {100 * c['std']:.2f} | "
                     f"{100 * c['min']:.2f} % | {100 * c['max']:.2f} % | {len(s['front'])} | {s['hypervolume']:.4f} |")
    lines += ["", "Best test accuracy of a front configuration within a MAC budget (share of full depth):", "",
              "| system | " + " | ".join(f"≤ {b}" for b in budgets) + " |",
              "| --- | " + " | ".join("---" for _ in budgets) + " |"]
    for label, s in doc["systems"].items():
        cells = [f"{100 * v:.2f} %" if v is not None else "—" for v in (s["accuracy_at_macs"][b] for b in budgets)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    labels = list(doc["systems"])
    fronts = doc["fronts"]
    lines += ["", "Front coverage C(row, column): the share of the column's front points that a point of the row's "
              "front is at least as accurate (validation) and as fast as:", "",
              "| C(row, column) | " + " | ".join(labels) + " |", "| --- | " + " | ".join("---" for _ in labels) + " |"]
    for a in labels:
        lines.append(f"| {a} | " + " | ".join(f"{fronts['coverage'][a][b]:.2f}" for b in labels) + " |")
    lines.append("")
    for a in labels:
        won = fronts["dominates"][a]
        lines.append(f"- {a}: " + (f"dominates {', '.join(won)}" if won else "dominates no other front"))
    return "\n".join(lines) + "\n"


def plot_recipes(doc: dict[str, Any], path: str | Path) -> None:
    fig, (front_ax, dist_ax) = plt.subplots(1, 2, figsize=(11, 4))
    labels = list(doc["systems"])
    for k, label in enumerate(labels):
        pts = sorted(doc["systems"][label]["front"], key=lambda p: p["latency_ms"])
        front_ax.plot([p["latency_ms"] for p in pts], [100 * p["val_accuracy"] for p in pts], marker="o",
                      color=f"C{k}", label=f"{label} (hypervolume {doc['systems'][label]['hypervolume']:.3f})")
    # The latency source (driver, machine, pinning) is long: under the title, not in the axis label.
    source = doc["systems"][labels[0]]["latency_source"].split(" median")[0].rstrip(", ")
    finish(front_ax, "latency (ms, compiled module)", "validation accuracy (%)",
           f"Pareto fronts: {doc['model']}" + (f"\n{source}" if source else ""), 8)
    front_ax.title.set_fontsize(8)
    # Under the axes: inside, it covers the fronts' lower-right corner, where the fast points of some recipes lie.
    front_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    dist_ax.boxplot([[100 * a for a in doc["systems"][label]["configurations"]["accuracies"]] for label in labels],
                    tick_labels=[f"{label}\n({doc['systems'][label]['configurations']['count']} configs)"
                                 for label in labels])
    # Long recipe names run into each other when level: slant them.
    dist_ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    dist_ax.set_ylabel("test accuracy (%)")
    dist_ax.set_title("accuracy over the configurations")
    dist_ax.grid(alpha=0.3, axis="y")
    save_png(fig, path)


__all__ = ["SCHEMA", "accuracy_at_macs", "compare_recipes", "configurations", "front_coverage", "front_dominance",
           "load_front"]
