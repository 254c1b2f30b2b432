"""The original's model/config address tables, what is known about those files, and the model
size -> config table; the verified downloader itself is lsp_io.download.

Addresses are the original demo_utils.py's (storage moved from convaisharables.blob.core.windows.net/lsp
to acvrpublicycchen.blob.core.windows.net/dialogpt in 2021). Quirks kept visible:
- the original's table lacks `large_ft` although its README links multiref/large_ft.pkl; it is here;
- the "large" config/vocab/merges entries point at a `1542M` folder (the model is 762M);
- DSTC `medium_ft.pkl` is really a 12-layer (small) model, and `small_reverse.pkl` a medium one;
- GPT-2 weights were on the legacy Hugging Face S3 bucket (likely dead); the hub copy of the same
  files is tried after it.

When a host cannot be reached, `DownloadError` names every file to fetch and where to put it.
"""
from __future__ import annotations

import os
from pathlib import Path

from lsp_io.download import DownloadError, download

BASE = "https://acvrpublicycchen.blob.core.windows.net/dialogpt"

LSP_MODEL_URL = {
    "multiref": {
        "large_fs": f"{BASE}/multiref/large_fs.pkl",
        "large_ft": f"{BASE}/multiref/large_ft.pkl",  # README only; missing from the original table
        "medium_fs": f"{BASE}/multiref/medium_fs.pkl",
        "medium_ft": f"{BASE}/multiref/medium_ft.pkl",
        "small_fs": f"{BASE}/multiref/small_fs.pkl",
        "small_ft": f"{BASE}/multiref/small_ft.pkl",
        "small_reverse": f"{BASE}/multiref/small_reverse.pkl",  # README only; a medium-size model
    },
    "dstc": {
        "medium_ft": f"{BASE}/DSTC/medium_ft.pkl",  # really small-size (12 layers, 768)
    },
}

GPT2_PRETRAINED_MODEL_ARCHIVE_MAP = {
    "small": "https://s3.amazonaws.com/models.huggingface.co/bert/gpt2-pytorch_model.bin",
    "medium": "https://s3.amazonaws.com/models.huggingface.co/bert/gpt2-medium-pytorch_model.bin",
    "large": "https://s3.amazonaws.com/models.huggingface.co/bert/gpt2-large-pytorch_model.bin",
}
# The same GPT-2 weights on the Hugging Face hub, tried when the legacy bucket fails.
GPT2_HUB_MIRROR = {
    "small": "https://huggingface.co/openai-community/gpt2/resolve/main/pytorch_model.bin",
    "medium": "https://huggingface.co/openai-community/gpt2-medium/resolve/main/pytorch_model.bin",
    "large": "https://huggingface.co/openai-community/gpt2-large/resolve/main/pytorch_model.bin",
}

_SIZE_DIR = {"small": "117M", "medium": "345M", "large": "1542M"}  # "1542M" as in the original
CONFIG_FILE = {k: f"{BASE}/{d}/config.json" for k, d in _SIZE_DIR.items()}
VOCAB_FILE = {k: f"{BASE}/{d}/vocab.json" for k, d in _SIZE_DIR.items()}
MERGE_FILE = {k: f"{BASE}/{d}/merges.txt" for k, d in _SIZE_DIR.items()}

# (size in bytes, sha256) of files above, None where unknown; only values with a source. The DSTC
# model's size is from DialoGPT issue #40 and the gpt2bot code. No sha256 of these files is
# published; an unlisted file must come with a Content-Length, and lsp_io.download records the
# verified size and sha256 next to it (`<name>.sha256`) so a rerun re-checks it.
KNOWN_FILES: dict[str, tuple[int | None, str | None]] = {
    LSP_MODEL_URL["dstc"]["medium_ft"]: (351_265_269, None),
}

# Model size -> the repo folder holding its architecture (config.json): the one owner of this fact.
LOCAL_CONFIG = {"small": "configs/117M", "medium": "configs/345M", "large": "configs/762M"}
INITS = ("gpt2", "ft", "fs")


def model_files(size: str, init: str = "gpt2") -> dict[str, list[str]]:
    """{local file name: [url, fallback url, ...]} of the weights `--model size --init init` needs.

    gpt2: OpenAI GPT-2 weights (what the original demo fine-tuned from), saved as pytorch_model.bin;
    ft/fs: the DialoGPT multiref checkpoints fine-tuned from GPT-2 / trained from scratch.
    """
    if size not in _SIZE_DIR:
        raise ValueError(f"unknown model size {size!r}; expected one of {', '.join(_SIZE_DIR)}")
    if init == "gpt2":
        return {"pytorch_model.bin": [GPT2_PRETRAINED_MODEL_ARCHIVE_MAP[size], GPT2_HUB_MIRROR[size]]}
    if init in ("ft", "fs"):
        name = f"{size}_{init}"
        return {f"{name}.pkl": [LSP_MODEL_URL["multiref"][name]]}
    raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def offline_message(missing: dict[str, list[str]], folder: Path, errors: list[str]) -> str:
    lines = [f"could not download {len(missing)} model file(s) ({'; '.join(errors)})."
             f" Offline? Fetch them by hand into {folder}/ (or pass --model_dir DIR holding them):"]
    lines += [f"  {u[0]}  ->  {folder / name}" for name, u in missing.items()]
    return "\n".join(lines)


def fetch_model_files(size: str, init: str, folder: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                      timeout: float = 30.0, progress: bool = True) -> Path:
    """The weights file for `size`/`init`: taken from `model_dir` when it holds it, else downloaded
    (verified, resumable; an existing file is re-checked) into `folder`. Raises DownloadError naming
    every file still missing."""
    files = model_files(size, init)
    if model_dir is not None:
        local = Path(model_dir)
        found = [local / n for n in files if (local / n).is_file()]
        if len(found) == len(files):
            return found[0]
        folder = local
    folder = Path(folder)
    missing, errors = {}, []
    for name, urls in files.items():
        for url in urls:
            try:
                nbytes, sha256 = KNOWN_FILES.get(url, (None, None))
                download(url, folder / name, size=nbytes, sha256=sha256, timeout=timeout, progress=progress)
                break
            except DownloadError as e:
                errors.append(str(e))
        else:
            missing[name] = urls
    if missing:
        raise DownloadError(offline_message(missing, folder, errors))
    return folder / next(iter(files))

