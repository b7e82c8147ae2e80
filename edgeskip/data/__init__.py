"""Dataset registry, the datasets edgeskip ships loaders for, and the user's own data (npz:, folder:)."""

from edgeskip.data import cifar, fashion_mnist, image_folder, npz, synthetic  # noqa: F401  (registers them)
from edgeskip.data.base import DatasetError, DatasetSplits, ImageSet, Normalization
from edgeskip.data.registry import (
    DATASET_SOURCES,
    DATASETS,
    canonical_dataset_name,
    list_datasets,
    load_dataset,
    register_dataset,
    register_dataset_source,
)

__all__ = ["DATASETS", "DATASET_SOURCES", "DatasetError", "DatasetSplits", "ImageSet", "Normalization",
           "canonical_dataset_name", "list_datasets", "load_dataset", "register_dataset", "register_dataset_source"]
