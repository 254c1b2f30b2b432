"""Reading dump files: format sniffing, streaming decompression, line splitting.

Nothing is ever decompressed to disk.  A dump that ends early or is corrupt
raises ``DumpError`` naming the file and how far reading got, instead of
silently yielding a short month (the zstandard stream reader the original
used stops quietly on a truncated frame).
"""
import bz2
import lzma
import os
import zlib

import zstandard

BLOCK = 1 << 20  # compressed bytes read per step

MAGIC = [
    (b'\x28\xb5\x2f\xfd', 'zst'),
    (b'\x1f\x8b', 'gz'),
    (b'BZh', 'bz2'),
    (b'\xfd7zXZ\x00', 'xz'),
]
EXTENSIONS = ('.zst', '.bz2', '.xz', '.gz', '.jsonl', '.json', '')


class DumpError(Exception):
    """A dump (or intermediate file) that cannot be read to its end."""


def sniff(path):
    """Compression format of ``path`` from its first bytes: zst, gz, bz2, xz or plain."""
    with open(path, 'rb') as f:
        head = f.read(6)
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    return 'plain'


def _decompressor(fmt):
    if fmt == 'zst':
        return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()
    if fmt == 'gz':
        return zlib.decompressobj(wbits=31)
    if fmt == 'bz2':
        return bz2.BZ2Decompressor()
    if fmt == 'xz':
        return lzma.LZMADecompressor()
    return None


def iter_blocks(path, progress=None):
    """Yield decompressed byte blocks of ``path``; multi-frame/-member files are fine.

    ``progress`` (optional) is called with the number of compressed bytes consumed.
    """
    fmt = sniff(path)
    with open(path, 'rb') as f:
        if fmt == 'plain':
            while True:
                raw = f.read(BLOCK)
                if not raw:
                    return
                if progress:
                    progress(len(raw))
                yield raw
        dec = _decompressor(fmt)
        started = False  # inside a frame whose end we have not seen yet
        pos = 0
        while True:
            raw = f.read(BLOCK)
            if not raw:
                break
            pos += len(raw)
            if progress:
                progress(len(raw))
            while raw:
                try:
                    out = dec.decompress(raw)
                except (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as e:
                    raise DumpError('%s: corrupt %s data near compressed byte %d: %s'
                                    % (path, fmt, pos, e)) from None
                started = True
                if out:
                    yield out
                if dec.eof:
                    raw = dec.unused_data
                    dec = _decompressor(fmt)
                    started = False
                    if fmt == 'gz' and raw.strip(b'\x00') == b'':
                        raw = b''  # zero padding after the last gzip member
                else:
                    raw = b''
        if started:
            raise DumpError('%s: truncated %s file: it ends inside a compressed frame '
                            '(after %d compressed bytes)' % (path, fmt, pos))


def iter_line_batches(path, progress=None):
    """Yield lists of lines (bytes, without line ends) of ``path``.

    Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``, like the original's text-mode
    reader (universal newlines).  A final line without a line end is kept.
    """
    return map(split_lines, iter_line_blocks(path, progress))


def iter_line_blocks(path, progress=None):
    """Yield byte blocks of whole lines of ``path``; ``split_lines`` gives each block's lines.

    Worker processes get blocks rather than line lists: one bytes object is
    far cheaper to send than thousands.
    """
    rest = b''
    for block in iter_blocks(path, progress):
        block = rest + block
        cut = block.rfind(b'\n')
        if cut < 0:
            rest = block
            continue
        rest = block[cut + 1:]
        yield block[:cut]
    if rest:
        yield rest[:-1] if rest.endswith(b'\r') else rest


def split_lines(text):
    lines = text.split(b'\n')
    if b'\r' not in text:
        return lines
    out = []
    for line in lines:
        if b'\r' in line:
            if line.endswith(b'\r'):
                line = line[:-1]
            out.extend(line.split(b'\r'))
        else:
            out.append(line)
    return out


def read_text_lines(path):
    """All lines of a (possibly compressed) text file as str, line ends removed."""
    lines = []
    try:
        for batch in iter_line_batches(path):
            lines.extend(batch)
        return [line.decode('utf-8') for line in lines]
    except UnicodeDecodeError as e:
        raise DumpError('%s: not UTF-8 text: %s' % (path, e)) from None


def find_dump(folder, kind, month):
    """Path of the ``RS``/``RC`` dump of ``month`` in ``folder`` (any extension), or None."""
    for ext in EXTENSIONS:
        p = os.path.join(folder, '%s_%s%s' % (kind, month, ext))
        if os.path.isfile(p):
            return p
    return None
