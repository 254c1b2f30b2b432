"""The training TSV's turn separator: `w turn EOS w turn ...<TAB>w response`.

Here on the ground floor because reddit_extractor (which imports only lsp_io) writes it and
lsp_data reads and writes it; lsp_data.tsv re-exports it as the TSV format's owner.
"""
TURN_SEP = " EOS "
