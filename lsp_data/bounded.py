"""Reading a user's text files in bounded memory, with physical line numbers (what editors and
`sed -n` show: lines end at \\n only).

Rules, the same for every line-based format (JSONL, ParlAI, CSV/TSV):
  * a UTF-8 byte-order mark at the start of a file is accepted and dropped;
  * a physical line (a CSV record: its lines) longer than `limit` bytes is never held whole: it is
    skipped while being read and reported as `too_long` with its first line;
  * a line with a NUL byte is reported as `nul_byte`, one that is not UTF-8 as `undecodable`
    (with the byte's column); neither reaches the output;
  * CSV: a quoted field may hold line breaks. A quote still open at the end of the file is
    reported as `unclosed_quote` on the line that opened it, and reading goes on at the next
    physical line, so one stray quote cannot swallow the rest of the file.
"""
from __future__ import annotations

import csv
import os
from typing import Iterator, NamedTuple

BOM = b"\xef\xbb\xbf"
BLOCK = 1 << 20
DEFAULT_LIMIT = 4 << 20  # --max_record_bytes: far above any real chat turn


class Line(NamedTuple):
    no: int              # physical line number, 1-based
    data: bytes | None   # without the \n; None when over the limit (not kept)
    quotes: int          # number of '"' bytes in it (CSV record assembly)
    end: int             # byte offset just after this line's \n


class Bad(NamedTuple):
    no: int
    reason: str
    message: str


def physical_lines(path: str | os.PathLike, limit: int, start: int = 0, first_no: int = 1) -> Iterator[Line]:
    """Every physical line from byte `start` (numbered from `first_no`), read in blocks: a line
    over `limit` bytes is counted through, not kept."""
    with open(path, "rb") as f:
        f.seek(start)
        no, pos, buf, over, quotes = first_no, start, [], False, 0
        size = 0
        head = start == 0
        while True:
            block = f.read(BLOCK)
            if head:
                if block.startswith(BOM):
                    block, pos = block[len(BOM):], pos + len(BOM)
                head = False
            if not block:
                if size or over:
                    yield Line(no, None if over else b"".join(buf), quotes, pos)
                return
            i = 0
            while True:
                j = block.find(b"\n", i)
                piece = block[i:] if j < 0 else block[i:j]
                quotes += piece.count(b'"')
                if not over:
                    size += len(piece)
                    if size > limit:
                        over, buf = True, []
                    else:
                        buf.append(piece)
                if j < 0:
                    pos += len(block) - i
                    break
                pos += j + 1 - i
                yield Line(no, None if over else b"".join(buf), quotes, pos)
                no, buf, over, quotes, size = no + 1, [], False, 0, 0
                i = j + 1


def decode(line: Line) -> str | Bad:
    """The text of a kept line, or why it cannot be used."""
    nul = line.data.find(b"\x00")
    if nul >= 0:
        return Bad(line.no, "nul_byte", f"NUL byte at column {nul + 1}")
    try:
        return line.data.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as e:
        return Bad(line.no, "undecodable", f"not UTF-8 at column {e.start + 1} (byte 0x{line.data[e.start]:02x})")


def text_lines(path, limit: int) -> Iterator[tuple[int, str | Bad]]:
    """(physical line number, text or Bad) of every line, for line-per-record formats."""
    for line in physical_lines(path, limit):
        if line.data is None:
            yield line.no, Bad(line.no, "too_long", f"line over --max_record_bytes {limit} bytes, skipped unread")
        else:
            yield line.no, decode(line)


def csv_records(path, delimiter: str, limit: int) -> Iterator[tuple[int, list[str] | Bad]]:
    """(first physical line, fields or Bad) of every CSV record (empty lines skipped)."""
    start, first_no, delim = 0, 1, delimiter.encode()[0]
    while True:  # a restart after an unclosed quote re-reads from the line after it
        restart = None
        lines = physical_lines(path, limit, start, first_no)
        for line in lines:
            group, size = [line], len(line.data or b"")
            too_long, quoted = line.data is None, _quoted_after(line, False, delim)
            while quoted:  # a quoted field goes on: take lines until it closes
                nxt = next(lines, None)
                if nxt is None:
                    break
                size += len(nxt.data or b"") + 1
                too_long = too_long or nxt.data is None or size > limit
                group = group[:1] + [nxt] if too_long else group + [nxt]  # over the limit: hold no more
                quoted = _quoted_after(nxt, True, delim)
            if quoted:
                yield line.no, Bad(line.no, "unclosed_quote", "a quoted field opened on this line is never closed; "
                                                                "the line is skipped and reading goes on at the next")
                restart = (line.end, line.no + 1)
                break
            if too_long:
                yield line.no, Bad(line.no, "too_long", f"record of lines {line.no}-{group[-1].no} over "
                                                        f"--max_record_bytes {limit} bytes, skipped unread")
                continue
            fields = _parse(group, delimiter)
            if isinstance(fields, Bad) and fields.reason == "bad_csv" and len(group) > 1:
                # the lines joined by a quote do not parse: the quote was a stray one
                yield line.no, Bad(line.no, "unclosed_quote", f"a quoted field opened on this line does not end as "
                                                                f"CSV ({fields.message}); the line is skipped and "
                                                                f"reading goes on at the next")
                restart = (line.end, line.no + 1)
                break
            if fields != []:
                yield line.no, fields
        if restart is None:
            return
        start, first_no = restart


def _quoted_after(line: Line, quoted: bool, delim: int) -> bool:
    """Whether a quoted field is still open at the end of `line` (Python csv's default dialect:
    a quote opens a field only at its start; "" inside one is a quote). A line over the limit is
    not kept, so its quote count decides."""
    data = line.data
    if data is None:
        return quoted ^ bool(line.quotes % 2)
    if not line.quotes:
        return quoted
    i, n, at_start = 0, len(data), not quoted
    while i < n:
        if quoted:
            j = data.find(b'"', i)
            if j < 0:
                return True
            if j + 1 < n and data[j + 1] == 0x22:  # "" : a quote inside the field
                i = j + 2
                continue
            quoted, at_start, i = False, False, j + 1
        elif at_start and data[i] == 0x22:
            quoted, i = True, i + 1
        else:
            j = data.find(delim, i)
            if j < 0:
                return False
            i, at_start = j + 1, True
    return quoted


def _parse(group: list[Line], delimiter: str) -> list[str] | Bad:
    texts = []
    for line in group:
        text = decode(line)
        if isinstance(text, Bad):
            return text
        texts.append(text)
    try:
        rows = list(csv.reader(["\n".join(texts)], delimiter=delimiter, strict=True))
    except csv.Error as e:
        return Bad(group[0].no, "bad_csv", str(e))
    return rows[0] if rows else []
