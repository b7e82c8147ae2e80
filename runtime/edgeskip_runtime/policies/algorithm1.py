"""Algorithm 1 of the paper, exactly (Korol et al., Sec. II-B).

1. Drop the configurations below ``min_acc`` once (default: no-skip accuracy − 10 points).
2. Start at no skipping.
3. A request that arrives while busy is dropped and skipping grows by one configuration,
   saturating at the last.
4. A request that arrives more than Δreq after the last *processed* one first lowers
   skipping by one (default Δreq: the profiled no-skip latency); then it is processed and
   becomes the last processed request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeskip_runtime.policies.base import Decision, OperatingPoint, Policy, PolicySettings, Request
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class Algorithm1Policy(Policy):
    name = "algorithm1"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None) -> None:
        super().__init__(points, settings)
        self.current = 0  # line 2: start with no skipping (the deepest allowed configuration)
        self.t_last: float | None = None
        delta = self.settings.delta_req_ms
        self.delta_req_s = (delta if delta is not None else self.all_points[0].latency_ms) / 1e3

    def on_busy(self, request: Request, now: float) -> str:
        if self.current < self.last:  # line 7: increase skipping by one if possible
            self.current += 1
            return "busy: dropped, skip one more"
        return "busy: dropped, already at the last configuration"

    def select(self, request: Request, now: float) -> Decision:
        reason = "process"
        t = request.arrival
        if self.t_last is not None and t - self.t_last > self.delta_req_s:  # line 9
            if self.current > 0:
                self.current -= 1  # line 10
                reason = "idle longer than delta_req: skip one less"
            else:
                reason = "idle longer than delta_req: already at no skipping"
        self.t_last = t  # line 13
        return Decision(self.current, reason)

    def state(self) -> dict[str, Any]:
        return {"current": self.current, "t_last": self.t_last, "delta_req_ms": self.delta_req_s * 1e3}
