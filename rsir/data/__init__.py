"""Data: readers and writers, the compact sequence store, splits, batching, synthetic data."""

from .dataset import Dataset, from_dataframe, from_interactions, kcore_mask
from .readers import FORMATS, read_dataset
from .sequences import REAL, Sequences
from .split import EvalSet, LeaveOneOut, leave_one_out
from .synthetic import make_synthetic
from .writers import write_dataset, write_sequences

__all__ = [
    "Dataset",
    "EvalSet",
    "FORMATS",
    "LeaveOneOut",
    "REAL",
    "Sequences",
    "from_dataframe",
    "from_interactions",
    "kcore_mask",
    "leave_one_out",
    "make_synthetic",
    "read_dataset",
    "write_dataset",
    "write_sequences",
]
