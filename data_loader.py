"""The original's data_loader module: bucketing train loaders over the prepro DB and the eval
loader over a raw TSV. A library, not a command: LSP_train.py uses it. Logic in lsp_data/loader.py.

    from data_loader import BucketingDataLoader, DynamicBatchingLoader
    train = BucketingDataLoader("data/train.128len.db", batch_size=16, max_seq_len=128)
    valid = DynamicBatchingLoader("data/dummy_data.tsv", tokenizer, normalize_data=True,
                                  batch_size=16, max_seq_length=128)
See docs/data.md.
"""
_LOADERS = ("BucketSampler", "BucketingDataLoader", "DistributedBucketingDataLoader", "DynamicBatchingLoader",
            "collate")
__all__ = list(_LOADERS)


def __getattr__(name):
    # loaded on first use, so running this file (or --help) does not import torch
    if name in _LOADERS:
        from lsp_data import loader
        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    import argparse
    import sys

    from lsp_io.cli import command

    @command("data_loader.py")
    def main(argv=None) -> int:
        argparse.ArgumentParser(prog="data_loader.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
        print(__doc__.strip())
        return 0

    sys.exit(main())
