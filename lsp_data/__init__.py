"""DialoGPT data: the training TSV, its feature DB (prepro) and the loaders.

Import-light on purpose (no torch): prepro's worker processes import only what they use.
The loaders (torch) are imported on first access: `from lsp_data import BucketingDataLoader`.
"""
from .db import DBError, open_db, read_chunk
from .prepro import PreproError, build_db

_LOADER_NAMES = ("BucketSampler", "BucketingDataLoader", "DistributedBucketingDataLoader",
                 "DynamicBatchingLoader", "collate")

__all__ = ["DBError", "PreproError", "build_db", "open_db", "read_chunk", *_LOADER_NAMES]


def __getattr__(name):
    if name in _LOADER_NAMES:
        from . import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'lsp_data' has no attribute {name!r}")
