"""Figure 6 of the paper: accuracy, energy per inference and speedup over Original, against the number
of skipped blocks (Korol et al., Sec. III-C, Fig. 6).

Ours is the compiled Pareto front (one bundle, every configuration); Original and SkipNet are reference
lines, as in the paper ("shown for comparison only and not following the number of skipped blocks").

* Accuracy: Ours from the front's test accuracies (design time, PyTorch, identical to the compiled
  module); Original and SkipNet measured through their compiled modules on the same test split.
* Latency: all three timed side by side, round-robin, at batch 1 on this machine, each turn the
  median of ``PER_TURN`` calls back to back, because a server runs one module continuously: with one
  call per turn the Original read 1.64 ms, against a 0.90 ms median when the same module ran the test
  set alone a minute earlier; five calls per turn read 1.37 ms. SkipNet's calls cycle through test
  images, since its time depends on the input; every system's figure is the mean over turns with the
  slowest 2 % dropped (scheduler noise).
* Energy per inference: the target's power model times the latency (an estimate, labelled as such);
  a target without power figures uses the nominal model of ``edgeskip_runtime.energy``.

Output format ``edgeskip.figure6/1`` (JSON), ``figure6.png`` (three panels) and ``figure6.md``.
"""

from __future__ import annotations

import functools
import itertools
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from edgeskip_runtime.energy import NOMINAL_POWER, inference_energy_j
from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.stats import time_round_robin

from edgeskip.experiments import paper
from edgeskip.experiments.report_files import write_experiment
from edgeskip.experiments.single_point import Loaded, TestSetRun, measure_skipnet_decisions, run_test_set
from edgeskip.experiments.systems import open_systems
from edgeskip.plotting import plt, save_png

SCHEMA = "edgeskip.figure6/1"
TRIM = 0.02  # share of the slowest samples dropped before averaging
PER_TURN = 5  # calls of one module back to back per round-robin turn


def trimmed_mean(samples: list[float], trim: float = TRIM) -> float:
    kept = sorted(samples)[: max(1, round(len(samples) * (1 - trim)))]
    return statistics.fmean(kept)


