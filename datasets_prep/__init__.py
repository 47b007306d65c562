"""Data sets for DDGAN: loaders selected by --dataset, the LMDB tool and the mode-coverage benchmark."""

from datasets_prep.common import DataError
from datasets_prep.loaders import add_data_flags, check_data, dataset_names, get_dataset

__all__ = ["DataError", "add_data_flags", "check_data", "dataset_names", "get_dataset"]
