"""``priority``: higher priority tiers get deeper configurations (README, "Serving":
``priority``).

A load-aware level L is shared by all requests; a request of priority p gets
``min(L, cap(p))`` where ``cap(p)`` is the tier's depth floor (most configurations it may
skip down to) from ``tier_max_skipped`` (priority -> max skipped blocks). Caps are made
non-increasing in priority, so a higher priority never gets a shallower configuration than
a lower one at the same moment: no priority inversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeskip_runtime.policies.base import Decision, OperatingPoint, PolicySettings, Request, ServiceTime
from edgeskip_runtime.policies.load_aware import LoadAwarePolicy
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class PriorityPolicy(LoadAwarePolicy):
    name = "priority"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        self.tiers = sorted(self.settings.tier_max_skipped.items())

    def cap(self, priority: int) -> int:
        """Index of the shallowest configuration allowed for ``priority`` (monotone in priority)."""
        cap = self.last
        for tier, max_skipped in self.tiers:  # ascending tiers: caps can only tighten
            if priority >= tier:
                fits = [k for k, p in enumerate(self.points) if p.n_skipped <= max_skipped]
                cap = min(cap, max(fits) if fits else 0)
        return cap

    def select(self, request: Request, now: float) -> Decision:
        level = super().select(request, now)
        cap = self.cap(request.priority)
        if level.config > cap:
            return Decision(cap, f"{level.reason}; priority {request.priority} capped at config {cap}")
        return level

    def state(self) -> dict[str, Any]:
        return {**super().state(), "tiers": dict(self.tiers)}
