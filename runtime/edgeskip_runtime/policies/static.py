"""``static``: one fixed configuration (the paper's "Original" baseline is static no-skip, Sec. III-A)."""

from __future__ import annotations

from collections.abc import Sequence

from edgeskip_runtime.policies.base import (
    Decision,
    OperatingPoint,
    Policy,
    PolicyError,
    PolicySettings,
    Request,
    ServiceTime,
)
from edgeskip_runtime.policies.registry import register_policy


@register_policy
class StaticPolicy(Policy):
    name = "static"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        super().__init__(points, settings, service)
        wanted = self.settings.static_config
        matches = [i for i, p in enumerate(self.points) if p.index == wanted]
        if not matches:
            raise PolicyError(f"static config {wanted} is not among the allowed configurations "
                              f"{[p.index for p in self.points]} (min_acc or depth bounds exclude it)")
        self.current = matches[0]

    def select(self, request: Request, now: float) -> Decision:
        return Decision(self.current, "static")

    def state(self) -> dict[str, int]:
        return {"current": self.current}
