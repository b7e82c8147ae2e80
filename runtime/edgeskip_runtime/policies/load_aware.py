"""``load-aware``: depth follows the offered load (README, "Serving":
``load-aware``).

The policy keeps exponentially weighted averages of the arrival rate λ and of the module
time of each configuration (seeded with the profiled latency). The predicted utilisation of
configuration k is ρ_k = λ · (s_k + h), h being the server's measured per-request handling
(``service_time.py``): the service time, not the module time, is what saturates the server.
It moves one configuration shallower when ρ of the current one exceeds ``target · (1 +
hysteresis)``, one deeper when ρ of the deeper one would stay below ``target · (1 −
hysteresis)``, and never changes twice within ``dwell_s`` (default: 20 no-skip service
times, so the dwell scales from a fast host to a slow board): the band and the dwell time are
what keep it from oscillating. A drop (busy arrival) counts as overload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeskip_runtime.policies.base import (
    DWELL_SERVICE_TIMES,
    Decision,
    OperatingPoint,
    Policy,
    PolicySettings,
    Request,
    ServiceTime,
    handling_ms,
    no_skip_service_ms,
)
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class LoadAwarePolicy(Policy):
    name = "load-aware"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        self.current = 0
        self.gap_s = 0.0  # EWMA of inter-arrival times
        self.service_s = [p.latency_ms / 1e3 for p in self.points]
        self.last_arrival: float | None = None
        self.last_change = float("-inf")
        self.pending_overload = False

    def _observe_arrival(self, t: float) -> None:
        # Average the gaps, not their inverses: two requests that arrive together (a client's
        # bunching, a server's parse queue) would make an instantaneous rate huge and hold the
        # average of rates high long after the load fell (mean of 1/gap >= 1/mean gap).
        if self.last_arrival is not None and t >= self.last_arrival:
            gap = t - self.last_arrival
            a = self.settings.ewma_alpha
            self.gap_s = gap if self.gap_s == 0.0 else (1 - a) * self.gap_s + a * gap
        self.last_arrival = t if self.last_arrival is None else max(self.last_arrival, t)

    @property
    def rate_hz(self) -> float:
        return 1.0 / self.gap_s if self.gap_s > 0 else 0.0

    @property
    def dwell_s(self) -> float:
        if self.settings.dwell_s is not None:
            return self.settings.dwell_s
        return DWELL_SERVICE_TIMES * no_skip_service_ms(self) / 1e3

    def utilization(self, k: int) -> float:
        return self.rate_hz * (self.service_s[k] + handling_ms(self) / 1e3)

    def on_busy(self, request: Request, now: float) -> str:
        self._observe_arrival(request.arrival)
        self.pending_overload = True
        return "busy: counted as overload"

    def select(self, request: Request, now: float) -> Decision:
        self._observe_arrival(request.arrival)
        s = self.settings
        reason = "hold"
        if now - self.last_change >= self.dwell_s:
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
