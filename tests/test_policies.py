"""Depth policies against a fake clock: Algorithm 1 step by step, and bounds for every policy."""

from __future__ import annotations

import itertools

import pytest
from edgeskip_runtime.policies import (
    Algorithm1Policy,
    OperatingPoint,
    PolicyError,
    PolicySettings,
    Request,
    create_policy,
    list_policies,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# A Pareto file of 6 points: accuracy falls and latency shrinks as blocks are skipped.
ACC = [0.92, 0.915, 0.90, 0.87, 0.83, 0.78]
LAT = [10.0, 8.5, 7.0, 5.5, 4.0, 2.5]
POINTS = [OperatingPoint(i, tuple([0] * i + [1] * (5 - i)), ACC[i], LAT[i], LAT[i] * 1.2) for i in range(6)]


def req(t: float, i: int = 0, priority: int = 0, budget: float | None = None) -> Request:
    return Request(f"r{i}", t, priority, budget)


def test_paper_defaults_filter_and_start() -> None:
    p = Algorithm1Policy(POINTS)
    # min_acc = 0.92 - 0.10 = 0.82: the 0.78 point is dropped once, at start.
    assert [pt.index for pt in p.points] == [0, 1, 2, 3, 4]
    assert p.current == 0 and p.delta_req_s == pytest.approx(0.010)  # delta_req = no-skip latency


def test_burst_raises_skipping_one_step_per_drop_and_saturates() -> None:
    p = Algorithm1Policy(POINTS)
    assert p.select(req(0.0), 0.0).config == 0
    levels = []
    for i in range(1, 8):  # seven requests arrive while the worker is busy
        p.on_busy(req(0.001 * i, i), 0.001 * i)
        levels.append(p.current)
    assert levels == [1, 2, 3, 4, 4, 4, 4]


def test_idle_gap_lowers_skipping_by_one() -> None:
    p = Algorithm1Policy(POINTS)
    p.select(req(0.0), 0.0)
    for i in range(3):
        p.on_busy(req(0.001, i), 0.001)
    assert p.current == 3
    d = p.select(req(0.5, 9), 0.5)  # 500 ms idle > delta_req (10 ms)
    assert d.config == 2 and "skip one less" in d.reason
    d = p.select(req(1.0, 10), 1.0)
    assert d.config == 1


def test_delta_req_boundary() -> None:
    p = Algorithm1Policy(POINTS, PolicySettings(delta_req_ms=100.0))
    p.select(req(0.0), 0.0)
    p.on_busy(req(0.01), 0.01)
    p.on_busy(req(0.02), 0.02)
    assert p.current == 2
    # Exactly delta_req after the last processed request: not "more than", so no change.
    assert p.select(req(0.100), 0.100).config == 2
    # Measured from the last *processed* request (t=0.100), not from the drops.
    assert p.select(req(0.2000001), 0.2000001).config == 1
    assert p.select(req(0.25), 0.25).config == 1  # 50 ms later: below delta_req
    assert p.select(req(0.40), 0.40).config == 0
    assert p.select(req(1.0), 1.0).config == 0  # already at no skipping


def test_min_acc_filter() -> None:
    p = Algorithm1Policy(POINTS, PolicySettings(min_acc=0.88))
    assert [pt.index for pt in p.points] == [0, 1, 2]
    for i in range(10):
        p.on_busy(req(0.0, i), 0.0)
    assert p.points[p.current].accuracy >= 0.88 and p.current == 2
    with pytest.raises(PolicyError, match="no configuration"):
        Algorithm1Policy(POINTS, PolicySettings(min_acc=0.99))


def test_static_policy_and_bad_static_config() -> None:
    assert create_policy("static", POINTS, PolicySettings(static_config=2)).select(req(0), 0).config == 2
    with pytest.raises(PolicyError, match="static config 5"):
        create_policy("static", POINTS, PolicySettings(static_config=5))  # excluded by min_acc


def test_budget_picks_deepest_that_fits() -> None:
    p = create_policy("budget", POINTS)
    assert p.points[p.select(req(0, budget=9.0), 0).config].index == 2  # p99 of 7.0 ms is 8.4 ms
    assert p.points[p.select(req(0, budget=100.0), 0).config].index == 0
    d = p.select(req(0, budget=1.0), 0)
    assert p.points[d.config].index == 4 and "unattainable" in d.reason
    assert p.select(req(0), 0).config == 0


def test_load_aware_follows_load_without_oscillating() -> None:
    p = create_policy("load-aware", POINTS, PolicySettings(dwell_s=0.5))
    t, configs = 0.0, []
    for _ in range(400):  # heavy load: one request every 6 ms against 10 ms no-skip latency
        t += 0.006
        configs.append(p.select(req(t), t).config)
        p.on_done(req(t), t, p.points[configs[-1]].latency_ms)
    assert configs[-1] > 0
    changes = sum(a != b for a, b in itertools.pairwise(configs))
    assert changes <= 2.4 / 0.5 + 1  # at most one change per dwell period
    for _ in range(400):  # light load: one request every 100 ms
        t += 0.1
        configs.append(p.select(req(t), t).config)
    assert configs[-1] == 0
    tail = configs[-100:]
    assert len(set(tail)) == 1  # settled: no oscillation under steady load


def test_priority_tiers_without_inversion() -> None:
    p = create_policy("priority", POINTS, PolicySettings(tier_max_skipped={1: 2, 2: 0}, dwell_s=0.0))
    t = 0.0
    for _ in range(50):  # overload (1 kHz against >= 2.5 ms service): the shared level saturates
        t += 0.001
        p.select(req(t), t)
    assert p.current == p.last
    chosen = {}
    for prio in (0, 1, 2, 3):
        t += 0.001
        chosen[prio] = p.points[p.select(req(t, priority=prio), t).config].n_skipped
    assert chosen == {0: 4, 1: 2, 2: 0, 3: 0}  # tier floors: priority 1 skips at most 2, priority 2 none
    assert chosen[0] >= chosen[1] >= chosen[2] >= chosen[3]  # no inversion


@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 8))
    accs = sorted(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)), reverse=True)
    lats = sorted(draw(st.lists(st.floats(0.1, 50.0), min_size=n, max_size=n)), reverse=True)
    points = [OperatingPoint(i, tuple([0] * i + [1] * (n - 1 - i)), accs[i], lats[i], lats[i] * 1.3)
              for i in range(n)]
    lo = draw(st.integers(0, n - 1))
    hi = draw(st.integers(lo, n - 1))
    s = PolicySettings(min_acc=draw(st.one_of(st.none(), st.floats(0.0, accs[0]))), min_skipped=lo, max_skipped=hi,
                       static_config=draw(st.integers(0, n - 1)),
                       tier_max_skipped=draw(st.dictionaries(st.integers(0, 3), st.integers(0, n - 1), max_size=3)),
                       dwell_s=draw(st.floats(0.0, 0.1)))
    events = draw(st.lists(st.tuples(st.sampled_from(["busy", "select", "done"]), st.floats(0.0, 0.05),
                                     st.integers(0, 3), st.one_of(st.none(), st.floats(0.1, 60.0))), max_size=60))
    return points, s, events


@pytest.mark.parametrize("name", list_policies())
@given(scenarios())
@settings(max_examples=150, deadline=None)
def test_no_policy_leaves_floor_ceiling_or_min_acc(name: str, scenario) -> None:
    points, s, events = scenario
    try:
        policy = create_policy(name, points, s)
    except PolicyError:
        return  # the settings exclude every point (or the static one): refused up front, correctly
    min_acc = s.min_acc if s.min_acc is not None else points[0].accuracy - 0.10
    t = 0.0
    for kind, dt, prio, budget in events:
        t += dt
        r = req(t, priority=prio, budget=budget)
        if kind == "busy":
            policy.on_busy(r, t)
        elif kind == "done":
            policy.on_done(r, t, 1.0)
        else:
            chosen = policy.points[policy.select(r, t).config]
            assert s.min_skipped <= chosen.n_skipped <= s.max_skipped
            assert chosen.accuracy >= min_acc
