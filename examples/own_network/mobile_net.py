"""A small MobileNetV2-style network that names its skippable blocks itself (edgeskip's explicit protocol).

Its blocks live in one ``nn.Sequential`` called ``features``, not in ``layer1``, ``layer2``, ... stages, so
the default (torchvision) protocol cannot read it. Instead it defines ``skippable_block_names()``: the
qualified names of the blocks that may be skipped, in execution order. Those are exactly the inverted
residual blocks with an identity shortcut (stride 1, as many channels out as in); a block that downsamples
or widens is not listed, because skipping it would change the tensor's shape. No edgeskip imports.
"""

from __future__ import annotations

import torch
from torch import nn


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1); residual when the shape is kept (Sandler et al. 2018)."""

    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_residual = stride == 1 and inp == out
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNet(nn.Module):
    # (expansion, channels, blocks, stride of the first block) per stage, MobileNetV2's table cut down
    SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 3, 2), (4, 64, 2, 2))

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        channels = max(8, int(16 * width_mult))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU6())
        blocks: list[nn.Module] = []
        for expand, c, n, stride in self.SETTINGS:
            out = max(8, int(c * width_mult))
            for i in range(n):
                blocks.append(InvertedResidual(channels, out, stride if i == 0 else 1, expand))
                channels = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def skippable_block_names(self) -> list[str]:
        """The blocks with an identity shortcut, in execution order: edgeskip gates exactly these."""
        return [f"features.{i}" for i, block in enumerate(self.features) if block.use_residual]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


def mobile_net(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> MobileNet:
    return MobileNet(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
