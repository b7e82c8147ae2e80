"""Evaluate many skip configurations at once, sharing the work of common prefixes (Korol et al., Sec. II-A.3/4).

Sensitivity analysis, the Pareto search and Figure 1 each evaluate dozens to hundreds of masks over the
same images. Two masks that agree on their first ``k`` gates compute the same activation at the input of
gate ``k``, so that work is done once: the masks, sorted, form a trie over gate positions, and a
depth-first walk of it computes each shared stretch once per batch of images, keeping the activation
where masks part and computing each remainder from there.

* Sensitivity (no-skip plus "skip block i" for every i) costs about half the naive loop; nested
  candidates (skip the N least important) and random masks share prefixes as their positions allow.
* It runs the model's own ``forward`` through :class:`GatedModel`, so any network that follows the
  skipping protocol works. Forward pre-hooks on the gates stop a pass at a gate (to keep its input) or
  resume one there (replacing the gate's input with a kept activation). A resumed pass runs what precedes
  the gate on a one-image stand-in batch, whose result the hook discards, with every earlier gate off.
* Memory is bounded: activations are kept only where masks part, and only while their total stays under
  ``memory_budget_bytes`` (default 1 GiB). Beyond it a subtree is recomputed from the nearest kept
  ancestor (at worst from the images), which costs time, never memory.
* Results are identical to evaluating each mask alone with the same batches and memory format: the
  same operations run on the same tensors, and :class:`EvaluationSums` adds them up in the same order.
  The engine checks this on its first batch against the plain forward (a network whose forward reads
  the image again after a gate would fail that check, with a clear error, rather than give wrong numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from edgeskip.accuracy import Evaluation, EvaluationSums
from edgeskip.data.base import ImageSet, Normalization, iterate_batches
from edgeskip.gating import GatedModel

Mask = tuple[int, ...]
DEFAULT_MEMORY_BUDGET = 1 << 30


class PrefixSharingUnsupported(RuntimeError):
    """This network's forward cannot be resumed at a gate; evaluate its masks one by one instead."""


class _Stopped(Exception):
    def __init__(self, activation: torch.Tensor) -> None:
        self.activation = activation


