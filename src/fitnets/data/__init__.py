"""Datasets: IDX readers, where files live and how to fetch them, in-memory batches, streamed image folders."""

from fitnets.data.augment import augment
from fitnets.data.folder import FolderStream
from fitnets.data.idx import read_idx, write_idx
from fitnets.data.loader import ImageData, batches, load_dataset, load_idx_dataset, split_validation, take
from fitnets.data.preprocess import ZCA, Preprocess, global_contrast_normalize
from fitnets.data.sources import SOURCES, download, locate

__all__ = ["FolderStream", "ImageData", "Preprocess", "SOURCES", "ZCA", "augment", "batches", "download",
           "global_contrast_normalize", "load_dataset", "load_idx_dataset", "locate", "read_idx", "split_validation",
           "take", "write_idx"]
