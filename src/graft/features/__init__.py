"""Activations (cached): one pass of a network over a dataset, pooled features of several layers on disk,
and the input statistics of every BatchNorm layer, for the measures stage."""

from graft.features.cache import clear as clear_cache
from graft.features.cache import default_root
from graft.features.extract import POOLS, FeatureSet, extract_features

__all__ = ["POOLS", "FeatureSet", "clear_cache", "default_root", "extract_features"]
