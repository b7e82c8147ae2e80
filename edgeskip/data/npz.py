"""``npz:PATH``: a user's dataset as one NumPy ``.npz`` file (Korol et al., Sec. II-A.1: the framework
reads in the user's dataset).

Arrays (read with ``allow_pickle=False``, so the file cannot run code):

* ``x_train``, ``x_test``: ``uint8`` images, ``(N, H, W)`` (one channel) or ``(N, H, W, C)`` with C of
  1, 3 or 4, channels last as NumPy, Pillow and Keras hold images. ``(N, C, H, W)`` is read too where it
  cannot be mistaken: C is 1, 3 or 4 and the last axis is not.
* ``y_train``, ``y_test``: integer labels ``(N,)`` in ``0 .. K-1``.
* ``classes`` (optional): K class names (a string array); without it K is the largest label + 1 and the
  names are the numbers.

Both splits must have one image shape (checked by ``load_dataset`` for every dataset), and every class at least
one training image.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from edgeskip.data.base import DatasetError, ImageSet
from edgeskip.data.registry import register_dataset_source

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_CHANNELS = (1, 3, 4)


def _images(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if x.dtype != np.uint8:
        hint = " (scale 0..1 floats with (x * 255).round().astype(np.uint8))" if x.dtype.kind == "f" else ""
        raise DatasetError(f"{path}: {key} is {x.dtype}, expected uint8 images{hint}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in _CHANNELS:
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in _CHANNELS):
        raise DatasetError(f"{path}: {key} has shape {x.shape}, expected (N, H, W) or (N, H, W, C) with C in "
                           f"{_CHANNELS}")
    if x.shape[0] == 0:
        raise DatasetError(f"{path}: {key} holds no images")
    return torch.from_numpy(np.ascontiguousarray(x))


def _labels(y: np.ndarray, key: str, n: int, path: Path) -> torch.Tensor:
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} is {y.dtype}, expected integer class indices")
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{path}: {key} has shape {y.shape}, expected ({n},), one label per image")
    if len(y) and y.min() < 0:
        raise DatasetError(f"{path}: {key} has negative labels (smallest {int(y.min())})")
    return torch.from_numpy(y.astype(np.int64))


@register_dataset_source("npz")
def npz(path: Path) -> tuple[ImageSet, ImageSet, int, list[str]]:
    if not path.is_file():
        raise DatasetError(f"npz dataset {path} does not exist", setting="dataset")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ARRAYS if k not in f.files]
            if missing:
                raise DatasetError(f"{path} lacks the array(s) {', '.join(missing)}; an npz dataset holds "
                                   f"{', '.join(ARRAYS)} (and optionally classes)")
            arrays = {k: f[k] for k in (*ARRAYS, *(("classes",) if "classes" in f.files else ()))}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"{path} is not a readable .npz file without pickled objects ({e})") from e
    sets = []
    for split in ("train", "test"):
        images = _images(arrays[f"x_{split}"], f"x_{split}", path)
        sets.append(ImageSet(images, _labels(arrays[f"y_{split}"], f"y_{split}", len(images), path)))
    train, test = sets  # that both splits have one image shape, load_dataset checks for every dataset
    largest = int(max(train.labels.max(), test.labels.max()))
    if "classes" in arrays:
        classes = [str(c) for c in arrays["classes"].reshape(-1)]
        if largest >= len(classes):
            raise DatasetError(f"{path}: a label is {largest}, but classes names only {len(classes)} classes")
    else:
        classes = [str(i) for i in range(largest + 1)]
    counts = torch.bincount(train.labels, minlength=len(classes))
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise DatasetError(f"{path}: class(es) {', '.join(empty)} have no training images in y_train")
    return train, test, len(classes), classes
