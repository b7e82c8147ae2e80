"""Depth policies: which skip configuration serves the next request (Korol et al., Sec. II-B;
the README, "Depth policies": load-, budget-, priority- and performance-aware
policies with hard depth floors and ceilings).

A policy sees three events, all with explicit timestamps so tests can drive it with a fake
clock:

* ``on_busy(request, now)``: a request arrived while the worker was busy (it is dropped, or
  queued when the server has a queue);
* ``select(request, now)``: ``request`` is admitted for processing; return the index of the
  operating point to use and why. The server calls it at the request's arrival, atomically
  with the busy check (Algorithm 1, lines 5-12), so a later arrival cannot change it;
* ``on_done(request, now, latency_ms, logits)``: processing finished, with the module time
  and the output (for quality-driven policies).

A policy that needs the server's no-skip service time (Algorithm 1's Δreq) reads it from the
``service`` object it is given (:class:`edgeskip_runtime.service_time.ServiceTimeEstimate`),
which the server calibrates and tracks online.

Every policy chooses only among the *allowed* operating points: those at or above
``min_acc`` and within the global depth floor and ceiling. That is enforced here, once,
so no policy can leave the bounds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from edgeskip_runtime.errors import EdgeskipError
from edgeskip_runtime.pareto import ParetoFront


class PolicyError(EdgeskipError, ValueError):
    """Policy settings that cannot be met (e.g. no configuration left after filtering)."""


@dataclass(frozen=True)
class OperatingPoint:
    """One configuration of the Pareto file, as the runtime needs it."""

    index: int  # position in the Pareto file (0 = no skipping)
    mask: tuple[int, ...]
    accuracy: float
    latency_ms: float
    latency_p99_ms: float
    margin: float | None = None  # mean top-1 softmax margin on validation, when the Pareto file has it
    n_skipped: int = field(init=False)  # derived from the mask; kept, as the serving path reads it per request

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_skipped", len(self.mask) - sum(self.mask))

    @classmethod
    def from_front(cls, front: ParetoFront) -> list[OperatingPoint]:
        """The operating points of a checked Pareto front (``ParetoFront.load`` validated it)."""
        points = []
        for i, c in enumerate(front.configs):
            margin = c.extra.get("val_margin")
            points.append(cls(i, tuple(c.mask), float(c.val_accuracy), float(c.latency_ms),
                              float(c.extra.get("latency_p99_ms", c.latency_ms)),
                              None if margin is None else float(margin)))
        return points


@dataclass(frozen=True)
class Request:
    id: str
    arrival: float  # seconds, on the policy's clock
    priority: int = 0
    latency_budget_ms: float | None = None
    label: int | None = None  # the true class, when the client sends it (online accuracy)


class ServiceTime(Protocol):
    """What a policy may read of the server's measured no-skip service time."""

    @property
    def service_ms(self) -> float: ...

    @property
    def handling_ms(self) -> float: ...


DWELL_SERVICE_TIMES = 20  # default dwell: this many no-skip service times


def no_skip_service_ms(policy: Policy) -> float:
    """The measured no-skip service time, or the Pareto file's no-skip latency without a server."""
    return policy.service.service_ms if policy.service is not None else policy.all_points[0].latency_ms


def handling_ms(policy: Policy) -> float:
    """The server's per-request time outside the module (0 for a policy used without a server)."""
    return policy.service.handling_ms if policy.service is not None else 0.0


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
    delta_req_ms: float | None = None  # Algorithm 1's idle spell; None = the measured no-skip service time
    static_config: int = 0  # index into the Pareto file, for the static policy
    target_utilization: float = 0.8  # load-aware
    hysteresis: float = 0.15  # load-aware: relative band around the target before moving
    dwell_s: float | None = None  # load-aware: minimum time between two changes; None = DWELL_SERVICE_TIMES x S
    ewma_alpha: float = 0.2  # load-aware: smoothing of arrival rate and service time
    default_budget_ms: float | None = None  # budget policy: used when a request has no budget
    tier_max_skipped: dict[int, int] = field(default_factory=dict)  # priority: per-tier depth floor
    quality_window: int = 32  # performance-aware: requests per quality judgement
    quality_tolerance: float = 0.15  # performance-aware: relative shortfall that tightens the floor
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any]) -> PolicySettings:
        """These settings with some fields replaced (e.g. from a reload request), each checked."""
        if not isinstance(overrides, Mapping):
            raise PolicyError(f"policy settings must be an object, got {type(overrides).__name__}")
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise PolicyError(f"unknown policy settings {unknown}; known: {sorted(known)}")
        return replace(self, **{k: _checked(k, v) for k, v in overrides.items()})


_OPTIONAL = {"min_acc", "max_skipped", "delta_req_ms", "default_budget_ms", "dwell_s"}
_INTS = {"min_skipped", "max_skipped", "static_config", "quality_window"}


def _checked(name: str, value: Any) -> Any:
    """A settings value of the right type and range, or PolicyError naming the field."""
    if value is None and name in _OPTIONAL:
        return None
    if name == "tier_max_skipped":
        if not isinstance(value, Mapping):
            raise PolicyError("tier_max_skipped must be an object {priority: max_skipped}")
        try:
            return {int(k): _checked("min_skipped", v) for k, v in value.items()}
        except ValueError:
            raise PolicyError(f"tier_max_skipped keys must be integer priorities, got {sorted(value)}") from None
    if name == "extra":
        if not isinstance(value, Mapping):
            raise PolicyError("extra must be an object")
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{name} must be a number, got {value!r}")
    if name in _INTS:
        if value != int(value) or value < 0:
            raise PolicyError(f"{name} must be a non-negative integer, got {value!r}")
        return int(value)
    if not value == value or value in (float("inf"), float("-inf")) or value < 0:  # NaN, inf, negative
        raise PolicyError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)


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

    def __init__(self, points: Sequence[OperatingPoint], settings: PolicySettings | None = None,
                 service: ServiceTime | None = None) -> None:
        self.settings = settings or PolicySettings()
        self.service = service
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

    def on_done(self, request: Request, now: float, latency_ms: float,  # noqa: B027  (optional hook)
                logits: Any = None) -> None:
        """Processing of ``request`` finished after ``latency_ms`` in the module, with output ``logits``."""

    def state(self) -> dict[str, Any]:
        """The policy's state, for the decision log."""
        return {}
