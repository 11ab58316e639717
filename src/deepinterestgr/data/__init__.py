"""Data layer: source formats -> items and sequences tables -> leave-last-out splits."""

from deepinterestgr.data.formats import FORMATS, load_format
from deepinterestgr.data.kcore import k_core
from deepinterestgr.data.prepare import load_sample, prepare, sample_path
from deepinterestgr.data.prepared import PreparedData
from deepinterestgr.data.schema import ITEM_FEATURES, SEQUENCE_FEATURES
from deepinterestgr.data.splits import leave_last_out
from deepinterestgr.data.stats import DataStats, compute_stats

__all__ = [
    "FORMATS",
    "ITEM_FEATURES",
    "SEQUENCE_FEATURES",
    "DataStats",
    "PreparedData",
    "compute_stats",
    "k_core",
    "leave_last_out",
    "load_format",
    "load_sample",
    "prepare",
    "sample_path",
]