class PrefixSharingEngine:
    """Evaluates sets of masks of one :class:`GatedModel` over an image set, sharing common prefixes."""

    def __init__(self, gated: GatedModel, *, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 dtype: torch.dtype = torch.float32) -> None:
        if gated.gate_followers:  # what runs before gate i would depend on cfg[i]: prefixes are not shared
            raise PrefixSharingUnsupported(
                f"{type(gated.model).__name__}: {gated.gate_followers[0]} reads the bit of a later gate, so masks "
                "that share a prefix do not share its activations; its masks are evaluated one by one")
        self.gated = gated.eval()
        self.dtype = dtype  # the images are cast to the network's dtype; the logits are scored in float32
        self.num_gates = gated.num_gates
        self.memory_budget_bytes = memory_budget_bytes
        self.memory_format = memory_format
        self.peak_bytes = 0  # most bytes of kept activations at once, over all calls
        self.gate_passes = 0  # gate positions advanced, summed over batches (the work done, in gate units)
        self._resume: tuple[int, torch.Tensor] | None = None
        self._stop: int | None = None
        self._held = 0
        self._checked = False

    def _hook(self, index: int) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor] | None]:
        def pre_hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor] | None:
            if self._stop == index:
                raise _Stopped(args[0])
            if self._resume is not None and self._resume[0] == index:
                return (self._resume[1],)
            return None

        return pre_hook

    # -- one pass ----------------------------------------------------------------------------------
    def _run(self, images: torch.Tensor, mask: Mask, start: int | None, activation: torch.Tensor | None,
             stop: int | None) -> torch.Tensor:
        """From the input of gate ``start`` (``activation``; None: from ``images``) up to the input of gate
        ``stop`` (None: the logits), with the gates between set as in ``mask``."""
        first = 0 if start is None else start
        cfg = torch.tensor([0] * first + list(mask[first:]), dtype=torch.int64)
        x = images if start is None else images[:1]  # before a resumed gate, the result is replaced
        self._resume = None if start is None else (start, activation)
        self._stop = stop
        self.gate_passes += (self.num_gates if stop is None else stop) - first
        try:
            return self.gated(x, cfg)
        except _Stopped as s:
            return s.activation
        finally:
            self._resume = self._stop = None

    # -- the trie walk -----------------------------------------------------------------------------
    def _walk(self, images: torch.Tensor, masks: list[Mask], lo: int, hi: int, depth: int, start: int | None,
              activation: torch.Tensor | None, leaf: Callable[[Mask, torch.Tensor], None]) -> None:
        """Evaluate ``masks[lo:hi]`` (sorted, sharing their first ``depth`` entries), resuming at ``start``."""
        if hi - lo == 1:
            leaf(masks[lo], self._run(images, masks[lo], start, activation, None))
            return
        first, last = masks[lo], masks[hi - 1]
        part = depth
        while first[part] == last[part]:  # sorted: the range's common prefix is that of its ends
            part += 1
        size = 0
        if start is None or start < part:  # work lies between the nearest kept activation and the parting gate
            kept = self._run(images, first, start, activation, part)
            if self._held + kept.numel() * kept.element_size() <= self.memory_budget_bytes:
                size = kept.numel() * kept.element_size()
                start, activation = part, kept
                self._held += size
                self.peak_bytes = max(self.peak_bytes, self._held)
            # else over budget: the children recompute from the nearest kept ancestor
        split = next(i for i in range(lo, hi) if masks[i][part] == 1)
        self._walk(images, masks, lo, split, part + 1, start, activation, leaf)
        self._walk(images, masks, split, hi, part + 1, start, activation, leaf)
        self._held -= size

    @torch.no_grad()
    def evaluate(self, masks: Sequence[Sequence[int]], data: ImageSet, normalization: Normalization, *,
                 batch_size: int = 500, device: torch.device | str = "cpu",
                 on_batch: Callable[[int], None] | None = None) -> dict[Mask, Evaluation]:
        """Accuracy, loss and margin of every mask over ``data`` (batches as :func:`edgeskip.accuracy.evaluate`)."""
        unique = sorted({tuple(int(v) for v in m) for m in masks})
        sums = {m: EvaluationSums() for m in unique}
        if not unique:
            return {}
        # The hooks live only while the engine runs: other users of the model (latency timing) never pay for them.
        hooks = [self.gated.model.get_submodule(name).register_forward_pre_hook(self._hook(i))
                 for i, name in enumerate(self.gated.block_names)]
        try:
            for x, y in iterate_batches(data, normalization, batch_size, device=device):
                x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
                if not self._checked:
                    self._self_check(x, unique)
                self._walk(x, unique, 0, len(unique), 0, None, None,
                           lambda m, logits, y=y: sums[m].add(logits.float(), y))
                if on_batch is not None:
                    on_batch(len(y))
        finally:
            for h in hooks:
                h.remove()
        return {m: s.result() for m, s in sums.items()}

    def _self_check(self, x: torch.Tensor, masks: list[Mask]) -> None:
        """Resumed passes must equal plain ones on this network (its forward must not reuse the image)."""
        probe = x[: min(len(x), 4)]
        picks = sorted({masks[0], masks[len(masks) // 2], masks[-1]})
        got: dict[Mask, torch.Tensor] = {}
        passes = self.gate_passes
        self._walk(probe, picks, 0, len(picks), 0, None, None, got.__setitem__)
        self.gate_passes = passes  # a check, not work on the caller's images
        for m in picks:
            plain = self.gated(probe, torch.tensor(m, dtype=torch.int64))
            if not torch.equal(plain, got[m]):
                raise PrefixSharingUnsupported(
                    f"{type(self.gated.model).__name__}: resuming a forward pass at a gate changes its result (mask "
                    f"{''.join(map(str, m))}); its forward must depend on the image only through the blocks in "
                    "order, so its masks are evaluated one by one")
        self._checked = True


__all__ = ["DEFAULT_MEMORY_BUDGET", "PrefixSharingEngine", "PrefixSharingUnsupported"]
