"""Smoke check: build a tiny DialoGPT, tokenize two dialogues as training does, score them.

    python -m lsp_model.smoke
"""
import sys

import torch

from lsp_io.cli import command

from .model import build_model, forward_loss, make_config
from .tokenizer import encode, eos_id, load_tokenizer


@command("python -m lsp_model.smoke")
def main(argv=None) -> None:
    torch.manual_seed(0)
    tok = load_tokenizer()
    eos = eos_id(tok)
    dialogues = [["Does money buy happiness?", "Depends how much money you spend on it."],
                 ["What is the best way to buy happiness?", "You just have to be a millionaire by your early 20s."]]
    rows = []
    for ctx, resp in dialogues:
        c, r = encode(tok, ctx), encode(tok, resp)
        rows.append((c + [eos] + r, [-1] * len(c) + r + [eos]))  # labels pre-shifted, as prepro writes them
    T = max(len(i) for i, _ in rows)
    ids = torch.tensor([i + [0] * (T - len(i)) for i, _ in rows])
    labels = torch.tensor([l + [-1] * (T - len(l)) for _, l in rows])
    model = build_model(make_config(n_layer=2, n_embd=64, n_head=4, n_positions=128)).eval()
    with torch.no_grad():
        loss, ppl = forward_loss(model, ids, torch.arange(T).expand_as(ids), None, labels)
    print(f"tiny DialoGPT ({sum(p.numel() for p in model.parameters()):,} params) scored a batch of "
          f"{len(rows)} dialogues: loss {loss.item():.4f}, ppl {ppl.item():.1f} (untrained: ~ln 50257 = 10.8)")


if __name__ == "__main__":
    sys.exit(main())
