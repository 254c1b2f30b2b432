"""The original's model/config address tables, and a resumable downloader.

Addresses are the original demo_utils.py's (storage moved from convaisharables.blob.core.windows.net/lsp
to acvrpublicycchen.blob.core.windows.net/dialogpt in 2021). Quirks kept visible:
- the original's table lacks `large_ft` although its README links multiref/large_ft.pkl; it is here;
- the "large" config/vocab/merges entries point at a `1542M` folder (the model is 762M);
- DSTC `medium_ft.pkl` is really a 12-layer (small) model, and `small_reverse.pkl` a medium one;
- GPT-2 weights were on the legacy Hugging Face S3 bucket (likely dead); the hub copy of the same
  files is tried after it.

`download` writes to `<name>.part`, resumes with an HTTP Range request, checks the final size
against Content-Length / Content-Range (and `expected_size` when known), then renames into place.
When a host cannot be reached, `DownloadError` names every file to fetch and where to put it.
"""
from __future__ import annotations

import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

BASE = "https://acvrpublicycchen.blob.core.windows.net/dialogpt"
LEGACY_BASE = "https://convaisharables.blob.core.windows.net/lsp"

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

# Known byte sizes (issue #40 for the DSTC model); others are checked against the server's length.
EXPECTED_SIZE = {f"{BASE}/DSTC/medium_ft.pkl": 351_265_269}

# Where the repo keeps each size's architecture (the config is not downloaded: it ships here).
LOCAL_CONFIG = {"small": "configs/117M", "medium": "configs/345M", "large": "configs/762M"}
INITS = ("gpt2", "ft", "fs")


class DownloadError(RuntimeError):
    """A download that failed; the message says what to fetch by hand and where to put it."""


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


def _content_range_total(value: str | None, start: int) -> int | None:
    """Total size from `bytes start-end/total`; raises if the server resumed somewhere else."""
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (value or "").strip())
    if not m:
        return None
    if int(m.group(1)) != start:
        raise DownloadError(f"server resumed at byte {m.group(1)}, asked for {start}")
    return None if m.group(3) == "*" else int(m.group(3))


def download(url: str, dest: str | os.PathLike, expected_size: int | None = None, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Fetch `url` to `dest`, resuming a `dest.part` left by an interrupted run. A finished `dest`
    is kept as is (the original skipped existing files too), unless its size contradicts
    `expected_size`."""
    from tqdm import tqdm

    dest = Path(dest)
    expected_size = expected_size if expected_size is not None else EXPECTED_SIZE.get(url)
    if dest.is_file():
        if expected_size is None or dest.stat().st_size == expected_size:
            return dest
        raise DownloadError(f"{dest} has {dest.stat().st_size} bytes, expected {expected_size}: "
                            f"delete it and run again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    headers = {"User-Agent": "dialogpt-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # Range past the end: complete when the sizes agree
            m = re.fullmatch(r"bytes \*/(\d+)", (e.headers.get("Content-Range") or "").strip())
            if have == (int(m.group(1)) if m else expected_size):
                os.replace(part, dest)
                return dest
        if e.code == 416:  # our .part does not fit the server's file: start over next time
            part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None
    with resp:
        if resp.status == 206:
            total = _content_range_total(resp.headers.get("Content-Range"), have)
            mode = "ab"
        else:  # 200: the server ignored the Range header, start from byte 0
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(f"{url}: server reports {total} bytes, expected {expected_size}")
        total = total if total is not None else expected_size
        try:
            with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                             desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, socket.timeout, urllib.error.URLError) as e:
            raise DownloadError(f"{url}: interrupted after {part.stat().st_size} bytes ({e}); "
                                f"run again to resume from {part}") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"{url}: got {got} bytes, expected {total}; run again to resume from {part}")
    os.replace(part, dest)
    return dest


def offline_message(missing: dict[str, list[str]], folder: Path, errors: list[str]) -> str:
    lines = [f"could not download {len(missing)} model file(s) ({'; '.join(errors)})."
             f" Offline? Fetch them by hand into {folder}/ (or pass --model_dir DIR holding them):"]
    lines += [f"  {u[0]}  ->  {folder / name}" for name, u in missing.items()]
    return "\n".join(lines)


def fetch_model_files(size: str, init: str, folder: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                      timeout: float = 30.0, progress: bool = True) -> Path:
    """The weights file for `size`/`init`: taken from `model_dir` when it holds it, else downloaded
    (with resume) into `folder`. Raises DownloadError naming every file still missing."""
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
                download(url, folder / name, timeout=timeout, progress=progress)
                break
            except DownloadError as e:
                errors.append(str(e))
        else:
            missing[name] = urls
    if missing:
        raise DownloadError(offline_message(missing, folder, errors))
    return folder / next(iter(files))

