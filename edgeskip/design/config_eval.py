"""Accuracy of skip configurations on a dataset split, memoised (Korol et al., Sec. II-A.3/4).

Sensitivity analysis, the Pareto search and the Figure-1 study all ask "what is the accuracy
of mask S on split X?", often for the same masks; one :class:`ConfigEvaluator` answers each
question once. Callers that know their masks up front hand them to :meth:`ConfigEvaluator.prefetch`,
which evaluates them together with the prefix-sharing engine (:mod:`edgeskip.design.prefix_engine`);
the answers are identical to evaluating each mask alone.

**Selection precision.** The validation split only *selects* (the sensitivity ranking, the Pareto
front); the test split is *reported* and runs in float32, as the compiled module does. With
``selection_precision="bf16"`` the validation evaluations run a bfloat16 copy of the network: on CPUs
with AMX, ResNet-110 evaluates 4-5x faster (fused, batch 200: 361-376 -> 1,544-1,992 img/s side by
side), and its validation accuracies moved by 0.02-0.13 points against float32 (full depth and 10, 20,
30 random skips). ``"auto"`` picks bf16 where the CPU computes it natively, else float32. Only a study
whose test accuracies illustrate a spread of tens of points, Figure 1, may ask for bf16 test evaluations
too (``report_precision``); the Pareto front's test accuracies, which the runtime's accuracy floor
reads, are always float32.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from edgeskip_runtime.errors import UsageError
from torch import nn

from edgeskip.accuracy import Evaluation, evaluate
from edgeskip.data.base import DatasetSplits, ImageSet
from edgeskip.design.fold_batchnorm import fold_batchnorm
from edgeskip.design.fuse_convolutions import fuse_convolutions
from edgeskip.design.prefix_engine import DEFAULT_MEMORY_BUDGET, PrefixSharingEngine, PrefixSharingUnsupported
from edgeskip.gating import GatedModel, SkipConfig
from edgeskip.progress import progress_bar

if TYPE_CHECKING:
    from edgeskip.design.ray_pool import RayEvaluatorPool

SPLITS = ("val", "test")
# Batches of 200 channels-last images: the fastest PyTorch setting for these ResNets on the 2-core x86 host
# (see the backends entry of docs/results/design_bench.json). PyTorch, not the compiled IREE module, because
# only PyTorch can resume at a gate: sharing prefixes saves more work than IREE's per-image speed gains
# (README, "Benchmarks").
DEFAULT_BATCH = 200
DEFAULT_MEMORY_FORMAT = torch.channels_last
SELECTION_PRECISIONS = ("auto", "fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AMX or AVX512-BF16), not by emulation."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without the probes: assume not
        return False


def resolve_precision(name: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16`` for a selection precision (``auto``: bf16 on CUDA and on CPUs with native bf16)."""
    if name not in SELECTION_PRECISIONS:
        raise UsageError(f"unknown precision {name!r}; use one of {', '.join(SELECTION_PRECISIONS)}",
                         setting="selection_precision")
    if name != "auto":
        return name
    return "bf16" if device.startswith("cuda") or native_bf16() else "fp32"


def prepare_for_evaluation(gated: GatedModel) -> GatedModel:
    """An eval-mode copy with batch norm folded into the convolutions and the bias, ReLU and residual add fused
    into them: what every design-time evaluation runs (the caller's model is untouched)."""
    return fuse_convolutions(fold_batchnorm(gated)[0])[0]


class _Backend(NamedTuple):
    net: GatedModel
    dtype: torch.dtype
    engine: PrefixSharingEngine | None


class ConfigEvaluator:
    """Evaluates masks of one gated model on the validation and test splits of one dataset."""

    def __init__(self, model: nn.Module, data: DatasetSplits, *, device: str = "cpu", batch_size: int = DEFAULT_BATCH,
                 prefix_sharing: bool = True, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
                 memory_format: torch.memory_format = DEFAULT_MEMORY_FORMAT,
                 selection_precision: str = "fp32", report_precision: str = "fp32") -> None:
        gated = model if isinstance(model, GatedModel) else GatedModel(model)
        # Gated first, so that the rewrites keep the gates (and the names the engine hooks) as they are.
        self.gated = prepare_for_evaluation(gated).to(device, memory_format=memory_format)
        self.data = data
        self.device = device
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.selection_precision = resolve_precision(selection_precision, device)
        self.report_precision = resolve_precision(report_precision, device)
        # Per precision in use: the network copy and its engine (None: one mask at a time).
        nets = {"fp32": self.gated}
        if "bf16" in (self.selection_precision, self.report_precision):
            nets["bf16"] = copy.deepcopy(self.gated).to(torch.bfloat16)
        # Gate followers (skip-aware batch norm) make a prefix depend on later gates: one mask at a time.
        prefix_sharing = prefix_sharing and not self.gated.gate_followers
        self._backends = {p: _Backend(net, _DTYPES[p], PrefixSharingEngine(
            net, memory_budget_bytes=memory_budget_bytes, memory_format=memory_format, dtype=_DTYPES[p])
            if prefix_sharing else None) for p, net in nets.items()}
        self._cache: dict[tuple[str, tuple[int, ...]], Evaluation] = {}
        self.remote: RayEvaluatorPool | None = None  # set by open_session for --ray: prefetch sends work there

    def _backend(self, split: str) -> _Backend:
        return self._backends[self.report_precision if split == "test" else self.selection_precision]

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
            data = self.split(split)
            b = self._backend(split)
            self._cache[key] = evaluate(lambda x: b.net(x.to(b.dtype), cfg_t).float(), data, self.data.normalization,
                                        batch_size=self.batch_size, device=self.device,
                                        memory_format=self.memory_format)
        return self._cache[key]

    def prefetch(self, masks: Sequence[Sequence[int] | SkipConfig], split: str = "val", *, label: str = "evaluating",
                 progress: bool = True) -> None:
        """Evaluate every mask not yet known, all together (prefix sharing), with a progress bar over the images."""
        wanted = {(m if isinstance(m, SkipConfig) else SkipConfig.of(m, self.num_blocks)).mask for m in masks}
        todo = sorted(m for m in wanted if (split, m) not in self._cache)
        if not todo:
            return
        data = self.split(split)
        if self.remote is not None and len(todo) > 1:
            results = self.remote.evaluate(todo, split, label=label, progress=progress)
            self._cache.update({(split, m): e for m, e in results.items()})
            return
        engine = self._backend(split).engine
        if engine is None or len(todo) == 1:
            for m in todo:
                self.evaluation(m, split)
            return
        try:
            with progress_bar(progress) as bar:
                task = bar.add_task(f"{label}: {len(todo)} configurations on {split}", total=len(data), info="")
                results = engine.evaluate(todo, data, self.data.normalization, batch_size=self.batch_size,
                                          device=self.device, on_batch=lambda k: bar.advance(task, k))
        except PrefixSharingUnsupported as e:  # correct answers first: this network gets the plain loop
            warnings.warn(str(e), stacklevel=2)
            self._backends = {p: b._replace(engine=None) for p, b in self._backends.items()}
            self.prefetch(todo, split, label=label, progress=progress)
            return
        self._cache.update({(split, m): e for m, e in results.items()})

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
