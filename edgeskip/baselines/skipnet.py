"""SkipNet with feed-forward gates (Wang et al., ECCV 2018), the paper's input-dependent baseline
(Korol et al., Sec. III-A: "SkipNet ... with feed-forward gates").

The structure follows SkipNet's CIFAR code (``ucbdrive/skipnet``, ``cifar/models.py``):

* A gate after every residual block but the last reads that block's output and decides whether the
  *next* block runs; the first block always runs. A skipped block passes its input through its shortcut
  (the identity, or the downsampling shortcut of a stage's first block).
* ``ffgate1`` (SkipNet's choice for its shallower ResNets, used here for ResNet-20 to 56): max-pool 2,
  a 3x3 conv + BN + ReLU, a 3x3 conv with stride 2 + BN + ReLU, average pooling, a 1x1 conv to 2 logits.
  ``ffgate2`` (ResNet-110): one 3x3 conv with stride 2 + BN + ReLU, average pooling, the 1x1 conv.
* The decision is softmax[1] > 0.5, i.e. logit 1 > logit 0.

Unlike SkipNet's code, which computes every block and masks its output, a skipped block is never
computed where it matters: exported (``torch.compiler.is_exporting()``), each gate is a ``torch.cond``
on its own logits, so the ONNX graph and the IREE module hold data-dependent ``If`` branches and the
latency reflects each input's decisions. On a batch in eager mode the decisions differ per image, so
both paths are computed and selected per image (the same numbers an ``if`` gives, image by image).

Modes of :meth:`SkipNet.forward` (``self.mode``):

* ``"hard"`` (evaluation, export): hard decisions;
* ``"supervised"`` (SkipNet's supervised pre-training): hard decisions in the forward pass, the softmax's
  gradient in the backward pass (straight-through);
* ``"reinforce"`` (the hybrid RL stage): each decision is sampled from the gate's softmax, and
  :attr:`SkipNet.trace` keeps the actions and their log-probabilities for REINFORCE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from edgeskip.models.protocol import ProtocolError, residual_blocks

GATE_TYPES = {"ffgate1": {"maxpool": True, "convs": 2}, "ffgate2": {"maxpool": False, "convs": 1}}
MODES = ("hard", "supervised", "reinforce")


def default_gate_type(num_blocks: int) -> str:
    """SkipNet's choice by depth: FFGate-I up to its 74-layer network, FFGate-II for ResNet-110."""
    return "ffgate1" if num_blocks < 54 else "ffgate2"


class FeedForwardGate(nn.Module):
    """One SkipNet feed-forward gate: a block's output in, two logits (skip, run) out."""

    def __init__(self, channels: int, gate_type: str) -> None:
        super().__init__()
        spec = GATE_TYPES[gate_type]
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if spec["maxpool"] else []
        for i in range(spec["convs"]):
            stride = 2 if i == spec["convs"] - 1 else 1
            layers += [nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 2, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # (N, 2): logits of (skip, run)


@dataclass
class Trace:
    """What the last forward pass decided: ``runs`` (N, G) 0/1 per gate, and in ``reinforce`` mode the
    log-probability of each sampled action."""

    runs: list[torch.Tensor] = field(default_factory=list)
    log_probs: list[torch.Tensor] = field(default_factory=list)

    def run_matrix(self) -> torch.Tensor:
        return torch.stack(self.runs, 1) if self.runs else torch.zeros(0, 0)


def _shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    down = getattr(block, "downsample", None)
    return x if down is None else down(x)


STEM = ("conv1", "bn1", "relu")  # then ``maxpool`` where the network has one (torchvision's ImageNet stem)
HEAD = ("avgpool", "fc")


def _out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ProtocolError(f"SkipNet puts a convolutional gate after each block; {type(block).__name__} has no Conv2d")
    return convs[-1].out_channels  # the last one: conv2 of a BasicBlock, conv3 of a Bottleneck, or its projection


def check_skipnet_layout(base: nn.Module) -> None:
    """SkipNet runs the stem, the chain of all blocks and the head itself: it needs the torchvision ResNet layout."""
    missing = [a for a in (*STEM, *HEAD) if not isinstance(getattr(base, a, None), nn.Module)]
    if missing or callable(getattr(base, "skippable_block_names", None)):
        raise ProtocolError(
            f"SkipNet needs the torchvision ResNet layout (stem {'/'.join(STEM)}[/maxpool], stages layer1.., head "
            f"{'/'.join(HEAD)}); {type(base).__name__} "
            + (f"lacks {', '.join(missing)}" if missing else "declares skippable_block_names() instead"))


class SkipNet(nn.Module):
    """A torchvision-layout ResNet (stem ``conv1``/``bn1``/``relu``[/``maxpool``], stages ``layer1``..., head
    ``avgpool``/``fc``) with a SkipNet gate after every block but the last."""

    def __init__(self, base: nn.Module, gate_type: str | None = None) -> None:
        super().__init__()
        check_skipnet_layout(base)
        self.base = base
        self.block_names = [b.name for b in residual_blocks(base)]
        self.gate_type = gate_type or default_gate_type(len(self.block_names))
        if self.gate_type not in GATE_TYPES:
            raise ValueError(f"unknown SkipNet gate type {self.gate_type!r}; use one of {sorted(GATE_TYPES)}")
        self._blocks = [base.get_submodule(n) for n in self.block_names]  # registered under base; resolved once
        self.gates = nn.ModuleList(FeedForwardGate(_out_channels(b), self.gate_type) for b in self._blocks[:-1])
        self.mode = "hard"
        self.trace = Trace()

    @property
    def num_gates(self) -> int:
        """Gated blocks: every block but the first (SkipNet's B - 1)."""
        return len(self.gates)

    def _decide(self, logits: torch.Tensor) -> torch.Tensor:
        """0/1 per image (1: the next block runs), as a float (N,) tensor, by ``self.mode``."""
        if self.mode == "reinforce":
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            self.trace.log_probs.append(dist.log_prob(action))
            return action.float()
        hard = (logits[:, 1] > logits[:, 0]).float()
        if self.mode == "supervised":  # forward: hard; backward: the softmax's gradient (straight-through)
            soft = torch.softmax(logits, 1)[:, 1]
            return hard - soft.detach() + soft
        return hard

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; use one of {MODES}")
        base = self.base
        self.trace = Trace()
        x = base.relu(base.bn1(base.conv1(x)))
        if isinstance(getattr(base, "maxpool", None), nn.Module):
            x = base.maxpool(x)
        x = self._blocks[0](x)  # the first block always runs
        for gate, block in zip(self.gates, self._blocks[1:], strict=True):
            logits = gate(x)
            if torch.compiler.is_exporting():  # one image: a real branch on the gate's own decision
                x = torch.cond(logits[0, 1] > logits[0, 0], lambda t, b=block: b(t),
                               lambda t, b=block: _shortcut(b, t).clone(), (x,))
                continue
            run = self._decide(logits)
            self.trace.runs.append(run.detach())
            m = run.view(-1, 1, 1, 1)
            x = m * block(x) + (1 - m) * _shortcut(block, x)
        return base.fc(torch.flatten(base.avgpool(x), 1))


__all__ = ["GATE_TYPES", "MODES", "FeedForwardGate", "SkipNet", "Trace", "check_skipnet_layout", "default_gate_type"]
