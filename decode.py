"""Decode a file of dialogue contexts with a DialoGPT checkpoint: one reply per line.

    python decode.py --model models/medium --input test.tsv --output hyp.txt --batch_size 32
    python decode.py --model run_dir --input dstc_test.txt --output hyp.txt --preset dstc_beam --sort_keys
    python decode.py --model m --input ctx.tsv --output hyp.txt --preset topk \
        --reverse_model small_reverse.pkl --num_candidates 16 --jsonl hyp.jsonl     # MMI

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

import torch
from tqdm import tqdm

from lsp_io.atomic import atomic_file
from lsp_model.chat import clean_hypothesis, encode_context, fit_context, read_contexts
from lsp_model.checkpoint import CheckpointError, load_model
from lsp_model.generate import add_generation_args, batch_order, check_vocab, gen_config_from_args, generate
from lsp_model.mmi import rerank_batch
from lsp_model.tokenizer import TokenizerNotFound, decode, encode_batch, eos_id, load_tokenizer, tokenizer_identity


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint: .pkl, transformers dir, run folder")
    p.add_argument("--tokenizer", help="tokenizer dir or tokenizer.json (default: the model's folder, else GPT-2)")
    p.add_argument("--config", help="config.json overriding the checkpoint's")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--jsonl", help="also write one JSON object per context with scores")
    p.add_argument("--input_format", choices=["auto", "dstc", "tsv"], default="auto")
    p.add_argument("--sort_keys", action="store_true", help="write in sorted key order (DSTC evaluator)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    m = p.add_argument_group("MMI reranking")
    m.add_argument("--reverse_model", help="reverse (prepro --reverse) checkpoint: rerank candidates by it")
    m.add_argument("--reverse_tokenizer", help="default: the reverse model's folder, else --tokenizer")
    m.add_argument("--num_candidates", type=int, default=10, help="samples per context when sampling")
    m.add_argument("--mmi_lambda", type=float, default=0.0, help="weight of log P(cand|src) in the MMI score")
    m.add_argument("--mmi_batch_size", type=int, default=32, help="reverse-model rows per forward pass")
    add_generation_args(p)
    return p.parse_args(argv)


def load_decoder(model_path, tokenizer_path=None, config=None, device="cpu"):
    """(model in eval mode, tokenizer, eos id, usable vocab size), vocabularies checked."""
    model = load_model(model_path, config=config).to(device).eval()
    tok = load_tokenizer(tokenizer_path or model_path)
    vocab = check_vocab(model, tok, source=f"{model_path} with tokenizer {tokenizer_path or model_path}")
    return model, tok, eos_id(tok), vocab


def mmi_setup(args, tok, cfg):
    """The reverse model, its EOS, an id converter, and the generation config drawing candidates."""
    if cfg.num_beams > 1:
        cfg.num_return_sequences = cfg.num_beams
    elif cfg.do_sample:
        cfg.num_return_sequences = args.num_candidates
    else:
        raise ValueError("MMI needs several candidates: use sampling (--do_sample / --preset topk) or beam search")
    rev, rtok, reos, _ = load_decoder(args.reverse_model, args.reverse_tokenizer or args.reverse_model, None, args.device)
    if tokenizer_identity(rtok) == tokenizer_identity(tok):
        conv = None
    else:  # a reverse model with another vocabulary: go through text
        def conv(ids):
            return encode_batch(rtok, [decode(tok, ids)])[0]
    return rev, reos, conv


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


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = gen_config_from_args(args)
        contexts, fmt = read_contexts(args.input, args.input_format)
        if args.sort_keys and fmt != "dstc":
            raise ValueError(f"{args.input}: --sort_keys needs keys (DSTC format), but the input is {fmt}")
        model, tok, eos, vocab = load_decoder(args.model, args.tokenizer, args.config, args.device)
        reverse = mmi_setup(args, tok, cfg) if args.reverse_model else None
    except (ValueError, OSError, CheckpointError, TokenizerNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    max_ctx = model.config.n_positions - cfg.max_new_tokens
    if max_ctx < 1:
        print(f"error: max_new_tokens {cfg.max_new_tokens} leaves no room for a context in "
              f"n_positions {model.config.n_positions}", file=sys.stderr)
        return 2
    ids, cut, flags = [], 0, []
    for c in contexts:
        x, was_cut = fit_context(encode_context(tok, c.turns, eos), max_ctx)
        if was_cut and cut == 0:
            print(f"note: {args.input}:{c.line}: context longer than {max_ctx} tokens (n_positions "
                  f"{model.config.n_positions} - max_new_tokens {cfg.max_new_tokens}); cut from the left "
                  "(further cuts are counted)", file=sys.stderr)
        cut += was_cut
        flags.append(was_cut)
        ids.append(x)
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
                rev, reos, conv = reverse
                turns = [encode_batch(tok, contexts[i].turns) for i in idx]
                hyps = rerank_batch(rev, turns, hyps, reos, args.mmi_lambda, args.mmi_batch_size, conv)
            for i, hs in zip(idx, hyps):
                best = hs[0]
                results[i] = {"line": contexts[i].line, "key": contexts[i].key, "context": contexts[i].turns,
                              "hypothesis": clean_hypothesis(decode(tok, best["ids"])),
                              "n_tokens": len(best["ids"]), "logprob": best["logprob"], "score": best["score"],
                              "finished": best["finished"], "context_cut": flags[i]}
                if reverse is not None:
                    results[i]["mmi_score"] = best["mmi_score"]
                    results[i]["candidates"] = [{"text": clean_hypothesis(decode(tok, h["ids"])), "logprob": h["logprob"],
                                                 "reverse_logprob": h["reverse_logprob"], "mmi_score": h["mmi_score"]}
                                                for h in hs]
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
    if cut:
        print(f"note: {cut} of {len(contexts)} contexts were cut from the left to {max_ctx} tokens", file=sys.stderr)
    print(f"wrote {len(contexts)} hypotheses to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
