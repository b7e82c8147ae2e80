"""Edge boards that edgeskip compiles for (Korol et al., Sec. II-A.2: "compile ... onto edge platforms").

One file per board in this folder registers a :class:`Target` with :func:`register_target`
(like timm's ``@register_model``); every module here is imported on first use, so a new board
is a new file and nothing else. This package needs no torch: the board runtime reads it too.

    from edgeskip.targets import get_target, list_targets
    get_target("odroid-xu4").iree_flags()
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeskip_runtime.registry import Registry

BITCODE_DIR = Path(__file__).resolve().parent / "bitcode"


@dataclass(frozen=True)
class CorePower:
    """Power of one core of a type, in watts: idle (clock-gated, online) and busy (one thread at full load)."""

    idle_w: float
    busy_w: float


@dataclass(frozen=True)
class PowerFigures:
    """Board power for an energy model: the board at idle plus per-core increments by core type.

    Approximate figures from public measurements (``source``); measure your own board to be exact.
    """

    board_idle_w: float | None
    cores: dict[str, CorePower]
    source: str


@dataclass(frozen=True)
class Target:
    """A board: how to compile for it (LLVM triple, CPU, features, float ABI) and how to serve on it."""

    name: str
    description: str
    triple: str
    cpu: str
    features: tuple[str, ...]
    float_abi: str | None  # "hard", "soft" or None (the triple's default; only meaningful on 32-bit ARM)
    arch: str  # what platform.machine() reports on the board: x86_64, aarch64, armv7l
    big_cores: tuple[int, ...]
    little_cores: tuple[int, ...] = ()
    serving_cores: tuple[int, ...] = ()  # cores the serving thread is pinned to (default: the big cores)
    power: PowerFigures | None = None
    extra_flags: tuple[str, ...] = field(default=())
    # Every kernel starts on an L1 line. Otherwise a kernel's hot loops land wherever the bytes
    # before them (dispatch names, the bundle's file name) push them, and the same model compiled
    # under another file name runs measurably slower or faster.
    cache_line_bytes: int = 64
    # LLVM bitcode files (in targets/bitcode/) linked into every executable, for definitions the
    # board's code needs and IREE's embedded-ELF loader cannot import (see odroid_xu4.py).
    link_bitcode: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.float_abi not in (None, "hard", "soft"):
            raise ValueError(f"target {self.name}: float_abi must be 'hard', 'soft' or None, got {self.float_abi!r}")
        if self.cache_line_bytes < 1 or self.cache_line_bytes & (self.cache_line_bytes - 1):
            raise ValueError(f"target {self.name}: cache_line_bytes must be a power of two, "
                             f"got {self.cache_line_bytes}")
        if not self.serving_cores:
            object.__setattr__(self, "serving_cores", self.big_cores)
        for name in self.link_bitcode:
            if not (BITCODE_DIR / name).is_file():
                raise ValueError(f"target {self.name}: link_bitcode {name!r} is not in {BITCODE_DIR}")

    def iree_flags(self) -> list[str]:
        """The llvm-cpu flags that select this board's code generation."""
        flags = [
            "--iree-hal-target-device=local",
            "--iree-hal-local-target-device-backends=llvm-cpu",
            f"--iree-llvmcpu-target-triple={self.triple}",
            f"--iree-llvmcpu-target-cpu={self.cpu}",
            f"--align-all-functions={self.cache_line_bytes.bit_length() - 1}",  # an LLVM option, log2 bytes
        ]
        if self.features:
            flags.append(f"--iree-llvmcpu-target-cpu-features={','.join(self.features)}")
        if self.float_abi:  # the armv7 default is softfp; the board's libc is hard-float
            flags.append(f"--iree-llvmcpu-target-float-abi={self.float_abi}")
        if self.link_bitcode:
            flags.append(f"--iree-link-bitcode={','.join(str(BITCODE_DIR / n) for n in self.link_bitcode)}")
        return flags + list(self.extra_flags)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("features", "big_cores", "little_cores", "serving_cores", "extra_flags", "link_bitcode"):
            d[key] = list(d[key])
        return d


TARGETS: Registry[Target] = Registry("target", discover=__name__)  # one module per board


def register_target(target: Target) -> Target:
    """Register a board (call it at import time in a module of this package)."""
    return TARGETS.register(target.name)(target)


def get_target(name: str) -> Target:
    """The registered board called ``name``; an unknown name raises an error listing the known ones."""
    return TARGETS.get(name)


def list_targets() -> list[str]:
    return TARGETS.names()


__all__ = ["TARGETS", "CorePower", "PowerFigures", "Target", "get_target", "list_targets", "register_target"]
