"""Networks as a user writes them, outside the edgeskip package and with no edgeskip imports.

The tests build them directly, and the command-line tests name them as ``user_networks:user_resnet`` and
``user_networks:explicit_net`` (this folder on PYTHONPATH), as a user names their own network.
"""

from __future__ import annotations

import torch
from torch import nn


class UserBlock(nn.Module):
    """A user's residual block in torchvision's BasicBlock style (conv1/bn1/conv2/bn2/downsample)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + identity)


class UserBottleneck(nn.Module):
    """A torchvision-style Bottleneck (1x1, 3x3, 1x1) with an identity shortcut when shapes match."""

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.relu(self.bn3(self.conv3(out)) + identity)


class UserResNet(nn.Module):
    """A user's network in the torchvision layout: stem, layer1..layer3, head."""

    def __init__(self, block: str = "basic", in_channels: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, 1, 1), nn.ReLU())
        if block == "basic":
            self.layer1 = nn.Sequential(UserBlock(8, 8), UserBlock(8, 8), UserBlock(8, 8))
            self.layer2 = nn.Sequential(UserBlock(8, 16, 2), UserBlock(16, 16))
            self.layer3 = nn.Sequential(UserBlock(16, 32, 2), UserBlock(32, 32), UserBlock(32, 32))
            out = 32
        else:
            self.layer1 = nn.Sequential(UserBottleneck(8, 4), UserBottleneck(16, 4))
            self.layer2 = nn.Sequential(UserBottleneck(16, 8, 2), UserBottleneck(32, 8), UserBottleneck(32, 8))
            out = 32
        self.head = nn.Linear(out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        if hasattr(self, "layer3"):
            x = self.layer3(x)
        return self.head(x.mean(dim=(2, 3)))


class ExplicitNet(nn.Module):
    """A network that names its skippable blocks itself (the explicit protocol)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, 1, 1)
        self.blocks = nn.ModuleList([UserBlock(8, 8) for _ in range(4)])
        self.head = nn.Linear(8, num_classes)

    def skippable_block_names(self) -> list[str]:
        return [f"blocks.{i}" for i in (1, 2, 3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean(dim=(2, 3)))


def user_resnet(block: str = "basic", in_channels: int = 3, num_classes: int = 5) -> UserResNet:
    """The torchvision-layout protocol: stages layer1, layer2, ... of residual blocks."""
    return UserResNet(block, in_channels=in_channels, num_classes=num_classes)


def explicit_net(in_channels: int = 3, num_classes: int = 3) -> ExplicitNet:
    """The explicit protocol: skippable_block_names()."""
    return ExplicitNet(in_channels=in_channels, num_classes=num_classes)
