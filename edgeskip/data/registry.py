"""Dataset registry: ``register_dataset``, ``load_dataset``, ``list_datasets``.

A registered loader takes ``data_dir`` (``None`` means the dataset's default location) and
returns ``(train, test, num_classes, classes)``. Splitting, normalisation and ``limit`` are
done once, here, for every dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.registry import Registry

from edgeskip.data.base import DatasetSplits, ImageSet, Normalization, split_train_val

Loader = Callable[[Path | None], tuple[ImageSet, ImageSet, int, list[str]]]
DATASETS: Registry[Loader] = Registry("dataset")
register_dataset = DATASETS.register


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
) -> DatasetSplits:
    """Load ``name`` and split its training data into train and validation.

    ``limit`` keeps at most that many samples in each split, for quick runs. The
    normalisation is fitted on the training split only.
    """
    train_full, test, num_classes, classes = DATASETS.get(name)(Path(data_dir) if data_dir else None)
    train, val = split_train_val(train_full, val_fraction, seed)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"limit must be positive, got {limit}", setting="limit")
        train, val, test = (s.subset(slice(0, limit)) for s in (train, val, test))
    return DatasetSplits(name, train, val, test, num_classes, Normalization.fit(train.images), classes)
