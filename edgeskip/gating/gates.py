"""Weightless skip gates and the gated network, gCNN (Korol et al., Sec. II-A.2, Step 2 of Fig. 3).

``GatedModel(model)`` puts a :class:`SkipGate` in front of every skippable block and takes
``(image, cfg)``: gate ``i`` runs its block when ``cfg[i] == 1`` and passes its input through
when ``cfg[i] == 0``. The gates have no weights, so every configuration shares one set of
parameters and switching costs nothing.

In eager mode a gate is a Python ``if`` (the skipped block is not computed). While being
exported (``torch.compiler.is_exporting()``) it is ``torch.cond``, which becomes one ONNX
``If`` per gate and later one ``scf.if`` in IREE: a branch not taken, not a multiply by zero.

A gate follower (:class:`edgeskip.models.protocol.GateFollower`) is a module *outside* a gated block
whose computation also depends on that gate's bit, such as the skip-aware batch norm of a Gated Depth
network's base sub-path (:mod:`edgeskip.models.gated_depth`). ``GatedModel`` binds each follower to its
gate's cfg entry, so the gate and its followers always read the same bit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeskip.gating.skip_config import check_cfg_tensor
from edgeskip.models.protocol import GateFollower, replace_module, skippable_blocks


class _GateInputs:
    """The cfg of the forward call in flight, shared by the gates of one model (not thread-safe)."""

    cfg: torch.Tensor | None = None


BOUNDARY_LAYOUTS = ("nchw", "nhwc")
_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


class SkipGate(nn.Module):
    """Runs ``block`` iff entry ``index`` of the current cfg is non-zero.

    ``boundary_layout`` is the layout of the exported ``torch.cond``'s operand and result: ``nchw`` (the
    model's own), or ``nhwc``, with the transposes inside each branch, which is what the
    ``channels-last-gate-boundaries`` pass asks for on the torch-mlir front end (see that pass). Eager
    execution is the same either way."""

    def __init__(self, block: nn.Module, index: int, inputs: _GateInputs) -> None:
        super().__init__()
        self.block = block
        self.index = index
        self._inputs = inputs
        self.boundary_layout = "nchw"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self._inputs.cfg
        if cfg is None:
            raise RuntimeError("SkipGate called outside GatedModel.forward(image, cfg)")
        if torch.compiler.is_exporting():
            if self.boundary_layout == "nhwc" and x.dim() == 4:
                y = torch.cond(cfg[self.index] != 0,
                               lambda t: self.block(t.permute(*_TO_NCHW)).permute(*_TO_NHWC), lambda t: t.clone(),
                               (x.permute(*_TO_NHWC),))
                return y.permute(*_TO_NCHW)
            return torch.cond(cfg[self.index] != 0, lambda t: self.block(t), lambda t: t.clone(), (x,))
        return self.block(x) if bool(cfg[self.index]) else x

    def extra_repr(self) -> str:
        return f"index={self.index}"


class GatedModel(nn.Module):
    """The gCNN: ``forward(image, cfg)`` with one gate per skippable block.

    The wrapped network is a deep copy unless ``inplace=True``; the original is untouched.
    """

    def __init__(self, model: nn.Module, *, inplace: bool = False) -> None:
        super().__init__()
        model = model if inplace else copy.deepcopy(model)
        blocks = skippable_blocks(model)
        self._inputs = _GateInputs()
        self.block_names = [b.name for b in blocks]
        for i, b in enumerate(blocks):
            replace_module(model, b.name, SkipGate(b.module, i, self._inputs))
        self.gate_followers: list[str] = []
        for name, m in model.named_modules():
            if isinstance(m, GateFollower):
                if m.follows not in self.block_names:
                    raise ValueError(f"{name} follows {m.follows!r}, which is not a skippable block")
                m.bind_gate(self._inputs, self.block_names.index(m.follows))
                self.gate_followers.append(name)
        self.model = model

    @property
    def num_gates(self) -> int:
        """B_s, the length of the skip-configuration array."""
        return len(self.block_names)

    def set_gate_boundary_layout(self, layout: str) -> int:
        """Export every gate's ``torch.cond`` with ``layout`` at its boundary; returns how many gates."""
        if layout not in BOUNDARY_LAYOUTS:
            raise ValueError(f"unknown gate boundary layout {layout!r}; use one of {', '.join(BOUNDARY_LAYOUTS)}")
        gates = [m for m in self.model.modules() if isinstance(m, SkipGate)]
        for gate in gates:
            gate.boundary_layout = layout
        return len(gates)

    def forward(self, image: torch.Tensor, cfg: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_exporting():
            check_cfg_tensor(cfg, self.num_gates)
        self._inputs.cfg = cfg
        try:
            return self.model(image)
        finally:
            self._inputs.cfg = None
