"""CIFAR-style ResNets (He et al. 2016, Sec. 4.2): 6n+2 layers, BasicBlocks, 16/32/64 channels.

These are the networks of the paper's evaluation (Korol et al., Sec. III-A: ResNet-20 and
ResNet-110). Following Sec. II-A.2 and Fig. 5, every block except the first of each stage
(segment) is skippable, so B_s = B - Seg: 6 for resnet20, 51 for resnet110.

The downsampling shortcut is He et al.'s parameter-free option A (stride-2 subsampling and
zero-padded channels), as in the original CIFAR ResNets with 0.27M parameters for ResNet-20.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeskip.models.cost import MacProfile, mac_profile
from edgeskip.models.protocol import BlockRef, skippable_blocks
from edgeskip.models.registry import register_model


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (torchvision attribute names)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = PadShortcut(in_planes, planes, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with ``layers`` blocks in each of three stages.

    The stages are ``layer1``..``layer3`` (``nn.Sequential``), the torchvision layout that
    :mod:`edgeskip.models.protocol` uses to find the skippable blocks.
    """

    def __init__(self, layers: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"each stage needs at least one block, got {layers}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=False)
        self._planes = 16
        self.layer1 = self._make_stage(16, layers, stride=1)
        self.layer2 = self._make_stage(32, layers, stride=2)
        self.layer3 = self._make_stage(64, layers, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        stage = [BasicBlock(self._planes, planes, stride)]
        self._planes = planes
        stage += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def skippable_blocks(self) -> list[BlockRef]:
        """The B_s skippable blocks in execution order (every block but the first of a stage)."""
        return skippable_blocks(self)

    def mac_profile(self, image_size: int = 32) -> MacProfile:
        """MACs of the always-run part and of each skippable block, for one image."""
        return mac_profile(self, (self.in_channels, image_size, image_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _cifar_resnet(depth: int):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6

    def factory(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
        return CifarResNet(n, in_channels=in_channels, num_classes=num_classes)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"ResNet-{depth} for 32x32 images: {n} BasicBlocks per stage, B_s = {3 * (n - 1)}."
    return factory


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}")(_cifar_resnet(_depth))
