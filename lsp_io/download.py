"""Verified HTTP downloads (stdlib only), and the `sha256  size  name` manifest format.

What `download` guarantees: a file under its final name is complete and checked.
- Data comes into `<name>.part`; an interrupted transfer is resumed (HTTP Range) on the next run,
  or discarded when it cannot belong to the file; a `.part` is never used as the file.
- The length must be known: the caller's `size`, or the server's Content-Length / Content-Range.
  A response with neither (and no known sha256) is refused before its body is read, because a
  connection that closes early would look like a complete file.
- An HTML page is refused (an error or login page served with status 200): by its Content-Type
  `text/html`, and whatever the Content-Type says, by the body's first bytes (`<!DOCTYPE html`,
  `<html`, `<head`, `<body`, after blanks and comments), checked as they arrive and again on
  the complete file (a resumed `.part` included).
- The received size must equal the expected one, and the sha256 the caller's when given.
- After a download the verified size and sha256 are recorded in `<name>.sha256` (manifest format),
  so a rerun re-checks the file on disk against them (or against the caller's size/sha256) and
  downloads it again when it does not match, instead of trusting it.
  A file with no record and nothing known (placed by hand) is kept, with a warning.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .atomic import atomic_file

BLOCK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message says what to do."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


# --- manifest: one `sha256  size  name` line per file; `-` for an unknown sha256 or size ------------

def manifest_line(name: str, size: int | None, sha256: str | None) -> str:
    return f"{sha256 or '-'}  {'-' if size is None else size}  {name}\n"


def read_manifest(path: str | os.PathLike) -> dict[str, tuple[int | None, str | None]]:
    """{file name: (size, sha256)}; blank lines and `#` comments are skipped. A malformed line is a
    DownloadError naming the file and line."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = re.fullmatch(r"\s*([0-9a-fA-F]{64}|-)\s+(\d+|-)\s+(\S.*?)\s*", line)
            if m is None:
                raise DownloadError(f"{path}:{no}: expected 'sha256  size  name' (sha256 or size may "
                                    f"be '-'), got {line.strip()[:80]!r}")
            sha, size, name = m.groups()
            out[name] = (None if size == "-" else int(size), None if sha == "-" else sha.lower())
    return out


def check_file(path: Path, size: int | None, sha256: str | None) -> str | None:
    """None when `path` has the expected size and sha256 (each when given), else what is wrong."""
    got = path.stat().st_size
    if size is not None and got != size:
        return f"{path} has {got} bytes, expected {size}"
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256.lower():
            return f"{path}: sha256 {digest}, expected {sha256.lower()}"
    return None


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _recorded(dest: Path) -> tuple[int | None, str | None]:
    """(size, sha256) the last verified download of `dest` recorded, or Nones."""
    try:
        return read_manifest(_record_path(dest)).get(dest.name, (None, None))
    except (OSError, DownloadError):
        return None, None  # no (readable) record: nothing known from it


# --- the transfer -------------------------------------------------------------------------------------

class _Progress:
    """`name: 12.3 of 351.3 MB` on stderr, rewritten in place twice a second; only on a terminal."""

    def __init__(self, name: str, total: int | None, done: int, enabled: bool):
        self.name, self.total, self.done = name, total, done
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, n: int, final: bool = False):
        self.done += n
        if self.enabled and (final or time.monotonic() - self.last > 0.5):
            self.last = time.monotonic()
            total = f" of {self.total / 1e6:.1f}" if self.total else ""
            print(f"\r{self.name}: {self.done / 1e6:.1f}{total} MB", end="\n" if final else "",
                  file=sys.stderr, flush=True)


def _content_range_total(value: str | None, start: int) -> int | None:
    """Total size from `bytes start-end/total`; raises if the server resumed somewhere else."""
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (value or "").strip())
    if not m:
        return None
    if int(m.group(1)) != start:
        raise DownloadError(f"server resumed at byte {m.group(1)}, asked for {start}")
    return None if m.group(3) == "*" else int(m.group(3))


