"""The golden vectors bundled in tests/golden/: how the copy was packed from the full set, and
how the tests' view of it is rebuilt (unpacked) at the start of a session.

The full set (produced by running the original DialoGPT code; tests/golden/README.md) is 62 MB.
The bundled copy keeps exactly the files the tests read, and stores
  * data files over 4 kB xz-compressed, as NAME.xz (unpack restores NAME byte for byte);
  * no file that can be derived from another one: the fp16 and `module.` copies of init.pkl and
    the uncompressed Reddit dumps are rebuilt by `unpack` the way the original's were made;
  * of model/outputs.pt's [2, 32, 50257] logits, every 32nd vocabulary column only;
  * of dialogrpt/checkpoints.tar.xz, one checkpoints.trimmed.pt: per checkpoint its tensors
    without the `attn.bias` buffers (rebuilt), with only the word-embedding rows of tokens that
    cases.jsonl uses (and of a .pkl's LM head, only the EOS row, its score head);
    `dialogrpt_checkpoints` rebuilds the files with zeros in the rows left out, which no golden
    score reads (only the ranker tests pay for it, not every session's unpack).

    python tests/golden_store.py pack FULL_SET_ROOT tests      # FULL_SET_ROOT holds golden/, data/

tests/golden/README.md (hand-written; the full set's own README follows it verbatim) and
tests/data/dstc7-humaneval/README.md are not packed.
"""
from __future__ import annotations

import lzma
import shutil
import sys
from pathlib import Path

XZ_OVER = 4096             # bytes: larger data files are stored compressed
LOGITS_STRIDE = 32         # model/outputs.pt keeps logits_first2[..., ::32]

# What the tests read, relative to the set's root (a folder holding golden/ and data/).
KEEP = [
    "golden/eval/README.md", "golden/eval/EDGE_CASES.md",
    "golden/eval/dstc7-demo/*", "golden/eval/edge_*/*",
    "golden/eval/synth200/clean_str.jsonl", "golden/eval/synth200/expected.json",
    "golden/eval/synth200/hyp.txt", "golden/eval/synth200/refs.tsv",
    *[f"golden/eval/synth200/artifacts/*/{f}" for f in
      ["hyp.txt", "refs_merged.txt", "src.xml", "hyp.xml", "ref.xml", *[f"ref{j}.txt" for j in range(6)]]],
    "golden/model/config.json", "golden/model/init.pkl", "golden/model/init.keys.json",
    "golden/model/batch.pt", "golden/model/grads.json", "golden/model/outputs.pt",
    "golden/optim/set_lr.json",
    "golden/dialogrpt/README.md", "golden/dialogrpt/cases.jsonl", "golden/dialogrpt/ensemble.yml",
    "golden/dialogrpt/scores.json", "golden/dialogrpt/checkpoints.tar.xz",
    "golden/prepro/commands.txt", "golden/prepro/train.tsv", "golden/prepro/features.*.jsonl",
    "golden/prepro/lines.*.jsonl", "golden/prepro/meta.*.json", "golden/prepro/chunks.*.json",
    "golden/prepro/skipped.*.json",
    "golden/reddit/inputs/reddit/*.zst", "golden/reddit/inputs/data/*", "golden/reddit/inputs/keys/*",
    "golden/reddit/inputs/lists/*", "golden/reddit/inputs/test-multi-refs-ids.txt",
    "golden/reddit/runs/commands.txt", "golden/reddit/runs/*/*.*", "golden/reddit/runs/*/*/*.*",
    "golden/reddit/runs/*/extract/*/*",
    "golden/train/commands.txt", "golden/train/train.tsv", "golden/train/eval.tsv",
    "golden/train/eval_batches.pt", "golden/train/eval_init.json", "golden/train/features.128.jsonl",
    "golden/train/*/ckpt_stats.json", "golden/train/*/eval_log.txt", "golden/train/*/steps.jsonl",
    "golden/train/*/train_log.txt",
    "data/dstc7-humaneval/DATA_LICENSE.txt", "data/dstc7-humaneval/refs.tsv",
    "data/dstc7-humaneval/hyp.Constant.txt", "data/dstc7-humaneval/hyp.Human.txt",
    "data/dstc7-humaneval/hyp.Random.txt",
]
RAW_NAMES = ("DATA_LICENSE.txt", "commands.txt")


