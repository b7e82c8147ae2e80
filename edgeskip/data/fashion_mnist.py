"""Fashion-MNIST (Xiao et al. 2017), the embedded default dataset, padded to 32x32.

The four idx ``.gz`` files come from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``) or from ``--data-dir``. Images are zero-padded
from 28x28 to the CIFAR size of 32x32 that the paper's ResNets take (Sec. III-A).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from edgeskip.data.base import DatasetError, ImageSet
from edgeskip.data.registry import register_dataset

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
HOW_TO_GET = (
    "install Debian's package (apt-get install dataset-fashion-mnist) or give a data folder "
    "with the four files " + ", ".join(FILES.values())
)


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Parse one gzip'ed idx file (magic 0x0000_08_NN: unsigned bytes, NN dimensions)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path} is not a readable gzip'ed idx file ({e}); {HOW_TO_GET}", setting="data_dir") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != expected_ndim:
        raise DatasetError(f"{path} is not an idx file of {expected_ndim} dimension(s) of unsigned bytes")
    dims = struct.unpack(f">{expected_ndim}I", raw[4 : 4 + 4 * expected_ndim])
    body = raw[4 + 4 * expected_ndim :]
    if len(body) != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, body has {len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _pad_to_32(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(images.copy()).unsqueeze(1)
    pad = (32 - t.shape[-1]) // 2
    return torch.nn.functional.pad(t, (pad, pad, pad, pad))


@register_dataset("fashion-mnist")
def fashion_mnist(data_dir: Path | None) -> tuple[ImageSet, ImageSet, int, list[str]]:
    root = data_dir or DEFAULT_DIR
    missing = [f for f in FILES.values() if not (root / f).is_file()]
    if missing:
        raise DatasetError(f"Fashion-MNIST is incomplete in {root}: missing {', '.join(missing)}; {HOW_TO_GET}",
                           setting="data_dir")
    arrays = {k: read_idx(root / f, 3 if k.endswith("images") else 1) for k, f in FILES.items()}
    sets = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DatasetError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels in {root}")
        sets.append(ImageSet(_pad_to_32(images), torch.from_numpy(labels.astype(np.int64))))
    return sets[0], sets[1], 10, CLASSES
