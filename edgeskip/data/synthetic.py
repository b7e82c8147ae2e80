"""``synthetic``: a small generated dataset FOR TESTS ONLY, not a benchmark.

Ten classes of 1x32x32 images; each class is a fixed coarse random pattern plus noise, so a
network learns it in a few steps. It lets tests train, rank and compile without data files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeskip.data.base import ImageSet
from edgeskip.data.registry import register_dataset

NUM_CLASSES = 10


def make_synthetic(n: int, seed: int, channels: int = 1) -> ImageSet:
    # Coarse 4x4 patterns upsampled to 32x32, so random-crop augmentation keeps them recognisable.
    # Mirror-symmetric, so horizontal-flip augmentation keeps them too.
    half = torch.rand(NUM_CLASSES, channels, 4, 2, generator=torch.Generator().manual_seed(1234)) * 220
    coarse = torch.cat([half, half.flip(-1)], dim=-1)
    patterns = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="nearest")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    noise = torch.randn(n, channels, 32, 32, generator=g) * 30
    images = (patterns[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageSet(images, labels)


@register_dataset("synthetic")
def synthetic(data_dir: Path | None) -> tuple[ImageSet, ImageSet, int, list[str]]:
    """Tests only: 2000 train and 500 test images of class patterns plus noise."""
    return make_synthetic(2000, seed=0), make_synthetic(500, seed=1), NUM_CLASSES, [
        f"synthetic-{i}" for i in range(NUM_CLASSES)]
