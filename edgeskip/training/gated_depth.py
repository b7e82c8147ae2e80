"""The Gated Depth recipe (Darzi et al., seed 003, Sec. 3-4 and 6.1): the network is split into base and gated
sub-paths with skip-aware batch norm (:mod:`edgeskip.models.gated_depth`) and trained with

* **Stochastic gating** (Sec. 3, eq. 4): one Bernoulli(p_s) draw per stage per mini-batch decides whether
  the stage's gated sub-path runs (a skipped sub-path is not computed, and its base batch norms use their
  "off" set).
* **Probability scheduling** within [p_min, p_max] = [0.5, 0.9] (Sec. 6.1). The seed defers the schedule to
  its Sec. 3.2, which we do not have, so it is an option (:data:`SCHEDULES`):

  - ``stage`` (default): constant in time, falling linearly over the stages from p_max (first stage) to
    p_min (last), stochastic depth's rule that deeper refinements are more expendable;
  - ``time``: every stage from p_max at the start of training to p_min at the end (learn the features
    first, then robustness to skipping);
  - ``both``: stage s moves from p_max to its ``stage`` value over training.
* **Self-distillation** every ``k``-th mini-batch (Sec. 4, eqs. 5-7; k = 10, alpha = 0.5): two passes, the
  full network (every gated sub-path on) and the base network (all off). The loss is
  ``CE(full, y) + alpha * CE(base, y) + (1 - alpha) * KL(full || base)``, the full network's output,
  detached, being the teacher. The full network's own cross-entropy keeps it trained although the
  stochastic draws rarely sample it (the seed's reason for the phase).
* **Calibration**, the inverted convention edgeskip uses for stochastic depth: whenever a gated sub-path
  runs in training (drawn or in the distillation's full pass) its residual ``gated(h) - h`` is scaled by
  ``1 / p_s``, so that inference runs every sub-path unscaled, in every configuration, and the compiled
  module has no scale anywhere. (The seed instead scales the full configuration's sub-paths by p_s at
  inference.)

**Hybrid** (beyond the seed; recipe ``gated-depth-hybrid``): the network is split at block level
(:func:`edgeskip.models.gated_depth.to_gated_depth` with ``block_level``) and, inside a gated sub-path that
runs, every block after its head is also dropped per mini-batch with stochastic depth's linear-decay
survival ``p_l`` (:mod:`edgeskip.training.stochastic_depth`; ``l`` counts every residual block of the
network), so the network also learns the block-level operating points. The head always runs with its
sub-path: it is what the skip-aware batch norms follow. The distillation step's two passes keep these
draws (its teacher is every *sub-path* on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.models.gated_depth import GatedDepthStage, is_gated_depth, stage_names, stages, to_gated_depth
from edgeskip.models.protocol import replace_module
from edgeskip.training.stochastic_depth import StochasticDepth, survival_probability

SCHEDULES = ("stage", "time", "both")


@dataclass(frozen=True)
class GatedDepthOptions:
    p_min: float = 0.5
    p_max: float = 0.9
    schedule: str = "stage"
    distill_every: int = 10  # k: every k-th mini-batch is a self-distillation step
    distill_alpha: float = 0.5

    def validate(self) -> None:
        if not 0.0 < self.p_min <= self.p_max <= 1.0:
            raise UsageError(f"need 0 < p_min <= p_max <= 1, got p_min={self.p_min}, p_max={self.p_max}",
                             setting="gd_p_min")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown gating schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}",
                             setting="gd_schedule")
        if self.distill_every < 1:
            raise UsageError(f"distill_every must be at least 1, got {self.distill_every}", setting="distill_every")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise UsageError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}", setting="distill_alpha")


def gate_probabilities(options: GatedDepthOptions, num_stages: int, progress: float) -> list[float]:
    """p_s for every stage at ``progress`` in [0, 1] of training; always within [p_min, p_max]."""
    progress = min(max(progress, 0.0), 1.0)
    span = options.p_max - options.p_min
    by_stage = [options.p_max - (s / (num_stages - 1) if num_stages > 1 else 0.0) * span for s in range(num_stages)]
    if options.schedule == "stage":
        return by_stage
    if options.schedule == "time":
        return [options.p_max - progress * span] * num_stages
    return [options.p_max - progress * (options.p_max - p) for p in by_stage]


def is_distillation_step(step: int, every: int) -> bool:
    """Mini-batch ``step`` (0-based, counted over the whole run) is the k-th of its group of k."""
    return (step + 1) % every == 0


class GatedDepthObjective:
    """The training loss of one mini-batch: a stochastic-gating step, or every k-th a self-distillation step."""

    def __init__(self, model: nn.Module, options: GatedDepthOptions, generator: torch.Generator) -> None:
        options.validate()
        self.stages: list[GatedDepthStage] = stages(model)
        self.options = options
        self.generator = generator
        self.distillation_steps = 0  # counted, for the tests and the log

    def _set(self, bits: list[bool], probabilities: list[float]) -> None:
        for stage, on, p in zip(self.stages, bits, probabilities, strict=True):
            stage.switch.on = on
            stage.switch.scale = 1.0 / p

    def _reset(self) -> None:
        for stage in self.stages:
            stage.switch.on, stage.switch.scale = True, 1.0

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
                 progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        ps = gate_probabilities(self.options, len(self.stages), progress)
        ce = nn.functional.cross_entropy
        try:
            if is_distillation_step(step, self.options.distill_every):
                self.distillation_steps += 1
                self._set([True] * len(ps), ps)
                full = model(x)
                self._set([False] * len(ps), ps)
                base = model(x)
                a = self.options.distill_alpha
                kl = nn.functional.kl_div(base.float().log_softmax(1), full.detach().float().log_softmax(1),
                                          reduction="batchmean", log_target=True)
                return ce(full, y) + a * ce(base, y) + (1 - a) * kl, full
            draws = torch.rand(len(ps), generator=self.generator).tolist()
            self._set([d < p for d, p in zip(draws, ps, strict=True)], ps)
            logits = model(x)
            return ce(logits, y), logits
        finally:
            self._reset()  # evaluation between steps sees the full, unscaled network


def apply_gated_depth(model: nn.Module, options: GatedDepthOptions, generator: torch.Generator,
                      block_level: bool = False) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Split ``model`` into sub-paths in place (unless it already is) and return its training objective."""
    if not is_gated_depth(model):
        to_gated_depth(model, block_level=block_level)
    return GatedDepthObjective(model, options, generator)


def apply_sub_path_stochastic_depth(model: nn.Module, p_last: float,
                                    generator: torch.Generator | None = None) -> dict[str, float]:
    """Wrap every block after the head of each gated sub-path in :class:`StochasticDepth`, in place; returns
    each wrapped block's survival probability by name (the hybrid recipe)."""
    depth: list[tuple[str, int]] = []  # (name, 1-based index over every residual block) of the wrapped blocks
    total = 0
    for stage_name, stage in zip(stage_names(model), stages(model), strict=True):
        total += len(stage.base)
        for i in range(len(stage.gated)):
            total += 1
            if i > 0:
                depth.append((f"{stage_name}.gated.{i}", total))
    survivals = {}
    for name, l in depth:  # noqa: E741  (the paper's symbol)
        survivals[name] = survival_probability(l, total, p_last)
        replace_module(model, name, StochasticDepth(model.get_submodule(name), survivals[name], generator))
    return survivals


__all__ = ["SCHEDULES", "GatedDepthObjective", "GatedDepthOptions", "apply_gated_depth",
           "apply_sub_path_stochastic_depth", "gate_probabilities", "is_distillation_step"]
