"""Atomic output files: write to a temporary name, rename when complete."""
import gzip
import os


class AtomicFiles:
    """Open files under temporary names; ``commit()`` renames them all, ``abort()`` deletes them.

    Use as a context manager: leaving the block with an exception aborts.
    """

    def __init__(self):
        self._files = []  # (handle, tmp, final)

    def open(self, path, gz=False, level=6):
        tmp = '%s.tmp%d' % (path, os.getpid())
        raw = open(tmp, 'wb')
        # gzip level 6 is the gzip CLI default the original Makefile used
        f = gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=level, mtime=0) if gz else raw
        self._files.append((f, raw, tmp, path))
        return f

    def commit(self):
        for f, raw, _, _ in self._files:
            f.close()
            raw.close()
        for _, _, tmp, path in self._files:
            os.replace(tmp, path)
        self._files = []

    def abort(self):
        for f, raw, tmp, _ in self._files:
            try:
                f.close()
                raw.close()
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def write_atomic(path, data):
    """Write bytes or str ``data`` to ``path`` through a temporary file."""
    with AtomicFiles() as out:
        f = out.open(path)
        f.write(data.encode('utf-8') if isinstance(data, str) else data)
        out.commit()


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
