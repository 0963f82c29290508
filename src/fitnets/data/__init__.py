"""Datasets: IDX readers, where files live and how to fetch them, in-memory batches."""

from fitnets.data.idx import read_idx, write_idx
from fitnets.data.loader import ImageData, augment, batches, load_idx_dataset, split_validation, take
from fitnets.data.sources import SOURCES, download, locate

__all__ = ["ImageData", "SOURCES", "augment", "batches", "download", "load_idx_dataset", "locate",
           "read_idx", "split_validation", "take", "write_idx"]
