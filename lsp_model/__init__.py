"""DialoGPT's model layer: tokenizer, GPT-2 LM with the DialoGPT loss, checkpoint formats.

Import the submodule you need (`from lsp_model.checkpoint import load_model`): the package
itself imports nothing, so `lsp_model.tokenizer` (prepro, its workers) does not pay for torch.
"""