def _open(url: str, have: int, timeout: float):
    """The response for `url` from byte `have`, or None when the `.part` already holds all of it
    (416 for a Range at its end: the total comes back as the int)."""
    headers = {"User-Agent": "dialogpt-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            m = re.fullmatch(r"bytes \*/(\d+)", (e.headers.get("Content-Range") or "").strip())
            return int(m.group(1)) if m else None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        raise DownloadError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from None


def _expected_total(url: str, resp, have: int, size: int | None, sha256: str | None):
    """(total bytes, resume offset) of a response, refusing HTML pages and unknown lengths."""
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype == "text/html":
        raise DownloadError(f"{url}: the server sent an HTML page (Content-Type text/html), not the "
                            f"file: an error or login page? Check the address")
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if resp.status == 206:  # the rest from byte `have`: Content-Range says the total
        total = _content_range_total(resp.headers.get("Content-Range"), have)
        if total is None and length is not None:
            total = have + length
    else:  # 200: the server ignored the Range header, start from byte 0
        have, total = 0, length
    if size is not None and total is not None and total != size:
        raise DownloadError(f"{url}: server reports {total} bytes, expected {size}")
    total = total if total is not None else size
    if total is None and sha256 is None:
        raise DownloadError(f"{url}: the server gives no Content-Length and the file's size is not "
                            f"known, so a cut transfer could not be told from a complete one: refused")
    return total, have


_HTML = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s|<!--.*?-->)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S)


def _refuse_html(url: str, head: bytes, part: Path) -> None:
    """An HTML page instead of the file (whatever the Content-Type said): delete it and say so."""
    if _HTML.match(head[:4096]):
        part.unlink(missing_ok=True)
        first = head.lstrip()[:40].decode("utf-8", "replace")
        raise DownloadError(f"{url}: the server sent an HTML page ({first!r}...), not the file: an error or "
                            f"login page? Check the address")


def _receive(url: str, resp, part: Path, have: int, total: int | None, progress: bool):
    """Append the body to `part` (from byte `have`); errors leave `part` to resume from."""
    bar = _Progress(part.name[:-len(".part")], total, have, progress)
    try:
        with open(part, "ab" if have else "wb") as f:
            while chunk := resp.read(BLOCK):
                if not have and not bar.done:
                    _refuse_html(url, chunk, part)  # the file's first bytes: stop before the rest
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    except (OSError, socket.timeout, urllib.error.URLError) as e:
        raise DownloadError(f"{url}: interrupted after {part.stat().st_size} bytes ({e}); "
                            f"run again to resume from {part}") from None
    bar.update(0, final=True)


def _finish(url: str, part: Path, dest: Path, total: int | None, sha256: str | None) -> Path:
    """Check `part` (size, sha256), record what was verified, rename it to `dest`."""
    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(f"{url}: got {got} bytes, expected {total}; run again to resume from {part}")
    with open(part, "rb") as f:
        _refuse_html(url, f.read(4096), part)
    digest = file_sha256(part)
    if (total is not None and got > total) or (sha256 is not None and digest != sha256.lower()):
        part.unlink()
        what = f"{got} bytes, expected {total}" if total is not None and got != total else \
            f"sha256 {digest}, expected {sha256}"
        raise DownloadError(f"{url}: downloaded file has {what}: discarded; run again to download it anew")
    with atomic_file(_record_path(dest), "w") as f:
        f.write(manifest_line(dest.name, got, digest))
    os.replace(part, dest)
    return dest


def _keep_existing(dest: Path, size: int | None, sha256: str | None) -> bool:
    """Check a file already at `dest` (the caller's size/sha256, else its record); remove it when wrong."""
    rec_size, rec_sha = _recorded(dest)
    size = size if size is not None else rec_size
    sha256 = sha256 or rec_sha
    problem = check_file(dest, size, sha256)
    if problem is None:
        if size is None and sha256 is None:
            print(f"warning: {dest}: kept as found, not verified (no known size or sha256; "
                  f"delete it to download it again)", file=sys.stderr)
        return True
    print(f"{problem}: downloading it again", file=sys.stderr)
    dest.unlink()
    _record_path(dest).unlink(missing_ok=True)
    return False


def download(url: str, dest: str | os.PathLike, size: int | None = None, sha256: str | None = None,
             timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch `url` to `dest`, verified as the module docstring says; return `dest`.

    An existing `dest` is checked first (size and sha256: the caller's, else its `.sha256` record)
    and downloaded again when it does not match."""
    dest = Path(dest)
    if dest.is_file() and _keep_existing(dest, size, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    resp = _open(url, have, timeout)
    if resp is None or isinstance(resp, int):  # 416: the .part may already be the whole file
        if resp != have:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the partial file {part} does not fit the server's file: "
                                f"discarded; run again")
        return _finish(url, part, dest, resp if size is None else size, sha256)
    with resp:
        total, have = _expected_total(url, resp, have, size, sha256)
        _receive(url, resp, part, have, total, progress)
    return _finish(url, part, dest, total, sha256)
