"""Datasets: the registry, splits, augmentation, and clear errors for missing or corrupt files."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeskip.data import DatasetError, list_datasets, load_dataset
from edgeskip.data.base import random_crop_flip
from edgeskip.data.fashion_mnist import DEFAULT_DIR, FILES

HAVE_FMNIST = all((DEFAULT_DIR / f).is_file() for f in FILES.values())


def write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root: Path, n_train: int = 50, n_test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    write_idx(root / FILES["train_images"], rng.integers(0, 255, (n_train, 28, 28)))
    write_idx(root / FILES["train_labels"], rng.integers(0, 10, (n_train,)))
    write_idx(root / FILES["test_images"], rng.integers(0, 255, (n_test, 28, 28)))
    write_idx(root / FILES["test_labels"], rng.integers(0, 10, (n_test,)))
    return root


def test_registry_has_the_required_datasets() -> None:
    assert {"fashion-mnist", "cifar10", "cifar100", "synthetic"} <= set(list_datasets())


def test_fashion_mnist_from_data_dir_is_padded_and_split(tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist", fake_fashion_mnist(tmp_path), val_fraction=0.1, seed=3)
    assert data.image_shape == (1, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 20)
    assert data.train.images[:, :, :2].sum() == 0  # zero padding 28 -> 32


def test_split_is_seeded_and_disjoint() -> None:
    a = load_dataset("synthetic", seed=1)
    b = load_dataset("synthetic", seed=1)
    c = load_dataset("synthetic", seed=2)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    assert len(a.val) == 200 and len(a.train) == 1800
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.images)


def test_limit_caps_every_split() -> None:
    data = load_dataset("synthetic", limit=17)
    assert (len(data.train), len(data.val), len(data.test)) == (17, 17, 17)


def test_missing_fashion_mnist_names_files_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


def test_truncated_idx_is_reported(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path)
    with gzip.open(tmp_path / FILES["train_images"]) as f:
        raw = f.read()
    with gzip.open(tmp_path / FILES["train_images"], "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion-mnist", tmp_path)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path)
    (tmp_path / FILES["test_labels"]).write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not a readable"):
        load_dataset("fashion-mnist", tmp_path)


def _cifar10(root: Path, n: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def test_cifar10_standard_batches(tmp_path: Path) -> None:
    data = load_dataset("cifar10", _cifar10(tmp_path))
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.classes[3] == "c3"


def test_cifar100_standard_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        batch = {b"data": rng.integers(0, 255, (30, 3072), dtype=np.uint8),
                 b"fine_labels": list(rng.integers(0, 100, 30))}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_dataset("cifar100", folder)
    assert data.num_classes == 100 and len(data.test) == 30


def test_cifar_missing_and_malicious_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="needs a data folder") as missing:
        load_dataset("cifar10")
    assert missing.value.setting == "data_dir"  # the CLI names its --data-dir
    with pytest.raises(DatasetError, match=r"missing data_batch_1.*test_batch"):
        load_dataset("cifar10", tmp_path)
    _cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DatasetError, match=r"refusing to load builtins\.print"):
        load_dataset("cifar10", tmp_path)


def test_augmentation_crops_and_flips_per_sample() -> None:
    images = torch.arange(2 * 1 * 32 * 32, dtype=torch.int64).reshape(2, 1, 32, 32).to(torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)


@pytest.mark.skipif(not HAVE_FMNIST, reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_sizes() -> None:
    data = load_dataset("fashion-mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.num_classes == 10 and data.classes[0] == "T-shirt/top"
