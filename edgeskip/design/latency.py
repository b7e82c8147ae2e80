"""Batch-1 latency of skip configurations measured with PyTorch eager (Korol et al., Sec. II-A.4).

This is the design-time stand-in for on-target execution time: the Pareto file records it
with ``latency_source`` so a later profile of the compiled module on the board can replace it.
Configurations are measured round-robin, so drift on a busy machine hits all of them alike.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from edgeskip_runtime.stats import LatencyStats, summarize, time_round_robin

from edgeskip.gating import GatedModel, SkipConfig


@torch.no_grad()
def measure_torch_latency(
    gated: GatedModel,
    masks: Sequence[SkipConfig],
    input_shape: Sequence[int],
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
) -> tuple[list[LatencyStats], str]:
    """Median/p90/p99 batch-1 latency per mask, and a description of how it was measured."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gated = gated.eval()
        x = torch.randn(1, *input_shape)
        calls = [functools.partial(gated, x, m.tensor()) for m in masks]
        samples = time_round_robin(calls, repeats=repeats, warmup=warmup)
    finally:
        torch.set_num_threads(previous)
    source = f"pytorch-eager cpu batch=1 threads={threads} median of {repeats} (round-robin)"
    return [summarize(s) for s in samples], source
