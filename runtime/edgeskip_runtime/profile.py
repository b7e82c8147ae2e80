"""Profiling a bundle on the machine it runs on: the Pareto front on real execution time
(Korol et al., Sec. II-A.4 "accuracy versus inference time", measured on the board as in Sec. III-B).

Each configuration of the bundle's ``pareto.json`` is timed at batch 1 after warm-up,
round-robin so that drift hits all configurations alike. The median, p90 and p99 replace the
design-time figures, ``latency_source`` says where they come from, the front is re-filtered
on the measured latency (a configuration goes only when a more accurate one is faster by more
than the measurements' spread), and the manifest's checksum of ``pareto.json`` is updated. Both
files are replaced atomically, so an interrupted profile leaves the old, consistent bundle.
"""

from __future__ import annotations

import functools
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeskip_runtime.bundle import Bundle, rewrite_bundle
from edgeskip_runtime.module import CompiledModel
from edgeskip_runtime.pareto import ConfigPoint, ParetoFront, pareto_filter
from edgeskip_runtime.stats import LatencyStats, summarize, time_round_robin


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_configs(model: CompiledModel, masks: list[list[int]], *, warmup: int = 10,
                 repeats: int = 100) -> list[LatencyStats]:
    """Batch-1 latency of each mask, measured round-robin."""
    rng = np.random.default_rng(0)
    image = model.check_image(rng.standard_normal(model.image_spec.shape[1:]).astype(np.float32))
    calls = [functools.partial(model.infer_raw, image, model.check_cfg(m)) for m in masks]
    return [summarize(s) for s in time_round_robin(calls, repeats=repeats, warmup=warmup)]


def profile_bundle(path: str | Path, *, driver: str = "local-sync", pin: bool = True, warmup: int = 10,
                   repeats: int = 100, refilter: bool = True) -> dict[str, Any]:
    """Measure every configuration of the bundle here and write the figures into its ``pareto.json``."""
    bundle = Bundle.open(path)
    model = CompiledModel(bundle, driver=driver, pin=pin)
    front = bundle.pareto
    stats = time_configs(model, [c.mask for c in front.configs], warmup=warmup, repeats=repeats)
    pinned = f" pinned to cores {model.pinned_cores}" if model.pinned_cores else ""
    source = (f"iree {driver} on {platform.machine()} ({cpu_model()}){pinned}, batch=1, "
              f"median of {repeats} after {warmup} warm-up (round-robin)")
    measured = []
    for c, s in zip(front.configs, stats, strict=True):
        extra = {**c.extra, "latency_p90_ms": s.p90_ms, "latency_p99_ms": s.p99_ms,
                 "design_latency_ms": c.extra.get("design_latency_ms", c.latency_ms)}
        measured.append(ConfigPoint(c.mask, c.val_accuracy, s.median_ms, c.macs, c.test_accuracy, source, extra))
    kept = measured
    if refilter:
        on_front = pareto_filter(measured, within_spread=True)
        for p in measured:
            p.extra["pareto_optimal"] = any(p is k for k in on_front)
        kept = on_front if on_front[0].n_skipped == 0 else [measured[0], *on_front]
    meta = {**front.meta, "profiled": {"driver": driver, "machine": platform.machine(), "cpu": cpu_model(),
                                       "pinned_cores": model.pinned_cores, "repeats": repeats, "warmup": warmup,
                                       "configs_before": len(front.configs), "configs_after": len(kept)}}
    new_front = ParetoFront(front.model, front.dataset, front.skippable_blocks, kept, meta)
    rewrite_bundle(bundle.path, {"pareto.json": (json.dumps(new_front.to_dict(), indent=2) + "\n").encode()})
    return new_front.to_dict()
