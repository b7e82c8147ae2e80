"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), the paper's datasets (Korol et al., Sec. III-A).

They cannot be downloaded here: a user brings the standard python batches,
``cifar-10-batches-py/`` or ``cifar-100-python/``, and passes ``--data-dir`` (that folder or
its parent). The batches are pickles; they are read with an unpickler that only admits
plain containers and numpy arrays, so a doctored file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgeskip.data.base import DatasetError, ImageSet
from edgeskip.data.registry import register_dataset


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise DatasetError(f"{path} is not a readable CIFAR python batch ({e})") from e


def _locate(data_dir: Path | None, folder: str, files: list[str], name: str) -> Path:
    how = (f"{name} cannot be downloaded here: put the standard python batches ({folder}/ with "
           f"{', '.join(files)}) on this machine and name their folder")
    if data_dir is None:
        raise DatasetError(f"{name} needs a data folder; {how}", setting="data_dir")
    root = data_dir if (data_dir / files[0]).exists() or data_dir.name == folder else data_dir / folder
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DatasetError(f"{name} is incomplete in {root}: missing {', '.join(missing)}; {how}", setting="data_dir")
    return root


def _to_imageset(batches: list[dict], label_key: bytes, path: Path) -> ImageSet:
    try:
        data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    except (KeyError, ValueError) as e:
        raise DatasetError(f"CIFAR batches in {path} lack the expected 'data'/labels entries ({e})") from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"CIFAR batches in {path} have rows of {data.shape[1:]} values, expected 3072")
    return ImageSet(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels))


def _meta_names(path: Path, key: bytes, count: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(count)]
    return [n.decode() for n in _read_batch(path).get(key, [])] or [str(i) for i in range(count)]


@register_dataset("cifar10")
def cifar10(data_dir: Path | None) -> tuple[ImageSet, ImageSet, int, list[str]]:
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    root = _locate(data_dir, "cifar-10-batches-py", [*train_files, "test_batch"], "CIFAR-10")
    train = _to_imageset([_read_batch(root / f) for f in train_files], b"labels", root)
    test = _to_imageset([_read_batch(root / "test_batch")], b"labels", root)
    return train, test, 10, _meta_names(root / "batches.meta", b"label_names", 10)


@register_dataset("cifar100")
def cifar100(data_dir: Path | None) -> tuple[ImageSet, ImageSet, int, list[str]]:
    root = _locate(data_dir, "cifar-100-python", ["train", "test"], "CIFAR-100")
    train = _to_imageset([_read_batch(root / "train")], b"fine_labels", root)
    test = _to_imageset([_read_batch(root / "test")], b"fine_labels", root)
    return train, test, 100, _meta_names(root / "meta", b"fine_label_names", 100)
