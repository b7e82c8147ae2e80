"""``load-aware``: depth follows the offered load (dynamic-depth-scheduling note, "load-aware").

The policy keeps exponentially weighted averages of the arrival rate λ and of the service
time of each configuration (seeded with the profiled latency). The predicted utilisation of
configuration k is ρ_k = λ · s_k. It moves one configuration shallower when ρ of the current
one exceeds ``target · (1 + hysteresis)``, one deeper when ρ of the deeper one would stay
below ``target · (1 − hysteresis)``, and never changes twice within ``dwell_s``: the band and
the dwell time are what keep it from oscillating. A drop (busy arrival) counts as overload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeskip_runtime.policies.base import Decision, OperatingPoint, Policy, PolicySettings, Request, ServiceTime
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class LoadAwarePolicy(Policy):
    name = "load-aware"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        self.current = 0
        self.rate_hz = 0.0
        self.service_s = [p.latency_ms / 1e3 for p in self.points]
        self.last_arrival: float | None = None
        self.last_change = float("-inf")
        self.pending_overload = False

    def _observe_arrival(self, t: float) -> None:
        if self.last_arrival is not None and t > self.last_arrival:
            inst = 1.0 / (t - self.last_arrival)
            a = self.settings.ewma_alpha
            self.rate_hz = inst if self.rate_hz == 0.0 else (1 - a) * self.rate_hz + a * inst
        self.last_arrival = t if self.last_arrival is None else max(self.last_arrival, t)

    def utilization(self, k: int) -> float:
        return self.rate_hz * self.service_s[k]

    def on_busy(self, request: Request, now: float) -> str:
        self._observe_arrival(request.arrival)
        self.pending_overload = True
        return "busy: counted as overload"

    def select(self, request: Request, now: float) -> Decision:
        self._observe_arrival(request.arrival)
        s = self.settings
        reason = "hold"
        if now - self.last_change >= s.dwell_s:
            hot = self.utilization(self.current) > s.target_utilization * (1 + s.hysteresis) or self.pending_overload
            if hot and self.current < self.last:
                self.current += 1
                self.last_change = now
                reason = f"load high (rho={self.utilization(self.current - 1):.2f}): shallower"
            elif (not hot and self.current > 0
                  and self.utilization(self.current - 1) < s.target_utilization * (1 - s.hysteresis)):
                self.current -= 1
                self.last_change = now
                reason = f"load low (rho={self.utilization(self.current):.2f}): deeper"
            self.pending_overload = False
        else:
            reason = "dwell: hold"
        return Decision(self.current, reason)

    def on_done(self, request: Request, now: float, latency_ms: float, logits: Any = None) -> None:
        a = self.settings.ewma_alpha
        k = self.current
        self.service_s[k] = (1 - a) * self.service_s[k] + a * latency_ms / 1e3

    def state(self) -> dict[str, Any]:
        return {"current": self.current, "rate_hz": round(self.rate_hz, 4),
                "utilization": round(self.utilization(self.current), 4)}
