"""In-memory image datasets, the seeded train/validation split, and batching with augmentation.

Selection (sensitivity, Pareto) uses the validation split carved out of the training data;
the test split is only reported. The paper (Korol et al., Sec. II-A.3/4) selected on the
test set; edgeskip does not, so reported test accuracy is an unbiased estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from edgeskip_runtime.errors import EdgeskipError, UsageError


class DatasetError(EdgeskipError, RuntimeError):
    """A dataset is missing, incomplete or corrupt; the message says what to provide."""


@dataclass
class ImageSet:
    """Images as uint8 ``(N, C, H, W)`` with int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DatasetError(f"images must be uint8 NCHW, got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class Normalization:
    """Per-channel mean and standard deviation on the 0..1 scale."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, images: torch.Tensor) -> Normalization:
        x = images.float().div_(255)
        return cls(x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist())

    def apply(self, images_u8: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images_u8.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images_u8.device).view(1, -1, 1, 1)
        return (images_u8.float().div_(255) - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass
class DatasetSplits:
    """Train / validation / test splits of one dataset, with what a model needs to know."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    normalization: Normalization
    classes: list[str] = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)


def split_train_val(full: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Hold out ``val_fraction`` of ``full`` with a seeded permutation."""
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction}", setting="val_fraction")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(full) * val_fraction))
    return full.subset(perm[n_val:]), full.subset(perm[:n_val])


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, vectorised."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = dx[:, None] + torch.arange(w)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def iterate_batches(
    data: ImageSet,
    normalization: Normalization,
    batch_size: int,
    *,
    shuffle: bool = False,
    augment: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised float batches ``(images, labels)`` on ``device``."""
    generator = generator or torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        images = data.images[idx]
        if augment:
            images = random_crop_flip(images, generator)
        x = normalization.apply(images.to(device, non_blocking=True))
        yield x, data.labels[idx].to(device, non_blocking=True)