def _test_images(dataset: str, data_dir: str | None, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    from edgeskip.data import load_dataset

    test = load_dataset(dataset, data_dir).test
    n = len(test) if limit is None else min(limit, len(test))
    return test.images.numpy()[:n], test.labels.numpy()[:n]


def time_side_by_side(systems: dict[str, Loaded], *, repeats: int, warmup: int = 5) -> dict[str, Any]:
    """Milliseconds per inference of every front configuration, the Original and SkipNet, in turns."""
    ours, original, skipnet = systems["Ours"], systems["Original"], systems["SkipNet"]
    front = ours.bundle.pareto.configs
    calls = [functools.partial(ours.model.infer_raw, ours.images[:1], ours.cfg(k)) for k in range(len(front))]
    calls.append(functools.partial(original.model.infer_raw, original.images[:1], original.cfg()))
    cycle = itertools.cycle(range(min(len(skipnet.images), 1000)))
    empty = skipnet.cfg()

    def skipnet_call() -> object:  # its time depends on the input: a different test image each call
        i = next(cycle)
        return skipnet.model.infer_raw(skipnet.images[i : i + 1], empty)

    calls.append(skipnet_call)
    samples = [trimmed_mean(s) for s in time_round_robin(calls, repeats=repeats, warmup=warmup, per_round=PER_TURN)]
    return {"ours_ms": samples[: len(front)], "original_ms": samples[-2], "skipnet_ms": samples[-1],
            "repeats": repeats, "statistic": f"mean over turns without the slowest {TRIM:.0%}; each turn the median of "
                         f"{PER_TURN} batch-1 calls; round-robin"}


def overtakes_at(ours: list[dict[str, Any]], skipnet_ms: float) -> int | None:
    """Fewest skipped blocks from which every deeper-skipping front point of Ours is faster than SkipNet."""
    faster_from = None
    for p in sorted(ours, key=lambda p: -p["n_skipped"]):
        if p["latency_ms"] >= skipnet_ms:
            break
        faster_from = p["n_skipped"]
    return faster_from


def figure6(ours: str | Path, original: str | Path, skipnet: str | Path, out: str | Path, *,
            skipnet_checkpoint: str | Path | None = None, data_dir: str | None = None, limit: int | None = None,
            repeats: int = 50, progress: bool = True) -> dict[str, Any]:
    """Measure and write ``out/figure6.{json,png,md}``."""
    bundles = open_systems(ours, original, skipnet)
    m = bundles["Ours"].manifest
    if any(c.test_accuracy is None for c in bundles["Ours"].pareto.configs):
        raise UsageError(f"the Pareto file of {ours} has no test accuracies; build it with `edgeskip pareto`",
                         setting="ours")
    images, labels = _test_images(m.dataset, data_dir, limit)
    systems = {role: Loaded.of(b, images) for role, b in bundles.items()}  # each module loaded once
    runs: dict[str, TestSetRun] = {role: run_test_set(systems[role], labels, progress=progress)
                                   for role in ("Original", "SkipNet")}
    if skipnet_checkpoint is not None:
        runs["SkipNet"].skipnet = measure_skipnet_decisions(runs["SkipNet"], skipnet_checkpoint, images, labels)
    timing = time_side_by_side(systems, repeats=repeats)
    power = m.target.get("power")
    energy_note = ("estimate: latency x the power model of target " + m.target_name) if power else \
        f"estimate: latency x {NOMINAL_POWER['source']}"
    base_ms = timing["original_ms"]
    front = []
    for c, ms in zip(bundles["Ours"].pareto.configs, timing["ours_ms"], strict=True):
        front.append({"n_skipped": c.n_skipped, "mask": c.mask, "test_accuracy": c.test_accuracy,
                      "val_accuracy": c.val_accuracy, "latency_ms": ms, "speedup": base_ms / ms,
                      "energy_mj": 1e3 * inference_energy_j(power, ms / 1e3)})

    def reference(role: str, ms: float) -> dict[str, Any]:
        return {"bundle": str(bundles[role].path), "test_accuracy": runs[role].accuracy, "latency_ms": ms,
                "speedup": base_ms / ms, "energy_mj": 1e3 * inference_energy_j(power, ms / 1e3),
                "test_set": runs[role].to_dict()}

    skipnet_doc = reference("SkipNet", timing["skipnet_ms"])
    doc = {"schema": SCHEMA, "model": m.model, "dataset": m.dataset, "target": m.target_name,
           "skippable_blocks": m.skippable_blocks, "test_images": len(labels), "energy": energy_note,
           "timing": {k: v for k, v in timing.items() if not k.endswith("_ms")},
           "ours": front, "original": reference("Original", base_ms), "skipnet": skipnet_doc,
           "ours_overtakes_skipnet_at": overtakes_at(front, timing["skipnet_ms"]),
           "paper": paper.FIGURE6.get(m.model)}
    write_experiment(out, "figure6", doc, markdown, plot_figure6)
    return doc


def plot_figure6(doc: dict[str, Any], path: str | Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    xs = [p["n_skipped"] for p in doc["ours"]]
    panels = (("test accuracy (%)", lambda r: 100 * r["test_accuracy"], True),
              ("energy per inference (mJ, estimate)", lambda r: r["energy_mj"], True),
              ("speedup over Original (x)", lambda r: r["speedup"], False))
    for ax, (label, value, with_original) in zip(axes, panels, strict=True):
        ax.plot(xs, [value(p) for p in doc["ours"]], marker="o", ms=3, color="C0", label="Ours (compiled front)")
        if with_original:
            ax.axhline(value(doc["original"]), color="k", ls="--", lw=1, label="Original")
        sk = doc["skipnet"]
        mean_skipped = (sk["test_set"].get("skipnet") or {}).get("mean_skipped")
        ax.axhline(value(sk), color="C3", ls=":", lw=1.5,
                   label="SkipNet" + (f" (mean {mean_skipped:.1f} skipped)" if mean_skipped is not None else ""))
        ax.set_xlabel(f"skipped blocks (of {doc['skippable_blocks']})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Figure 6: {doc['model']} on {doc['dataset']}, measured on {doc['target']} "
                 f"(energy: {doc['energy']})", fontsize=9)
    save_png(fig, path)


def markdown(doc: dict[str, Any]) -> str:
    o, s = doc["original"], doc["skipnet"]
    sk = s["test_set"].get("skipnet") or {}
    lat = s["test_set"]["latency_ms"]
    lines = [f"# Figure 6: {doc['model']} on {doc['dataset']} ({doc['test_images']} test images, {doc['target']})",
             "",
             "| system | skipped blocks | test accuracy | latency ms | speedup | energy mJ (estimate) |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| Original | 0 | {100 * o['test_accuracy']:.2f} % | {o['latency_ms']:.3f} | 1.00x | "
             f"{o['energy_mj']:.3f} |",
             f"| SkipNet | {sk.get('mean_skipped', float('nan')):.2f} (mean) | {100 * s['test_accuracy']:.2f} % | "
             f"{s['latency_ms']:.3f} | {s['speedup']:.2f}x | {s['energy_mj']:.3f} |"]
    for p in doc["ours"]:
        lines.append(f"| Ours | {p['n_skipped']} | {100 * p['test_accuracy']:.2f} % | {p['latency_ms']:.3f} | "
                     f"{p['speedup']:.2f}x | {p['energy_mj']:.3f} |")
    at = doc["ours_overtakes_skipnet_at"]
    ref = doc.get("paper") or {}
    by_count = sk.get("median_ms_by_skipped") or {}
    lines += ["", f"SkipNet per-input latency through the compiled module ({doc['test_images']} images, one call "
              f"each): p1 {lat['p1']:.3f} ms, p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, p99/p1 "
              f"{lat['p99_over_p1']:.2f}x, max/min {lat['max_over_min']:.2f}x (the paper: up to 13x between skipping "
              "all and running all blocks). Part of that spread is this machine's noise; the input-dependent part "
              "is the median by skipped blocks: "
              + (", ".join(f"{k} skipped {v:.3f} ms ({sk['skipped_histogram'][k]} images)"
                           for k, v in by_count.items()) or "not measured (no --skipnet-checkpoint)") + ".",
              "", "Ours is faster than SkipNet " + (f"from {at} skipped blocks on" if at is not None else
                                                    "at no point of the front") +
              (f" (the paper, CIFAR-10: from about {ref['ours_overtakes_skipnet_at']} blocks; SkipNet "
               f"{ref['skipnet_speedup']}x over Original)." if ref else "."),
              "", f"Energy: {doc['energy']}."]
    return "\n".join(lines) + "\n"
