"""The Pareto front of skip configurations and its file format (Korol et al., Sec. II-A.4).

A configuration is kept when no other one is at least as accurate on the validation split
*and* at least as fast, and strictly better in one of the two. The runtime (Algorithm 1,
Sec. II-B) walks the kept configurations in order of ``n_skipped``.

This module is pure Python (no torch): the board runtime reads and re-filters the same file.

``pareto.json``, schema ``edgeskip.pareto/1``::

    {"schema": "edgeskip.pareto/1", "model": str, "dataset": str, "skippable_blocks": B_s,
     "selection_split": "val", "ranker": str, "latency": {how latency was measured},
     "configs": [{"mask": [1, 0, ...], "n_skipped": k, "val_accuracy": a,
                  "test_accuracy": a, "macs": m, "latency_ms": t, "latency_source": str}]}

``configs`` is sorted by ``n_skipped``; the first entry is the no-skip configuration, which
is kept even when another mask dominates it (Algorithm 1 starts there). Files written by
``edgeskip pareto`` also carry ``pareto_optimal``, latency ``p90``/``p99`` and ``val_margin``
(mean top-1 softmax margin on the validation split, the confidence the performance-aware
policy expects of that configuration) per config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeskip_runtime.atomic import write_json
from edgeskip_runtime.errors import FileFormatError

SCHEMA = "edgeskip.pareto/1"


class ParetoFileError(FileFormatError):
    """A Pareto file is missing, corrupt, or inconsistent with its model."""


@dataclass
class ConfigPoint:
    """One operating point: a skip mask with its measured accuracy and cost."""

    mask: list[int]
    val_accuracy: float
    latency_ms: float
    macs: int = 0
    test_accuracy: float | None = None
    latency_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return len(self.mask) - sum(self.mask)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        ordered = {"mask": d.pop("mask"), "n_skipped": self.n_skipped}
        return {**ordered, **d, **extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfigPoint:
        known = {"mask", "val_accuracy", "latency_ms", "macs", "test_accuracy", "latency_source"}
        extra = {k: v for k, v in d.items() if k not in known | {"n_skipped"}}
        return cls(**{k: d[k] for k in known if k in d}, extra=extra)


def weakly_dominates(a: ConfigPoint, b: ConfigPoint) -> bool:
    """``a`` is at least as accurate and as fast as ``b``."""
    return a.val_accuracy >= b.val_accuracy and a.latency_ms <= b.latency_ms


def dominates(a: ConfigPoint, b: ConfigPoint) -> bool:
    """``a`` is at least as accurate and as fast as ``b``, and strictly better in one."""
    return weakly_dominates(a, b) and (a.val_accuracy > b.val_accuracy or a.latency_ms < b.latency_ms)


def latency_spread_ms(p: ConfigPoint) -> float:
    """How far ``p``'s latency moves between calls: its p90 minus its median, 0 when it was not measured."""
    p90 = p.extra.get("latency_p90_ms")
    return max(0.0, float(p90) - p.latency_ms) if p90 is not None else 0.0


def pareto_filter(points: Sequence[ConfigPoint], *, within_spread: bool = False) -> list[ConfigPoint]:
    """The non-dominated points, sorted by (n_skipped, latency). Duplicates of a point keep one copy.

    ``within_spread``: a point is dropped only when one at least as accurate is faster by more than
    the larger of the two latency spreads (:func:`latency_spread_ms`). Neighbouring configurations of a
    nested front differ by one block, often less than a noisy machine's spread; an exact filter on
    single medians then drops real operating points at random.
    """
    if within_spread:
        kept = [p for p in points
                if not any(q.val_accuracy >= p.val_accuracy
                           and p.latency_ms - q.latency_ms > max(latency_spread_ms(p), latency_spread_ms(q))
                           for q in points)]
        return sorted(kept, key=lambda p: (p.n_skipped, p.latency_ms))
    ordered = sorted(points, key=lambda p: (p.latency_ms, -p.val_accuracy, p.n_skipped))
    kept = []
    best_acc = float("-inf")
    for p in ordered:  # sweep by latency: a point survives iff it beats every faster point's accuracy
        if p.val_accuracy > best_acc:
            kept.append(p)
            best_acc = p.val_accuracy
    return sorted(kept, key=lambda p: (p.n_skipped, p.latency_ms))


def hypervolume(points: Sequence[ConfigPoint], ref_accuracy: float, ref_latency: float) -> float:
    """Area dominated by ``points`` (maximise accuracy, minimise latency) up to the reference point."""
    area, best_acc = 0.0, ref_accuracy
    front = sorted(pareto_filter(points), key=lambda p: p.latency_ms)
    edges = [p.latency_ms for p in front[1:]] + [ref_latency]
    for p, next_latency in zip(front, edges, strict=True):
        if p.latency_ms >= ref_latency:
            break
        best_acc = max(best_acc, p.val_accuracy)
        area += (min(next_latency, ref_latency) - p.latency_ms) * (best_acc - ref_accuracy)
    return area


@dataclass
class ParetoFront:
    """The kept operating points of one model, and where they came from."""

    model: str
    dataset: str
    skippable_blocks: int
    configs: list[ConfigPoint]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.configs:
            raise ParetoFileError("a Pareto front needs at least one configuration")
        for c in self.configs:
            if len(c.mask) != self.skippable_blocks:
                raise ParetoFileError(f"mask {c.mask} has {len(c.mask)} entries, expected {self.skippable_blocks}")
            if any(v not in (0, 1) for v in c.mask):
                raise ParetoFileError(f"mask {c.mask} has entries other than 0/1")
        if self.configs[0].n_skipped != 0:
            raise ParetoFileError("the first configuration must be the no-skip one (all ones)")
        n = [c.n_skipped for c in self.configs]
        if n != sorted(n):
            raise ParetoFileError(f"configs must be sorted by n_skipped, got {n}")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "dataset": self.dataset,
                "skippable_blocks": self.skippable_blocks, **self.meta,
                "configs": [c.to_dict() for c in self.configs]}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParetoFront:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ParetoFileError(f"not an {SCHEMA} document (schema {found!r})")
        try:
            core = {"schema", "model", "dataset", "skippable_blocks", "configs"}
            meta = {k: v for k, v in d.items() if k not in core}
            return cls(d["model"], d["dataset"], int(d["skippable_blocks"]),
                       [ConfigPoint.from_dict(c) for c in d["configs"]], meta)
        except (KeyError, TypeError) as e:
            raise ParetoFileError(f"malformed {SCHEMA} document: {e!r}") from e

    @classmethod
    def load(cls, path: str | Path) -> ParetoFront:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ParetoFileError(f"Pareto file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ParetoFileError(f"{path} is not valid JSON: {e}") from e
