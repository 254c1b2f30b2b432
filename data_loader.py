"""The original's data_loader module: bucketing train loaders over the prepro DB and the eval
loader over a raw TSV. Logic in lsp_data/loader.py."""
from lsp_data.loader import (BucketSampler, BucketingDataLoader, DistributedBucketingDataLoader,  # noqa: F401
                             DynamicBatchingLoader, collate)

__all__ = ["BucketSampler", "BucketingDataLoader", "DistributedBucketingDataLoader",
           "DynamicBatchingLoader", "collate"]
