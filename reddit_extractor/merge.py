"""Joining per-month outputs: ``cat`` of the gzip months, and ``zcat months | cut -f 2-3`` with a sanity check."""
import shutil

from .dumps import DumpError, iter_line_batches
from .outputs import AtomicFiles


def concat(inputs, output):
    """``cat inputs > output``, atomically: gzip members concatenate into one valid gzip file."""
    with AtomicFiles() as files:
        f = files.open(output)
        for path in inputs:
            with open(path, 'rb') as src:
                shutil.copyfileobj(src, f, 1 << 20)
        files.commit()


def cut_columns(inputs, output, min_lines=1):
    """Write columns 2-3 of every line of ``inputs`` (in order) to ``output``; return the line count.

    Fails, writing nothing, when fewer than ``min_lines`` lines come out: an
    empty train.tsv used to surface only much later (DialoGPT#27, #55, #61).
    """
    n = 0
    with AtomicFiles() as files:
        f = files.open(output)
        for path in inputs:
            for batch in iter_line_batches(path):
                # cut -f 2-3: fields 2 and 3; a line without a tab is printed whole
                f.write(b''.join((b'\t'.join(line.split(b'\t')[1:3]) if b'\t' in line else line) + b'\n'
                                 for line in batch))
                n += len(batch)
        if n < min_lines:
            raise DumpError('%s: only %d lines from %d input file(s), expected at least %d; '
                            'check the per-month logs' % (output, n, len(inputs), min_lines))
        files.commit()
    return n
