"""``performance-aware``: depth follows recent quality signals (README, "Serving":
``performance-aware``): depth is adjusted on recent accuracy or confidence, and under a
distribution shift it stays conservative).

Load is handled as in Algorithm 1 (a drop skips one block more, an idle spell longer than
Δreq one less), but only down to a *quality floor*: the shallowest configuration currently
allowed. Quality moves the floor:

* The signal of a processed request is its correctness when the client sent its label
  (request parameter ``label``), otherwise the top-1 softmax margin ``p1 − p2`` of its
  output, a label-free confidence proxy.
* Each signal is compared with what that configuration is expected to deliver on
  in-distribution data: its validation accuracy for correctness; its validation margin
  (``val_margin`` in the Pareto file, which ``edgeskip pareto`` writes) for the proxy. For
  a Pareto file without ``val_margin`` the references are learned online: the first
  configuration served (no skipping, as Algorithm 1 starts) learns its own from its first
  ``quality_window`` requests, which assumes those are in distribution. Any other
  configuration is judged against the nearest learned reference until its own first
  ``quality_window`` margins are in, and those become its reference only if their mean is
  within the tolerance of that neighbour's: samples taken under a shift are never adopted.
* Every ``quality_window`` judged requests, quality = Σ signal / Σ expected. Below
  ``1 − quality_tolerance`` the floor tightens by one configuration at once (and the current
  one follows it deeper); it relaxes by one only after ``RELAX_WINDOWS`` windows in a row at
  ``1 − quality_tolerance / 2`` or above. Between the two it holds. Quick to tighten, slow
  to relax: a signal near the line does not make the floor oscillate, and under doubt the
  policy stays deep.

Under a shift (e.g. corrupted images) the signal stays low at every depth, so the floor
stays tight: the policy serves deep configurations until the inputs look familiar again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeskip_runtime.policies.algorithm1 import Algorithm1Policy
from edgeskip_runtime.policies.base import Decision, OperatingPoint, PolicyError, PolicySettings, Request, ServiceTime
from edgeskip_runtime.policies.registry import register_policy

RELAX_WINDOWS = 3


def top1_margin(logits: np.ndarray) -> float:
    """Mean over the batch of ``p_top1 − p_top2`` under softmax."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1, np.shape(logits)[-1])
    if z.shape[1] < 2:
        return 1.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return float(np.mean(top2[:, 1] - top2[:, 0]))


@register_policy
class PerformanceAwarePolicy(Algorithm1Policy):
    name = "performance-aware"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        if self.settings.quality_window < 1:
            raise PolicyError("quality_window must be at least 1")
        self.floor = self.last  # the shallowest configuration quality allows right now
        self._level_of: dict[str, int] = {}  # request id -> configuration it was served with
        self._reference: dict[int, float] = {}  # configuration -> learned reference margin
        self._learning: dict[int, list[float]] = {}  # configuration -> margins not yet adopted
        self._signal_sum = 0.0
        self._expected_sum = 0.0
        self._judged = 0
        self._good_windows = 0
        self.quality: float | None = None
        self.signal: str | None = None

    def shallowest(self) -> int:
        return self.floor

    def select(self, request: Request, now: float) -> Decision:
        decision = super().select(request, now)
        self._level_of[request.id] = decision.config
        return decision

    def _expected(self, level: int, labelled: bool, margin: float) -> float | None:
        point = self.points[level]
        if labelled:
            return point.accuracy
        if point.margin is not None:
            return point.margin
        if level in self._reference:
            return self._reference[level]
        samples = self._learning.setdefault(level, [])
        samples.append(margin)
        complete = len(samples) >= self.settings.quality_window
        if not self._reference:  # the first configuration served teaches the first reference
            if complete:
                self._reference[level] = sum(samples) / len(samples)
            return None
        nearest = self._reference[min(self._reference, key=lambda k: abs(k - level))]
        if complete:
            mean = sum(samples) / len(samples)
            if mean >= (1 - self.settings.quality_tolerance) * nearest:
                self._reference[level] = mean  # in line with its neighbour: adopt it
            samples.clear()
        return nearest

    def on_done(self, request: Request, now: float, latency_ms: float, logits: Any = None) -> None:
        super().on_done(request, now, latency_ms, logits)
        level = self._level_of.pop(request.id, None)
        if level is None or logits is None:
            return
        margin = top1_margin(logits)
        labelled = request.label is not None
        if labelled:
            predicted = np.asarray(logits).reshape(-1, np.shape(logits)[-1]).argmax(axis=1)
            signal = float(np.mean(predicted == request.label))
        else:
            signal = margin
        expected = self._expected(level, labelled, margin)
        if expected is None:
            return
        self.signal = "accuracy" if labelled else "margin"
        self._signal_sum += signal
        self._expected_sum += expected
        self._judged += 1
        if self._judged >= self.settings.quality_window:
            self._judge()

    def _judge(self) -> None:
        self.quality = self._signal_sum / self._expected_sum if self._expected_sum > 0 else 1.0
        tol = self.settings.quality_tolerance
        self._good_windows = self._good_windows + 1 if self.quality >= 1 - tol / 2 else 0
        if self.quality < 1 - tol and self.floor > 0:
            self.floor -= 1  # conservative: fewer blocks may be skipped
            self.current = min(self.current, self.floor)
        elif self._good_windows >= RELAX_WINDOWS and self.floor < self.last:
            self.floor += 1
            self._good_windows = 0
        self._signal_sum = self._expected_sum = 0.0
        self._judged = 0

    def state(self) -> dict[str, Any]:
        return {**super().state(), "floor": self.floor,
                "quality": None if self.quality is None else round(self.quality, 4), "signal": self.signal}
