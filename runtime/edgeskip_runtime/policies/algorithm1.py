"""Algorithm 1 of the paper, exactly (Korol et al., Sec. II-B).

1. Drop the configurations below ``min_acc`` once (default: no-skip accuracy − 10 points).
2. Start at no skipping.
3. A request that arrives while busy is dropped and skipping grows by one configuration,
   saturating at the last.
4. A request that arrives when the device has been *idle* for more than Δreq (the Require
   line: "Δreq for maximum idle time before decreasing skipping") first lowers skipping by
   one; then it is processed, and ``t_last`` (line 13) becomes the time the device is free
   again: the completion of that inference.

Why completion, not arrival: line 13 follows ``process_inference`` (line 12), and the
paper names Δreq an *idle* time set to the zero-skipping latency, i.e. "the device sat idle
long enough to have run one more no-skip inference". Measured from the last processed
request's *arrival* instead, the gap after a drop is two arrival periods; between half and
all of the no-skip service time (the overload the controller exists for) that gap exceeds
Δreq, so every step up made by a drop is undone by the next processed request and the
controller oscillates between its first two configurations (measured on the host bundle at
0.6x: 87 drops, 87 step-downs, 1.05x static). Until a request completes, ``t_last`` holds
its arrival, so a caller that never reports completions gets the arrival-based rule.

Δreq is ``--delta-req-ms`` when given. By default it is the server's measured no-skip
*service* time, module plus the server's own handling (``edgeskip_runtime/service_time.py``
says why the module time alone makes the controller undo every step up), and, for a policy
used without a server, the no-skip latency of the Pareto file. The server calls
:meth:`select` at the request's arrival, atomically with the busy check, as the paper's loop
does (lines 4-12).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeskip_runtime.policies.base import Decision, OperatingPoint, Policy, PolicySettings, Request, ServiceTime
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class Algorithm1Policy(Policy):
    name = "algorithm1"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        self.current = 0  # line 2: start with no skipping (the deepest allowed configuration)
        self.t_last: float | None = None
        self.delta_used_s: float | None = None  # the Δreq of the last decision, for the decision log

    @property
    def delta_req_s(self) -> float:
        if self.settings.delta_req_ms is not None:
            return self.settings.delta_req_ms / 1e3
        if self.service is not None:
            return self.service.service_ms / 1e3
        return self.all_points[0].latency_ms / 1e3

    @property
    def delta_req_source(self) -> str:
        if self.settings.delta_req_ms is not None:
            return "setting"
        return "measured service time" if self.service is not None else "pareto no-skip latency"

    def shallowest(self) -> int:
        """The index that ``increase_skipping`` saturates at (line 7: ``Pareto.last()``)."""
        return self.last

    def on_busy(self, request: Request, now: float) -> str:
        if self.current < self.shallowest():  # line 7: increase skipping by one if possible
            self.current += 1
            return "busy: dropped, skip one more"
        return "busy: dropped, already at the last configuration"

    def select(self, request: Request, now: float) -> Decision:
        reason = "process"
        t = request.arrival
        self.delta_used_s = delta = self.delta_req_s  # read once: the estimate may move concurrently
        if self.t_last is not None and t - self.t_last > delta:  # line 9
            if self.current > 0:
                self.current -= 1  # line 10
                reason = "idle longer than delta_req: skip one less"
            else:
                reason = "idle longer than delta_req: already at no skipping"
        self.t_last = t  # line 13, until on_done reports the completion
        return Decision(self.current, reason)

    def on_done(self, request: Request, now: float, latency_ms: float, logits: Any = None) -> None:
        self.t_last = now  # line 13: the device is idle from here

    def state(self) -> dict[str, Any]:
        delta = self.delta_used_s if self.delta_used_s is not None else self.delta_req_s
        return {"current": self.current, "t_last": self.t_last, "delta_req_ms": delta * 1e3,
                "delta_req_source": self.delta_req_source}
