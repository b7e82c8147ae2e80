"""Dataset registry: ``register_dataset``, ``load_dataset``, ``list_datasets``, and the user's own data.

A registered loader takes ``data_dir`` (``None`` means the dataset's default location) and
returns ``(train, test, num_classes, classes)``. A *source* (``register_dataset_source``) reads a
user's data from a path given in the name, ``SCHEME:PATH`` (``npz:data.npz``, ``folder:images/``;
Korol et al., Sec. II-A.1: the framework reads in "the user CNN and the dataset"). Splitting,
normalisation and ``limit`` are done once, here, for every dataset and source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeskip_runtime.errors import UsageError
from edgeskip_runtime.registry import Registry

from edgeskip.data.base import DatasetError, DatasetSplits, ImageSet, Normalization, split_train_val

Loader = Callable[[Path | None], tuple[ImageSet, ImageSet, int, list[str]]]
DATASETS: Registry[Loader] = Registry("dataset")
register_dataset = DATASETS.register
SourceLoader = Callable[[Path], tuple[ImageSet, ImageSet, int, list[str]]]
DATASET_SOURCES: Registry[SourceLoader] = Registry("dataset source")
register_dataset_source = DATASET_SOURCES.register


def list_datasets() -> list[str]:
    """Registered datasets, then the user-data forms (``npz:PATH``, ``folder:PATH``)."""
    return [*DATASETS.names(), *(f"{scheme}:PATH" for scheme in DATASET_SOURCES.names())]


def _split_source(name: str) -> tuple[str, Path] | None:
    scheme, sep, path = name.partition(":")
    if not sep:
        return None
    DATASET_SOURCES.get(scheme)  # an unknown scheme: the error lists the known ones
    if not path:
        raise UsageError(f"dataset {name!r} names no path after {scheme}:", setting="dataset")
    return scheme, Path(path).expanduser()


def canonical_dataset_name(name: str) -> str:
    """``name`` as a checkpoint records it: a source's path made absolute, so later commands find the data
    from any working directory; a registered name is checked and kept."""
    source = _split_source(name)
    if source is None:
        DATASETS.get(name)
        return name
    scheme, path = source
    return f"{scheme}:{path.resolve()}"


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
    source = _split_source(name)
    if source is not None:
        scheme, path = source
        train_full, test, num_classes, classes = DATASET_SOURCES.get(scheme)(path)
    else:
        train_full, test, num_classes, classes = DATASETS.get(name)(Path(data_dir) if data_dir else None)
    if test.images.shape[1:] != train_full.images.shape[1:]:
        raise DatasetError(f"dataset {name}: test images are {tuple(test.images.shape[1:])}, training images "
                           f"{tuple(train_full.images.shape[1:])} (C, H, W); both splits need one shape")
    train, val = split_train_val(train_full, val_fraction, seed)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"limit must be positive, got {limit}", setting="limit")
        train, val, test = (s.subset(slice(0, limit)) for s in (train, val, test))
    return DatasetSplits(name, train, val, test, num_classes, Normalization.fit(train.images), classes)
