"""What the user has: dataset descriptions (and, in later stages, loaders and transforms)."""

from graft.data.spec import DatasetSpec, describe_dataset, load_arrays

__all__ = ["DatasetSpec", "describe_dataset", "load_arrays"]
