"""A one-point bundle (the Original, or self-gated SkipNet) run over the test split through the compiled
module (Korol et al., Sec. III-C "Inference Time": SkipNet's time varies from input to input, up to 13x,
which hurts predictability).

Each image is one batch-1 call, timed; the result is the compiled module's accuracy and the per-input
latency distribution. For SkipNet, the eager model's decisions for the same images give the skipped
blocks per input, the latency per skipped count, and the agreement of eager and compiled predictions.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgeskip_runtime.bundle import Bundle
from edgeskip_runtime.module import CompiledModel
from edgeskip_runtime.server.oip import Normalization
from edgeskip_runtime.stats import percentile

from edgeskip.progress import progress_bar


@dataclass
class TestSetRun:
    """The compiled module over ``n`` test images, one timed batch-1 call each."""

    bundle: str
    n: int
    accuracy: float
    latency_ms: dict[str, float]  # min, p1, p50, mean, p99, max, max_over_min, p99_over_p1
    predictions: list[int] = field(repr=False)
    per_input_ms: list[float] = field(repr=False)
    skipnet: dict[str, Any] | None = None  # decisions of the eager model: see measure_skipnet_decisions

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("predictions")
        d.pop("per_input_ms")
        return d


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    lo, hi = min(samples_ms), max(samples_ms)
    p1, p99 = percentile(samples_ms, 0.01), percentile(samples_ms, 0.99)
    return {"min": lo, "p1": p1, "p50": percentile(samples_ms, 0.5), "mean": statistics.fmean(samples_ms),
            "p99": p99, "max": hi, "max_over_min": hi / lo, "p99_over_p1": p99 / p1}


@dataclass
class Loaded:
    """A bundle's module, loaded once, with the test images normalised for it."""

    bundle: Bundle
    model: CompiledModel
    images: np.ndarray  # (N, C, H, W) float32

    @classmethod
    def of(cls, bundle: Bundle, images_u8: np.ndarray) -> Loaded:
        model = CompiledModel(bundle)
        norm = Normalization.from_manifest(bundle.manifest, model.image_spec.shape[1])
        return cls(bundle, model, np.ascontiguousarray(norm.apply(images_u8)))

    def cfg(self, index: int = 0) -> np.ndarray:
        """The checked cfg of operating point ``index`` (a self-gated module's is empty)."""
        return self.model.check_cfg(self.bundle.pareto.configs[index].mask)


def run_test_set(loaded: Loaded, labels: np.ndarray, *, warmup: int = 20, progress: bool = True) -> TestSetRun:
    """Accuracy and per-input latency of a one-point bundle (its only operating point) on its images."""
    model, images, cfg = loaded.model, loaded.images, loaded.cfg()
    for i in range(min(warmup, len(images))):
        model.infer_raw(images[i : i + 1], cfg)
    preds, times = [], []
    with progress_bar(progress) as bar:
        task = bar.add_task(f"test set through {loaded.bundle.path.name}", total=len(images), info="")
        for i in range(len(images)):
            x = images[i : i + 1]
            t0 = time.perf_counter()
            logits = model.infer_raw(x, cfg)
            times.append((time.perf_counter() - t0) * 1e3)
            preds.append(int(np.argmax(logits)))
            if i % 200 == 0:
                bar.update(task, completed=i + 1)
    accuracy = float(np.mean(np.asarray(preds) == labels))
    return TestSetRun(str(loaded.bundle.path), len(images), accuracy, latency_summary(times), preds, times)


def measure_skipnet_decisions(run: TestSetRun, checkpoint: str | Path, images_u8: np.ndarray,
                              labels: np.ndarray) -> dict[str, Any]:
    """The eager SkipNet's per-input skipped blocks for the same images, joined with the compiled timings."""
    import torch

    from edgeskip.baselines.skipnet import SkipNet
    from edgeskip.training.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    net = ck.build_model()
    if not isinstance(net, SkipNet):
        raise TypeError(f"{checkpoint} is not a SkipNet checkpoint (recipe {ck.recipe!r})")
    net.eval()
    net.mode = "hard"
    skipped: list[int] = []
    eager_preds: list[int] = []
    with torch.no_grad():
        for start in range(0, len(images_u8), 500):
            x = ck.normalization.apply(torch.from_numpy(images_u8[start : start + 500]))
            eager_preds += net(x).argmax(1).tolist()
            skipped += (1 - net.trace.run_matrix()).sum(1).long().tolist()
    by_count: dict[int, list[float]] = {}
    for k, ms in zip(skipped, run.per_input_ms, strict=True):
        by_count.setdefault(k, []).append(ms)
    hist = {k: len(v) for k, v in sorted(by_count.items())}
    return {
        "checkpoint": str(checkpoint), "gated_blocks": net.num_gates,
        "mean_skipped": statistics.fmean(skipped), "skipped_histogram": hist,
        "median_ms_by_skipped": {k: statistics.median(v) for k, v in sorted(by_count.items())},
        "eager_accuracy": float(np.mean(np.asarray(eager_preds) == labels)),
        "eager_compiled_agreement": float(np.mean(np.asarray(eager_preds) == np.asarray(run.predictions))),
    }
