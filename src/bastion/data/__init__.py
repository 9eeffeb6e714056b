"""Built-in datasets and loaders for the user's own data."""

from bastion.data.datasets import BUILTIN_DATASETS, Dataset, load_data, load_dataset

__all__ = ["BUILTIN_DATASETS", "Dataset", "load_data", "load_dataset"]
