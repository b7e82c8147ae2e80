"""Depth policies: which skip configuration serves the next request (Korol et al., Sec. II-B;
the dynamic-depth-scheduling concept note: load-, budget- and priority-aware policies with
hard depth floors and ceilings).

A policy sees three events, all with explicit timestamps so tests can drive it with a fake
clock:

* ``on_busy(request, now)``: a request arrived while the worker was busy (it is dropped, or
  queued when the server has a queue);
* ``select(request, now)``: the worker is about to process ``request``; return the index
  of the operating point to use and why;
* ``on_done(request, now, latency_ms)``: processing finished.

Every policy chooses only among the *allowed* operating points: those at or above
``min_acc`` and within the global depth floor and ceiling. That is enforced here, once,
so no policy can leave the bounds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class PolicyError(ValueError):
    """Policy settings that cannot be met (e.g. no configuration left after filtering)."""


@dataclass(frozen=True)
class OperatingPoint:
    """One configuration of the Pareto file, as the runtime needs it."""

    index: int  # position in the Pareto file (0 = no skipping)
    mask: tuple[int, ...]
    accuracy: float
    latency_ms: float
    latency_p99_ms: float

    @property
    def n_skipped(self) -> int:
        return len(self.mask) - sum(self.mask)

    @classmethod
    def from_pareto(cls, doc: dict[str, Any]) -> list[OperatingPoint]:
        points = []
        for i, c in enumerate(doc["configs"]):
            points.append(cls(i, tuple(c["mask"]), float(c["val_accuracy"]), float(c["latency_ms"]),
                              float(c.get("latency_p99_ms", c["latency_ms"]))))
        return points


@dataclass(frozen=True)
class Request:
    id: str
    arrival: float  # seconds, on the policy's clock
    priority: int = 0
    latency_budget_ms: float | None = None


@dataclass(frozen=True)
class Decision:
    config: int  # index into Policy.points (the allowed list), 0 = deepest allowed
    reason: str


@dataclass
class PolicySettings:
    """Bounds every policy honours, plus the parameters of the built-in policies.

    ``min_acc``: drop configurations below this accuracy once, at start (Algorithm 1, line 1);
    ``None`` means no-skip accuracy minus 0.10 (the paper's setting).
    ``max_skipped`` is the depth floor (never skip more blocks), ``min_skipped`` the depth
    ceiling (always skip at least this many).
    """

    min_acc: float | None = None
    min_skipped: int = 0
    max_skipped: int | None = None
    delta_req_ms: float | None = None  # Algorithm 1's idle spell; None = no-skip latency
    static_config: int = 0  # index into the Pareto file, for the static policy
    target_utilization: float = 0.8  # load-aware
    hysteresis: float = 0.15  # load-aware: relative band around the target before moving
    dwell_s: float = 1.0  # load-aware: minimum time between two changes
    ewma_alpha: float = 0.2  # load-aware: smoothing of arrival rate and service time
    default_budget_ms: float | None = None  # budget policy: used when a request has no budget
    tier_max_skipped: dict[int, int] = field(default_factory=dict)  # priority: per-tier depth floor
    extra: dict[str, Any] = field(default_factory=dict)


def allowed_points(points: Sequence[OperatingPoint], settings: PolicySettings) -> list[OperatingPoint]:
    """The points a policy may use, sorted by n_skipped (deepest first)."""
    if not points:
        raise PolicyError("the Pareto file has no configurations")
    min_acc = settings.min_acc if settings.min_acc is not None else points[0].accuracy - 0.10
    hi = settings.max_skipped if settings.max_skipped is not None else max(p.n_skipped for p in points)
    if settings.min_skipped > hi:
        raise PolicyError(f"depth ceiling (min_skipped={settings.min_skipped}) is below the floor (max_skipped={hi})")
    kept = [p for p in points if p.accuracy >= min_acc and settings.min_skipped <= p.n_skipped <= hi]
    if not kept:
        raise PolicyError(f"no configuration has accuracy >= {min_acc:.4f} and {settings.min_skipped}..{hi} "
                          "skipped blocks; relax min_acc or the depth bounds")
    return sorted(kept, key=lambda p: (p.n_skipped, p.index))


class Policy(ABC):
    """Chooses among :attr:`points` (the allowed operating points, deepest first)."""

    name = "policy"

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None) -> None:
        self.settings = settings or PolicySettings()
        self.all_points = list(points)
        self.points = allowed_points(points, self.settings)

    @property
    def last(self) -> int:
        return len(self.points) - 1

    def on_busy(self, request: Request, now: float) -> str:
        """A request met a busy worker; returns why the state changed (or not)."""
        return "busy"

    @abstractmethod
    def select(self, request: Request, now: float) -> Decision: ...

    def on_done(self, request: Request, now: float, latency_ms: float) -> None:  # noqa: B027  (optional hook)
        """Processing of ``request`` finished."""

    def state(self) -> dict[str, Any]:
        """The policy's state, for the decision log."""
        return {}
