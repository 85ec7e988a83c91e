"""What the user has: every source read into one shape of data, checked before any model runs."""

from graft.data.arrays import channels_first, normalize_series, pad_sequences, windows
from graft.data.audio import AudioFeatures
from graft.data.build import describe_data, load_data
from graft.data.dataset import ArrayDataset, Data, ImageFileDataset
from graft.data.options import DataOptions
from graft.data.problems import Problem
from graft.data.spec import DatasetSpec

__all__ = ["ArrayDataset", "AudioFeatures", "Data", "DataOptions", "DatasetSpec", "ImageFileDataset", "Problem",
           "channels_first", "describe_data", "load_data", "normalize_series", "pad_sequences", "windows"]
