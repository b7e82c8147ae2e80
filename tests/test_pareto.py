"""The Pareto filter (property-based), hypervolume, and the pareto.json format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgeskip_runtime.pareto import ConfigPoint, ParetoFileError, ParetoFront, dominates, hypervolume, pareto_filter
from hypothesis import given, settings
from hypothesis import strategies as st

points = st.lists(
    st.builds(
        lambda mask, acc, lat: ConfigPoint(mask, acc, lat),
        st.lists(st.integers(0, 1), min_size=4, max_size=4),
        st.floats(0, 1, allow_nan=False),
        st.floats(0.01, 100, allow_nan=False),
    ),
    min_size=1,
    max_size=40,
)


@given(points)
@settings(max_examples=300, deadline=None)
def test_filter_keeps_exactly_the_non_dominated(pts: list[ConfigPoint]) -> None:
    kept = pareto_filter(pts)
    for k in kept:
        assert not any(dominates(p, k) for p in pts), "a kept point is dominated"
    kept_ids = {id(k) for k in kept}
    for p in pts:
        if id(p) not in kept_ids:  # every dropped point is dominated by, or equal to, a kept one
            assert any(dominates(k, p) or (k.val_accuracy, k.latency_ms) == (p.val_accuracy, p.latency_ms)
                       for k in kept)
    assert [k.n_skipped for k in kept] == sorted(k.n_skipped for k in kept)


def _spread_point(mask: list[int], acc: float, median: float, p90: float) -> ConfigPoint:
    return ConfigPoint(mask, acc, median, extra={"latency_p90_ms": p90})


@given(st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.floats(0.01, 100, allow_nan=False),
                          st.floats(0, 5, allow_nan=False)), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_filter_within_spread_drops_only_clearly_slower_points(raw: list[tuple[float, float, float]]) -> None:
    pts = [_spread_point([1, 0], acc, lat, lat + spread) for acc, lat, spread in raw]
    kept = pareto_filter(pts, within_spread=True)
    exact = pareto_filter(pts)
    kept_ids = {id(k) for k in kept}
    assert {id(k) for k in exact} <= kept_ids or len({(p.val_accuracy, p.latency_ms) for p in pts}) < len(pts)
    for p in pts:
        clearly_dominated = any(q.val_accuracy >= p.val_accuracy and p.latency_ms - q.latency_ms >
                                max(q.extra["latency_p90_ms"] - q.latency_ms, p.extra["latency_p90_ms"] - p.latency_ms)
                                for q in pts)
        assert (id(p) in kept_ids) != clearly_dominated


def test_filter_within_spread_keeps_a_nested_front_through_noise() -> None:
    # A nested front measured on a noisy machine: skipping block 2 reads 0.02 ms slower than
    # skipping nothing, within the 0.1 ms spread; the exact filter loses it, the spread-aware one not.
    pts = [_spread_point([1, 1, 1], 0.93, 1.00, 1.10), _spread_point([1, 0, 1], 0.92, 1.02, 1.12),
           _spread_point([0, 0, 1], 0.90, 0.70, 0.80), _spread_point([0, 0, 0], 0.50, 0.40, 0.45)]
    assert len(pareto_filter(pts)) == 3
    assert pareto_filter(pts, within_spread=True) == pts
    # Clearly slower (by more than either spread) and no more accurate: dropped.
    slow = _spread_point([0, 1, 0], 0.80, 1.5, 1.55)
    assert slow not in pareto_filter([*pts, slow], within_spread=True)


@given(points, points)
@settings(max_examples=200, deadline=None)
def test_hypervolume_is_monotone_in_the_point_set(a: list[ConfigPoint], b: list[ConfigPoint]) -> None:
    ref_acc, ref_lat = 0.0, 101.0
    assert hypervolume(a + b, ref_acc, ref_lat) >= hypervolume(a, ref_acc, ref_lat) - 1e-9
    assert hypervolume(a, ref_acc, ref_lat) == pytest.approx(hypervolume(pareto_filter(a), ref_acc, ref_lat))


def test_hypervolume_by_hand() -> None:
    pts = [ConfigPoint([1, 1], 0.9, 3.0), ConfigPoint([1, 0], 0.8, 2.0), ConfigPoint([0, 0], 0.5, 1.0)]
    # Rectangles up to (acc 0, latency 4): [1,2)x0.5 + [2,3)x0.8 + [3,4)x0.9
    assert hypervolume(pts, 0.0, 4.0) == pytest.approx(0.5 + 0.8 + 0.9)


def _front(configs: list[ConfigPoint]) -> ParetoFront:
    return ParetoFront("resnet20", "fashion-mnist", 2, configs)


def test_file_roundtrip(tmp_path: Path) -> None:
    front = _front([ConfigPoint([1, 1], 0.9, 3.0, 100, 0.89, "pytorch"), ConfigPoint([1, 0], 0.8, 2.0, 60, 0.79, "x")])
    front.save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["schema"] == "edgeskip.pareto/1" and doc["skippable_blocks"] == 2
    assert doc["configs"][0] == {"mask": [1, 1], "n_skipped": 0, "val_accuracy": 0.9, "latency_ms": 3.0,
                                 "macs": 100, "test_accuracy": 0.89, "latency_source": "pytorch"}
    again = ParetoFront.load(tmp_path / "p.json")
    assert again.to_dict() == front.to_dict()


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ([ConfigPoint([1, 0], 0.8, 2.0)], "no-skip"),
        ([ConfigPoint([1, 1, 1], 0.9, 3.0)], "expected 2"),
        ([ConfigPoint([1, 2], 0.9, 3.0)], "0/1"),
        ([ConfigPoint([1, 1], 0.9, 3.0), ConfigPoint([0, 0], 0.5, 1.0), ConfigPoint([1, 0], 0.8, 2.0)], "sorted"),
        ([], "at least one"),
    ],
)
def test_invalid_fronts_are_refused(configs: list[ConfigPoint], message: str) -> None:
    with pytest.raises(ParetoFileError, match=message):
        _front(configs)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ParetoFileError, match="does not exist"):
        ParetoFront.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ParetoFileError, match="not valid JSON"):
        ParetoFront.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"schema": "something/1"}')
    with pytest.raises(ParetoFileError, match="schema"):
        ParetoFront.load(tmp_path / "other.json")


def test_skippable_within_counts_blocks_within_the_accuracy_budget() -> None:
    from edgeskip.design.pareto_search import skippable_within

    tests = [0.95, 0.945, 0.93, 0.86, 0.5]
    candidates = [ConfigPoint([0] * n + [1] * (4 - n), 0.9, 1.0, test_accuracy=t) for n, t in enumerate(tests)]
    assert skippable_within(candidates, 1) == 1
    assert skippable_within(candidates, 10) == 3
    assert skippable_within(candidates, 50) == 4
