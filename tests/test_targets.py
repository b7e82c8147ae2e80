"""Board registry (targets/): every board's flags and facts, discovery, and no torch on the board side."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from edgeskip_runtime.registry import UnknownNameError

from edgeskip.cli import main
from edgeskip.targets import get_target, list_targets

KNOWN_ARCHES = {"x86_64", "aarch64", "armv7l"}


def test_the_paper_boards_are_registered() -> None:
    assert {"odroid-xu4", "rpi4", "rpi5", "host"} <= set(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_target_facts_are_consistent(name: str) -> None:
    t = get_target(name)
    flags = t.iree_flags()
    assert f"--iree-llvmcpu-target-triple={t.triple}" in flags
    assert f"--iree-llvmcpu-target-cpu={t.cpu}" in flags
    assert t.cpu != "generic", "name the real CPU: generic code is ~7x slower"
    assert t.arch in KNOWN_ARCHES
    assert set(t.serving_cores) <= set(t.big_cores) | set(t.little_cores)
    assert not set(t.big_cores) & set(t.little_cores)
    if t.power is not None:
        assert t.power.source and all(c.busy_w >= c.idle_w >= 0 for c in t.power.cores.values())
    assert t.to_dict()["name"] == name


def test_odroid_xu4_is_armv7_hard_float_neon() -> None:
    t = get_target("odroid-xu4")
    assert (t.triple, t.cpu, t.float_abi, t.arch) == ("armv7a-pc-linux-gnueabihf", "cortex-a15", "hard", "armv7l")
    assert "--iree-llvmcpu-target-cpu-features=+neon,+vfp4" in t.iree_flags()
    assert "--iree-llvmcpu-target-float-abi=hard" in t.iree_flags()
    assert (t.big_cores, t.little_cores) == ((4, 5, 6, 7), (0, 1, 2, 3))


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="known: host, odroid-xu4, rpi4, rpi5"):
        get_target("jetson-nano")


def test_cli_lists_targets() -> None:
    result = CliRunner().invoke(main, ["targets"])
    assert result.exit_code == 0, result.output
    for name in list_targets():
        assert name in result.output
