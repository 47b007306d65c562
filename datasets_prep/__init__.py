"""Data sets for DDGAN: the table of ``--dataset`` values (registry.py), their loaders and the LMDB tool.

Importing the package is cheap (no torch, torchvision, PIL or lmdb): the loaders are imported
when a data set is checked or built.
"""

from datasets_prep.errors import DataError
from datasets_prep.registry import (
                                    DATA_SETS,
                                    add_data_flags,
                                    add_dataset_flags,
                                    check_data,
                                    dataset_names,
                                    default_ch_mult,
                                    get_dataset,
)

__all__ = ["DATA_SETS", "DataError", "add_data_flags", "add_dataset_flags", "check_data", "dataset_names",
           "default_ch_mult", "get_dataset"]
