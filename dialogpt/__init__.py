"""DialoGPT: the `dialogpt` command (dialogpt/cli.py). The code lives in the lsp_*, gpt2_training,
dstc, pipeline and reddit_extractor packages."""
