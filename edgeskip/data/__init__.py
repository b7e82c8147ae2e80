"""Dataset registry and the datasets edgeskip ships loaders for."""

from edgeskip.data import cifar, fashion_mnist, synthetic  # noqa: F401  (registers the datasets)
from edgeskip.data.base import DatasetError, DatasetSplits, ImageSet, Normalization
from edgeskip.data.registry import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = ["DATASETS", "DatasetError", "DatasetSplits", "ImageSet", "Normalization", "list_datasets",
           "load_dataset", "register_dataset"]
