"""Decode a file of dialogue contexts with a DialoGPT checkpoint: one reply per line.

    python decode.py --model models/medium --input test.tsv --output hyp.txt --batch_size 32
    python decode.py --model run_dir --input dstc_test.txt --output hyp.txt --preset dstc_beam --sort_keys
    python decode.py --model m --input ctx.tsv --output hyp.txt --preset topk \
        --reverse_model small_reverse.pkl --num_candidates 16 --jsonl hyp.jsonl     # MMI
    python decode.py --model m --input ctx.tsv --output hyp.txt --preset topk \
        --ranker updown.pth --num_candidates 16 --jsonl hyp.jsonl                  # DialogRPT

Input (auto-detected, or --input_format):
  dstc  key<TAB>context[<TAB>...]   every line's first column is one token (e.g. a sha224 key)
  tsv   context[<TAB>response...]   DialoGPT TSV; "0.0 "/"1.0 " turn weights are stripped as prepro does
Turns inside a context are joined by " EOS ". Output: one hypothesis per input line, in input order
(or in sorted key order with --sort_keys, the line order of the DSTC evaluator). See docs/decoding.md.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from lsp_io.atomic import atomic_file
from lsp_io.cli import UsageError, check_readable, check_writable, command
from lsp_model.generation_args import add_model_args, add_reply_args, check_model_paths, gen_config_from_args

# torch, transformers and the model code are imported in main(), after the arguments are
# parsed: --help and a bad flag answer at once instead of after seconds of imports.


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--jsonl", help="also write one JSON object per context with scores")
    p.add_argument("--input_format", choices=["auto", "dstc", "tsv"], default="auto")
    p.add_argument("--sort_keys", action="store_true", help="write in sorted key order (DSTC evaluator)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    m = add_reply_args(p)
    m.add_argument("--mmi_batch_size", type=int, default=32, help="reverse-model rows per forward pass")
    return p.parse_args(argv)


def write_outputs(args, results, order):
    """Write the output (and JSONL) atomically. `order` = output order of context indices;
    only the finished prefix is written when interrupted."""
    done = []
    for i in order:
        if i not in results:
            break
        done.append(i)
    with atomic_file(args.output, "w") as f:
        for i in done:
            f.write(results[i]["hypothesis"] + "\n")
    if args.jsonl:
        with atomic_file(args.jsonl, "w") as f:
            for i in order:
                if i in results:
                    f.write(json.dumps(results[i], ensure_ascii=False) + "\n")
    return len(done)


def setup(args):
    """(decoding config, contexts, (model, tokenizer, eos, vocab), MMI and/or ranker reranker or None)."""
    from lsp_data.contexts import read_contexts
    from lsp_model.decoding import candidates_config, default_device, load_decoder, load_reranker
    cfg = gen_config_from_args(args)
    contexts, fmt = read_contexts(args.input, args.input_format)
    if args.sort_keys and fmt != "dstc":
        raise ValueError(f"{args.input}: --sort_keys needs keys (DSTC format), but the input is {fmt}")
    device = args.device or default_device()
    model, tok, eos, vocab = load_decoder(args.model, args.tokenizer, args.config, device)
    reverse = None
    if args.reverse_model or args.ranker:
        cfg = candidates_config(cfg, args.num_candidates)
        if cfg is None:
            raise ValueError(("MMI" if args.reverse_model else "--ranker") + " needs several candidates: use "
                             "sampling (--do_sample / --preset topk) or beam search")
    if args.reverse_model:
        reverse = load_reranker(args.reverse_model, args.reverse_tokenizer, tok, device, args.mmi_lambda,
                                args.mmi_batch_size)
    if args.ranker:
        from lsp_rank.rerank import load_ranker_reranker
        reverse = load_ranker_reranker(args, tok, device, mmi=reverse)
    max_ctx = model.config.n_positions - cfg.max_new_tokens
    if max_ctx < 1:
        raise ValueError(f"max_new_tokens {cfg.max_new_tokens} leaves no room for a context in "
                         f"n_positions {model.config.n_positions}")
    return cfg, contexts, (model, tok, eos, vocab), reverse


def encode_all(args, contexts, tok, eos, max_ctx, n_positions):
    """Token ids of every context, cut from the left to max_ctx; (ids, cut flags)."""
    from lsp_model.chat import encode_context, fit_context
    ids, flags = [], []
    for c in contexts:
        x, was_cut = fit_context(encode_context(tok, c.turns, eos), max_ctx)
        if was_cut and not any(flags):
            print(f"note: {args.input}:{c.line}: context longer than {max_ctx} tokens (n_positions "
                  f"{n_positions} - max_new_tokens {n_positions - max_ctx}); cut from the left "
                  "(further cuts are counted)", file=sys.stderr)
        flags.append(was_cut)
        ids.append(x)
    return ids, flags


# Scores a reranked candidate carries into --jsonl (MMI's, then the ranker's: lsp_rank.rerank).
CANDIDATE_SCORES = ("logprob", "reverse_logprob", "mmi_score", "ranker_score", "ranker_scores", "rank_score")


def result_row(tok, context, hs, was_cut, reranked: bool) -> dict:
    """The output record of one context from its hypotheses, best first."""
    from lsp_model.chat import clean_hypothesis
    from lsp_model.tokenizer import decode
    best = hs[0]
    row = {"line": context.line, "key": context.key, "context": context.turns,
           "hypothesis": clean_hypothesis(decode(tok, best["ids"])),
           "n_tokens": len(best["ids"]), "logprob": best["logprob"], "score": best["score"],
           "finished": best["finished"], "context_cut": was_cut}
    if reranked:
        row |= {k: best[k] for k in ("mmi_score", "ranker_score", "rank_score") if k in best}
        row["candidates"] = [{"text": clean_hypothesis(decode(tok, h["ids"]))} |
                             {k: h[k] for k in CANDIDATE_SCORES if k in h} for h in hs]
    return row


@command("decode.py")
def main(argv=None) -> int:
    args = parse_args(argv)
    # before torch: a missing model or input, or an output that cannot be written, is one line at once
    check_model_paths(args)
    check_readable(args.input)
    check_writable(args.output, args.jsonl)
    from lsp_io.cpu import use_huge_pages
    use_huge_pages()  # before torch
    from tqdm import tqdm

    from lsp_model.checkpoint import CheckpointError
    from lsp_model.generate import batch_order, generate
    from lsp_model.tokenizer import TokenizerNotFound, encode_batch
    try:
        cfg, contexts, (model, tok, eos, vocab), reverse = setup(args)
    except (ValueError, OSError, CheckpointError, TokenizerNotFound) as e:
        raise UsageError(str(e)) from None  # one line naming the script (lsp_io.cli)
    max_ctx = model.config.n_positions - cfg.max_new_tokens
    ids, flags = encode_all(args, contexts, tok, eos, max_ctx, model.config.n_positions)
    order = list(range(len(contexts)))
    if args.sort_keys:
        order.sort(key=lambda i: contexts[i].key)
    results: dict[int, dict] = {}
    bar = tqdm(total=len(contexts), desc="decoding", unit="ctx", disable=args.quiet, file=sys.stderr)
    try:
        for batch in batch_order([len(ids[i]) for i in order], args.batch_size):
            idx = [order[j] for j in batch]
            hyps = generate(model, [ids[i] for i in idx], cfg, eos, vocab, indices=idx)
            if reverse is not None:
                hyps = reverse([encode_batch(tok, contexts[i].turns) for i in idx], hyps)
            for i, hs in zip(idx, hyps):
                results[i] = result_row(tok, contexts[i], hs, flags[i], reverse is not None)
            bar.update(len(idx))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the write short
        bar.close()
        n = write_outputs(args, results, order)
        print(f"\ninterrupted: {len(results)} of {len(contexts)} contexts finished; wrote the first {n} "
              f"hypotheses (in output order) to {args.output}" + (f" and all finished ones to {args.jsonl}"
                                                                   if args.jsonl else ""), file=sys.stderr, flush=True)
        return 130
    bar.close()
    write_outputs(args, results, order)
    if any(flags):
        print(f"note: {sum(flags)} of {len(contexts)} contexts were cut from the left to {max_ctx} tokens",
              file=sys.stderr)
    print(f"wrote {len(contexts)} hypotheses to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
