"""Accuracy of skip configurations on a dataset split, memoised (Korol et al., Sec. II-A.3/4).

Sensitivity analysis, the Pareto search and the Figure-1 study all ask "what is the accuracy
of mask S on split X?", often for the same masks; one :class:`ConfigEvaluator` answers each
question once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.accuracy import Evaluation, evaluate
from edgeskip.data.base import DatasetSplits, ImageSet
from edgeskip.gating import GatedModel, SkipConfig

SPLITS = ("val", "test")


class ConfigEvaluator:
    """Evaluates masks of one gated model on the validation and test splits of one dataset."""

    def __init__(self, model: nn.Module, data: DatasetSplits, *, device: str = "cpu", batch_size: int = 500) -> None:
        self.gated = model if isinstance(model, GatedModel) else GatedModel(model)
        self.gated = self.gated.to(device).eval()
        self.data = data
        self.device = device
        self.batch_size = batch_size
        self._cache: dict[tuple[str, tuple[int, ...]], Evaluation] = {}

    @property
    def num_blocks(self) -> int:
        return self.gated.num_gates

    def split(self, name: str) -> ImageSet:
        if name not in SPLITS:
            raise UsageError(f"unknown split {name!r}; use one of {SPLITS}", setting="split")
        return getattr(self.data, name)

    def evaluation(self, mask: Sequence[int] | SkipConfig, split: str = "val") -> Evaluation:
        cfg = mask if isinstance(mask, SkipConfig) else SkipConfig.of(mask, self.num_blocks)
        key = (split, cfg.mask)
        if key not in self._cache:
            cfg_t = cfg.tensor().to(self.device)
            self._cache[key] = evaluate(lambda x: self.gated(x, cfg_t), self.split(split), self.data.normalization,
                                        batch_size=self.batch_size, device=self.device)
        return self._cache[key]

    def accuracy(self, mask: Sequence[int] | SkipConfig, split: str = "val") -> float:
        return self.evaluation(mask, split).accuracy

    def margin(self, mask: Sequence[int] | SkipConfig, split: str = "val") -> float:
        """Mean top-1 softmax margin: the confidence the runtime expects of this configuration."""
        return self.evaluation(mask, split).margin

    @property
    def evaluations(self) -> int:
        """How many distinct (split, mask) evaluations were run."""
        return len(self._cache)


def all_masks(num_blocks: int) -> list[SkipConfig]:
    """Every one of the 2^B_s masks (for exhaustive search on small models)."""
    return [SkipConfig(tuple((i >> b) & 1 for b in range(num_blocks))) for i in range(2**num_blocks)]


def random_masks(num_blocks: int, n_skipped: int, count: int, generator: torch.Generator) -> list[SkipConfig]:
    """``count`` masks that skip ``n_skipped`` blocks, drawn uniformly (with replacement)."""
    out = []
    for _ in range(count):
        skipped = torch.randperm(num_blocks, generator=generator)[:n_skipped].tolist()
        out.append(SkipConfig.skipping(num_blocks, skipped))
    return out