def pack(src: Path, dst: Path) -> None:
    """Copy the files in KEEP from the full set at `src` to `dst` (e.g. tests/), trimmed."""
    import torch
    for pattern in KEEP:
        files = sorted(p for p in src.glob(pattern) if p.is_file())
        assert files, pattern
        for f in files:
            rel = f.relative_to(src)
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if rel.as_posix() == "golden/model/outputs.pt":
                o = torch.load(f, weights_only=True)
                o[f"logits_first2_every{LOGITS_STRIDE}"] = o.pop("logits_first2")[..., ::LOGITS_STRIDE].clone()
                torch.save(o, out)
            elif rel.as_posix() == "golden/dialogrpt/checkpoints.tar.xz":
                torch.save(_trim_dialogrpt(f), out.with_name(DIALOGRPT_TRIMMED))
            elif not (f.suffix in (".pt", ".pkl", ".gz", ".zst", ".md") or f.name in RAW_NAMES) \
                    and f.stat().st_size > XZ_OVER:
                out.with_name(out.name + ".xz").write_bytes(lzma.compress(f.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
            else:
                shutil.copyfile(f, out)


def unpack(store: Path, root: Path) -> Path:
    """The tests' view of the bundled set under `root` (golden/ and data/, as in the full set)."""
    for f in sorted(p for p in store.rglob("*") if p.is_file()):
        rel = f.relative_to(store)
        if rel.parts[0] not in ("golden", "data"):
            continue
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".xz":
            out.with_suffix("").write_bytes(lzma.decompress(f.read_bytes()))
        else:
            shutil.copyfile(f, out)
    _derive_model(root / "golden" / "model")
    _derive_dumps(root / "golden" / "reddit" / "inputs")
    return root


DIALOGRPT_TRIMMED = "checkpoints.trimmed.pt"
EOS_ID = 50256


def _trim_dialogrpt(tar_xz: Path) -> dict:
    """{file name: trimmed state dict (+ "ids": the embedding rows kept)} of the checkpoints."""
    import json
    import tarfile
    import tempfile

    import torch
    from lsp_model.tokenizer import encode_batch, load_tokenizer
    tok, texts = load_tokenizer(), []
    for line in (tar_xz.parent / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        texts += [t.strip() for t in case["cxt"].split("<|endoftext|>") + case["hyps"]]
    ids = torch.tensor(sorted({i for t in encode_batch(tok, texts) for i in t} | {EOS_ID}))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tar_xz) as t:
            t.extractall(tmp, filter="data")
        for f in sorted(Path(tmp).glob("*.p*")):
            sd = torch.load(f, weights_only=True)
            small = {k: v.clone() for k, v in sd.items() if not k.endswith(".attn.bias")}
            small["transformer.wte.weight"] = sd["transformer.wte.weight"][ids].clone()
            if "lm_head.decoder.weight" in sd:
                small["lm_head.decoder.weight"] = sd["lm_head.decoder.weight"][EOS_ID:EOS_ID + 1].clone()
            out[f.name] = small | {"ids": ids, "n_vocab": torch.tensor(sd["transformer.wte.weight"].shape[0])}
    return out


def dialogrpt_checkpoints(d: Path, out: Path) -> Path:
    """`out` holding what the set's dialogrpt/checkpoints.tar.xz holds: unpacked from the full set,
    else rebuilt from the bundled trimmed copy (zeros in the rows left out, the causal `attn.bias`
    buffers as the original saved them, ensemble.yml beside them)."""
    import torch
    out.mkdir(parents=True, exist_ok=True)
    if (d / "checkpoints.tar.xz").is_file():
        import tarfile
        with tarfile.open(d / "checkpoints.tar.xz") as t:
            t.extractall(out, filter="data")
        return out
    trimmed = torch.load(d / DIALOGRPT_TRIMMED, weights_only=True)
    for name, small in trimmed.items():
        ids, n_vocab = small.pop("ids"), int(small.pop("n_vocab"))
        wte = small["transformer.wte.weight"]
        full = wte.new_zeros(n_vocab, wte.shape[1])
        full[ids] = wte
        sd = {}
        n = small["transformer.wpe.weight"].shape[0]
        for k, v in small.items():
            if k.endswith(".attn.c_attn.weight"):
                sd[k.replace("c_attn.weight", "bias")] = torch.tril(torch.ones(n, n)).view(1, 1, n, n).to(v.dtype)
            sd[k] = v
        sd["transformer.wte.weight"] = full
        if "lm_head.decoder.weight" in sd:
            head = full.new_zeros(n_vocab, wte.shape[1])
            head[EOS_ID:EOS_ID + 1] = sd["lm_head.decoder.weight"]
            sd["lm_head.decoder.weight"] = head
        torch.save(sd, out / name)
    shutil.copyfile(d / "ensemble.yml", out / "ensemble.yml")
    return out


def _derive_model(d: Path) -> None:
    """init.fp16.pkl and init.module.pkl from init.pkl, as the original's were saved: every tensor
    (attn.bias buffers too) cast to float16; every key prefixed by DataParallel's `module.`.
    The tied lm_head.decoder.weight keeps sharing wte's storage in both."""
    import torch
    sd = torch.load(d / "init.pkl", weights_only=True)
    half: dict[int, torch.Tensor] = {}
    fp16 = {k: half.setdefault(v.data_ptr(), v.half()) for k, v in sd.items()}
    torch.save(fp16, d / "init.fp16.pkl")
    torch.save({f"module.{k}": v for k, v in sd.items()}, d / "init.module.pkl")


def _derive_dumps(d: Path) -> None:
    """reddit/inputs/RS|RC_2011-01.jsonl: the bytes of the .zst dumps (2 GiB window frames)."""
    import zstandard
    for name in ("RS_2011-01", "RC_2011-01"):
        with open(d / "reddit" / f"{name}.zst", "rb") as f:
            data = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f).read()
        (d / f"{name}.jsonl").write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "pack":
        sys.exit(__doc__)
    pack(Path(sys.argv[2]), Path(sys.argv[3]))
