"""The skip-configuration array S = [s_1, ..., s_{B_s}] (Korol et al., Sec. II-A.2, Fig. 5).

``s_i = 1`` runs skippable block ``i``; ``s_i = 0`` skips it (the block's input passes
through). Blocks are numbered in execution order, as :func:`skippable_blocks` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from edgeskip_runtime.errors import EdgeskipError


class SkipConfigError(EdgeskipError, ValueError):
    """A skip configuration has the wrong length, dtype or values."""


_INT_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_cfg_tensor(cfg: torch.Tensor, length: int) -> torch.Tensor:
    """Validate a cfg tensor (1-D, integer or bool, values 0/1, ``length`` entries)."""
    if not isinstance(cfg, torch.Tensor):
        raise SkipConfigError(f"cfg must be a tensor, got {type(cfg).__name__}")
    if cfg.dtype not in _INT_DTYPES:
        raise SkipConfigError(f"cfg must be an integer or bool tensor, got dtype {cfg.dtype}")
    if cfg.ndim != 1 or cfg.shape[0] != length:
        raise SkipConfigError(f"cfg must have shape ({length},) (one entry per skippable block), "
                              f"got {tuple(cfg.shape)}")
    if cfg.dtype != torch.bool and not bool(((cfg == 0) | (cfg == 1)).all()):
        bad = sorted({int(v) for v in cfg.tolist() if v not in (0, 1)})
        raise SkipConfigError(f"cfg entries must be 0 (skip) or 1 (run), found {bad}")
    return cfg


@dataclass(frozen=True)
class SkipConfig:
    """An immutable, validated skip mask."""

    mask: tuple[int, ...]

    def __post_init__(self) -> None:
        if any(v not in (0, 1) for v in self.mask):
            raise SkipConfigError(f"mask entries must be 0 or 1, got {list(self.mask)}")

    @classmethod
    def of(cls, values: Iterable[int] | np.ndarray | torch.Tensor, length: int | None = None) -> SkipConfig:
        if isinstance(values, torch.Tensor):
            values = check_cfg_tensor(values, values.shape[0] if length is None else length).tolist()
        mask = tuple(int(v) for v in np.asarray(values).reshape(-1).tolist())
        if length is not None and len(mask) != length:
            raise SkipConfigError(f"mask has {len(mask)} entries, the model has {length} skippable blocks")
        return cls(mask)

    @classmethod
    def all_on(cls, length: int) -> SkipConfig:
        return cls((1,) * length)

    @classmethod
    def skipping(cls, length: int, skipped: Sequence[int]) -> SkipConfig:
        """The mask that skips exactly the blocks in ``skipped`` (0-based indices)."""
        out = [1] * length
        for i in skipped:
            if not 0 <= i < length:
                raise SkipConfigError(f"block index {i} outside 0..{length - 1}")
            out[i] = 0
        return cls(tuple(out))

    @property
    def n_skipped(self) -> int:
        return len(self.mask) - sum(self.mask)

    def tensor(self, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        return torch.tensor(self.mask, dtype=dtype)

    def __len__(self) -> int:
        return len(self.mask)
