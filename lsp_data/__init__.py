"""DialoGPT data: the training TSV, its feature DB (prepro) and the loaders.

Import the submodule you need (`from lsp_data.db import open_db`): the package itself imports
nothing, so prepro's worker processes import only what they use (no torch).
"""
