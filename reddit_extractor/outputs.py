"""Output files of a step, all made visible together: each is an ``lsp_io.atomic.atomic_file``
(temporary name in the same folder, fsync, rename), so a kill leaves no half file under a final name."""
import contextlib
import gzip
import os

import zstandard

from lsp_io.atomic import atomic_file


class _Abort(Exception):
    """Thrown into the open atomic files to make them delete their temporary files."""


class AtomicFiles:
    """Open files under temporary names; ``commit()`` renames them all, ``abort()`` deletes them.

    Use as a context manager: leaving the block with an exception aborts.
    """

    def __init__(self):
        self._stack = contextlib.ExitStack()
        self._gz = []

    def open(self, path, gz=False, level=6, zst=False):
        """A binary file: gzip-compressed with ``gz`` (at ``level``), zstd with ``zst``, else plain."""
        raw = self._stack.enter_context(atomic_file(path, 'wb'))
        if zst:
            f = zstandard.ZstdCompressor(level=level).stream_writer(raw, closefd=False)
        elif gz:
            # gzip level 6 is the gzip CLI default the original Makefile used
            f = gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=level, mtime=0)
        else:
            return raw
        self._gz.append(f)
        return f

    def commit(self):
        for f in self._gz:
            f.close()  # writes the gzip trailer / zstd frame end before atomic_file fsyncs and renames
        self._gz = []
        self._stack.close()

    def abort(self):
        for f in self._gz:  # closed now, or its finaliser would write to the closed file
            with contextlib.suppress(Exception):
                f.close()
        self._gz = []
        try:
            self._stack.__exit__(_Abort, _Abort(), None)
        except _Abort:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def write_atomic(path, data):
    """Write bytes or str ``data`` to ``path`` through a temporary file."""
    with atomic_file(path, 'wb') as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
