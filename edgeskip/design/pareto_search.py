"""Building the Pareto front from a sensitivity ranking (Korol et al., Sec. II-A.4, Step 4 of Fig. 3).

Candidates: for N = 0..B_s, skip the N least important blocks of the ranking. Each candidate
gets validation accuracy (used to select), test accuracy (only reported), MACs and latency.
When 2^B_s <= 4096 the whole space is also searched, and the hypervolume of the
sensitivity front is reported as a share of the true front's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.pareto import ConfigPoint, ParetoFront, hypervolume, pareto_filter
from edgeskip_runtime.stats import LatencyStats

from edgeskip.design.config_eval import ConfigEvaluator, all_masks
from edgeskip.design.latency import measure_torch_latency
from edgeskip.gating import SkipConfig
from edgeskip.models.cost import MacProfile

EXHAUSTIVE_LIMIT = 4096


@dataclass
class ParetoResult:
    front: ParetoFront
    candidates: list[ConfigPoint]
    exhaustive: list[ConfigPoint] | None  # every mask, when the space is small enough
    exhaustive_front: list[ConfigPoint] | None
    hypervolume_ratio: float | None


def skippable_within(candidates: list[ConfigPoint], points: float) -> int:
    """How many blocks the candidates skip, at most, with test accuracy within ``points`` percentage points of
    full depth (the paper's Figure 6 claim: within 1 point until about 20 of ResNet-110's blocks are skipped)."""
    full = candidates[0].test_accuracy
    if full is None:
        return 0
    within = [c.n_skipped for c in candidates if c.test_accuracy is not None and c.test_accuracy >= full - points / 100]
    return max(within)


def candidates_from_order(order: list[int]) -> list[SkipConfig]:
    """Skip the N first blocks of ``order`` (least important first), for N = 0..B_s."""
    return [SkipConfig.skipping(len(order), order[:n]) for n in range(len(order) + 1)]


def _points(evaluator: ConfigEvaluator, masks: list[SkipConfig], costs: MacProfile, timing: dict[tuple, LatencyStats],
            source: str, *, with_test: bool, label: str, progress: bool) -> list[ConfigPoint]:
    evaluator.prefetch(masks, "val", label=label, progress=progress)
    if with_test:
        evaluator.prefetch(masks, "test", label=label, progress=progress)
    points = []
    for m in masks:  # prefetched: the accuracies are known
        lat = timing[m.mask]
        points.append(ConfigPoint(list(m.mask), evaluator.accuracy(m, "val"), lat.median_ms, costs.macs(m.mask),
                                  evaluator.accuracy(m, "test") if with_test else None, source,
                                  {"latency_p90_ms": lat.p90_ms, "latency_p99_ms": lat.p99_ms,
                                   "val_margin": evaluator.margin(m, "val")}))
    return points


def build_pareto(evaluator: ConfigEvaluator, order: list[int], costs: MacProfile, *, model: str, dataset: str,
                 input_shape: list[int], ranker: str = "sensitivity", exhaustive: bool | None = None,
                 repeats: int = 30, progress: bool = True) -> ParetoResult:
    """Evaluate the sensitivity candidates, keep the Pareto-optimal ones, optionally compare to all masks."""
    n = evaluator.num_blocks
    if exhaustive is None:
        exhaustive = 2**n <= EXHAUSTIVE_LIMIT
    if exhaustive and 2**n > EXHAUSTIVE_LIMIT:
        raise UsageError(f"exhaustive search over 2^{n} masks is too large (limit {EXHAUSTIVE_LIMIT})")
    cand_masks = candidates_from_order(order)
    # One timing run (round-robin) over every mask that is evaluated, so that candidates and the
    # exhaustive set share one latency scale on a machine whose speed drifts.
    timed = all_masks(n) if exhaustive else cand_masks
    stats, source = measure_torch_latency(evaluator.gated, timed, input_shape, repeats=repeats)
    timing = {m.mask: st for m, st in zip(timed, stats, strict=True)}
    candidates = _points(evaluator, cand_masks, costs, timing, source, with_test=True, label="pareto candidates",
                         progress=progress)
    kept = pareto_filter(candidates)
    for p in candidates:
        p.extra["pareto_optimal"] = any(p is k for k in kept)
    if kept[0].n_skipped != 0:
        # Algorithm 1 starts at no skipping (line 2), so the file always begins with it, even
        # when a faster mask is also more accurate; "pareto_optimal": false says so.
        kept.insert(0, candidates[0])
    meta: dict[str, Any] = {"selection_split": "val", "ranker": ranker, "n_val": len(evaluator.data.val),
                            "n_test": len(evaluator.data.test), "candidates": len(candidates),
                            "skippable_within_points": {str(t): skippable_within(candidates, t) for t in (1, 10)}}
    every = every_front = None
    ratio = None
    if exhaustive:
        every = _points(evaluator, all_masks(n), costs, timing, source, with_test=False, label="exhaustive search",
                        progress=progress)
        every_front = pareto_filter(every)
        ref_acc = min(p.val_accuracy for p in every)
        ref_lat = max(p.latency_ms for p in every)
        true_hv = hypervolume(every, ref_acc, ref_lat)
        ratio = hypervolume(candidates, ref_acc, ref_lat) / true_hv if true_hv > 0 else 1.0
        meta.update({"exhaustive_configs": len(every), "exhaustive_front_size": len(every_front),
                     "hypervolume_ratio": ratio,
                     "hypervolume_reference": {"val_accuracy": ref_acc, "latency_ms": ref_lat}})
    front = ParetoFront(model, dataset, n, kept, meta)
    return ParetoResult(front, candidates, every, every_front, ratio)
