"""``budget``: per request, the deepest configuration whose profiled p99 fits the request's
``latency_budget_ms`` (README, "Serving": ``budget``).

A request's budget covers its whole time in the server, so the module gets the budget minus
the server's measured per-request handling (``service_time.py``). A request without a budget
uses ``default_budget_ms``, or the deepest allowed configuration when that is unset. When
nothing fits, the fastest allowed configuration is used and the decision says the budget
cannot be met.
"""

from __future__ import annotations

from edgeskip_runtime.policies.base import Decision, Policy, Request, handling_ms
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class BudgetPolicy(Policy):
    name = "budget"

    def select(self, request: Request, now: float) -> Decision:
        budget = request.latency_budget_ms if request.latency_budget_ms is not None else self.settings.default_budget_ms
        if budget is None:
            return Decision(0, "no budget: deepest allowed")
        budget -= handling_ms(self)
        for k, p in enumerate(self.points):  # deepest first
            if p.latency_p99_ms <= budget:
                return Decision(k, f"deepest with p99 {p.latency_p99_ms:.3f} ms <= budget {budget:.3f} ms")
        fastest = min(range(len(self.points)), key=lambda k: self.points[k].latency_p99_ms)
        return Decision(fastest, f"budget {budget:.3f} ms unattainable: fastest allowed")
