"""The per-month extract step: RS/RC dumps -> ``extract/YYYY-MM/{rs,rc}_sub*.tsv`` + ``stat.tsv``.

Output is byte-identical to the original reddit.py ``--task=extract``:
submissions with >= 2 comments go to chunks of ``split_size``; each kept
comment goes to the chunk of its submission.  The last line of every chunk
file has no newline (the original's ``'\\n'.join``), except that an rc chunk
flushed at a 100,000-line boundary and never written to again ends with one.

With ``workers > 1`` blocks of comment lines are parsed in forked worker
processes while the parent decompresses; results come back in order, so the output
does not depend on the worker count.
"""
import functools
import multiprocessing
import os
import re
import sys
from collections import Counter

from tqdm import tqdm

from .checks import Span, check_month, created
from .dumps import DumpError, iter_line_batches, iter_line_blocks, split_lines
from .outputs import AtomicFiles, remove_quietly, write_atomic
from .records import BadRecord, comment_row, parse, submission_row

FLUSH_EVERY = 100000  # the original wrote rc rows out every 1e5 input lines
# Extract chunks are intermediate files, read back once by conv: only their content matters.
# zstd level 3 writes them 1.6x faster than gzip level 1 did, 16% smaller, and reads back 1.5x
# faster (measured on a chunk of the benchmark's month).
CHUNK_ZSTD_LEVEL = 3
CHUNK_EXT = '.tsv.zst'  # with compression (the Makefile's --gzip true), else .tsv


class Errors:
    """Bad-input counts per reason, with the first line number of each."""

    def __init__(self):
        self.count = Counter()
        self.first = {}

    def add(self, reason, line_no, n=1):
        self.count[reason] += n
        if reason not in self.first or line_no < self.first[reason]:
            self.first[reason] = line_no

    def merge(self, count, first):
        for reason, n in count.items():
            self.add(reason, first[reason], n)

    def rows(self, month, kind):
        return ['%s\t%s\t%s\t%d\t%d' % (month, kind, r, self.count[r], self.first[r])
                for r in sorted(self.count)]


def _progress(path, desc):
    bar = tqdm(total=os.path.getsize(path), unit='B', unit_scale=True, desc=desc,
               file=sys.stderr, disable=None, leave=False)
    return bar


def extract_submissions(path, split_size, errors, span, out, out_dir, gz, log):
    """Write rs_sub chunks; return (list of sid sets per chunk, kept, seen). ``span`` gets every record."""
    ext = CHUNK_EXT if gz else '.tsv'
    chunks, sids, rows = [], [], []
    n = m = 0

    def write_chunk():
        print('writing submissions_sub%i' % len(chunks), file=log)
        f = out.open(os.path.join(out_dir, 'rs_sub%i%s' % (len(chunks), ext)), level=CHUNK_ZSTD_LEVEL, zst=gz)
        f.write('\n'.join(rows).encode('utf-8'))
        chunks.append(set(sids))

    bar = _progress(path, os.path.basename(path))
    for batch in _batches(path, bar, lambda: n):
        for line in batch:
            n += 1
            try:
                d = parse(line)
                span.add(created(d))
                kept = submission_row(d)
            except BadRecord as e:
                errors.add(e.args[0], n)
                continue
            if kept is None:
                continue
            sids.append(kept[0])
            rows.append(kept[1])
            m += 1
            if len(sids) == split_size:
                write_chunk()
                sids, rows = [], []
    bar.close()
    write_chunk()  # the last chunk is always written, even when empty
    print('extract_submissions done.\n', file=log)
    return chunks, m, n


# Set in the parent before workers fork, so the (large) key set is shared, not pickled.
_CONTEXT = {}

# With keys, most comments belong to submissions without any key (the real train keys keep about
# 3% of the comments). comment_row drops such a line at its first filter, so those lines are
# recognised from the block's bytes instead of being parsed one by one: when every line has
# exactly one "link_id" field holding a plain string and one "created_utc" holding a plain integer
# (a JSON string cannot hold these patterns unescaped, so they only match real fields), the k-th
# match of each belongs to the k-th line. Lines of keyed submissions are then parsed as usual;
# the others only add their time to the month's span (unparsed, a malformed one among them is not
# counted in stat.errors.tsv: the one difference). Any other block is parsed line by line.
_LINK_ID, _CREATED = b'"link_id":', b'"created_utc":'
_LINK_RE = re.compile(rb'"link_id": *"([^"\\\n]*)"')
_TIME_RE = re.compile(rb'"created_utc": *(?:"(\d+)"|(\d+)[ ,}])')


def _keyed_lines(block, lines, links, span):
    """Indexes of the lines to parse; the others' times go to ``span``. None: parse all."""
    n = len(lines)
    found = _LINK_RE.findall(block)
    keyed = [i for i, link in enumerate(found) if link in links]
    if len(keyed) > n // 2:  # keys that keep most comments: checking would only add work
        return None
    if b'\r' in block or len(found) != n or list(map(bytes.count, lines, [_LINK_ID] * n)).count(1) != n or \
            list(map(bytes.count, lines, [_CREATED] * n)).count(1) != n:
        return None
    times = _TIME_RE.findall(block)
    if len(times) != n:
        return None
    if keyed:
        skip = set(keyed)
        times = [t for i, t in enumerate(times) if i not in skip]
    if times:
        t = [int(a or b) for a, b in times]
        span.merge((len(t), len(t), min(t), max(t)))
    return keyed


def _comment_block(task):
    """Parse one block of RC lines starting after input line ``start``.

    Returns (n lines, {chunk: (its rows as one UTF-8 blob, number of rows,
    line of the last row, that line's flush period, rows of the block in that
    period)}, error counts, first line per error, Span state of its records).  Rows leave the worker already joined and
    encoded: one bytes object per chunk pickles and writes far faster than
    row by row, which kept the parent busy enough to serialise the workers.
    """
    start, block = task
    keys, sid_to_sub, links = _CONTEXT['keys'], _CONTEXT['sid_to_sub'], _CONTEXT['links']
    rows, count, first, span = {}, Counter(), {}, Span()
    lines = split_lines(block)
    todo = None if links is None else _keyed_lines(block, lines, links, span)
    todo = enumerate(lines, start + 1) if todo is None else [(start + 1 + i, lines[i]) for i in todo]
    for line_no, line in todo:
        try:
            d = parse(line)
            span.add(created(d))
            r = comment_row(d, keys, sid_to_sub)
        except BadRecord as e:
            reason = e.args[0]
            count[reason] += 1
            first.setdefault(reason, line_no)
            continue
        if r is not None:
            rows.setdefault(r[0], []).append((line_no, r[1]))
    parts = {}
    for sub, kept in rows.items():
        last = kept[-1][0]
        p = last // FLUSH_EVERY
        in_p = sum(1 for line_no, _ in kept if line_no // FLUSH_EVERY == p)
        parts[sub] = ('\n'.join([row for _, row in kept]).encode('utf-8'), len(kept), last, p, in_p)
    return len(lines), parts, count, first, span.state()


def _batches(path, bar, lines_done):
    """Line batches of ``path``; a DumpError also says how many lines were read."""
    try:
        yield from iter_line_batches(path, bar.update)
    except DumpError as e:
        raise DumpError('%s (%d complete lines read before)' % (e, lines_done())) from None


def _blocks(path, bar):
    """(lines before it, line block) for each block of ``path`` (see iter_line_blocks).

    A DumpError also says how many lines were read.  Counting lines here is a
    C scan, so workers get absolute line numbers without waiting on each other.
    """
    n = 0
    try:
        for block in iter_line_blocks(path, bar.update):
            yield n, block
            n += block.count(b'\n') + 1 if b'\r' not in block else len(split_lines(block))
    except DumpError as e:
        raise DumpError('%s (%d complete lines read before)' % (e, n)) from None


def extract_comments(path, chunks, keys, errors, span, out, out_dir, gz, workers, log):
    """Write rc_sub chunks; return (kept, seen). ``span`` gets every record."""
    ext = CHUNK_EXT if gz else '.tsv'
    sid_to_sub = {}
    for sub, sids in enumerate(chunks):
        for sid in sids:
            sid_to_sub.setdefault(sid, sub)
    files = [out.open(os.path.join(out_dir, 'rc_sub%i%s' % (sub, ext)), level=CHUNK_ZSTD_LEVEL, zst=gz)
             for sub in range(len(chunks))]
    last_line = [0] * len(chunks)  # input line of the last row written to each chunk
    period = [0] * len(chunks)     # flush period (line // 1e5) of that row
    in_period = [0] * len(chunks)  # rows of the chunk in that period
    links = None if keys is None else {k.split('\t', 1)[0].encode('utf-8') for k in keys}
    _CONTEXT.update(keys=keys, sid_to_sub=sid_to_sub, links=links)
    bar = _progress(path, os.path.basename(path))
    n = m = 0
    pool = None
    if workers > 1 and 'fork' in multiprocessing.get_all_start_methods():
        pool = multiprocessing.get_context('fork').Pool(workers)
        results = pool.imap(_comment_block, _blocks(path, bar), chunksize=1)
    else:
        results = map(_comment_block, _blocks(path, bar))
    try:
        # The parent only decompresses, cuts blocks and writes blobs in input order.
        for n_lines, parts, count, first, block_span in results:
            errors.merge(count, first)
            span.merge(block_span)
            for sub, (data, k, last, p, in_p) in parts.items():
                f = files[sub]
                if last_line[sub]:
                    f.write(b'\n')
                f.write(data)
                last_line[sub] = last
                if p != period[sub]:
                    period[sub], in_period[sub] = p, 0
                in_period[sub] += in_p
                m += k
            n += n_lines
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _CONTEXT.clear()
        bar.close()
    # The original flushed rows with a trailing newline at every 1e5th input
    # line and joined the rest without one at the end.
    n_flushes = n // FLUSH_EVERY
    print('the rest...', file=log)
    for sub, f in enumerate(files):
        flushed = last_line[sub] and period[sub] < n_flushes
        if flushed:
            f.write(b'\n')
        print('    sub %i: %i' % (sub, 0 if flushed or not last_line[sub] else in_period[sub]), file=log)
    print('extract_comments done.\n', file=log)
    return m, n


def extract_month(month, rs_path, rc_path, out_dir, keys=None, split_size=500000,
                  workers=1, gz=False, log=None, accept_partial=False):
    """Run the extract step for one month; return (comments kept, seen, subs kept, seen).

    All files appear at once (temporary names, then renames) with stat.tsv
    last; on any error the month's outputs are removed and DumpError raised.
    That includes a dump with no records, or one whose records do not cover
    the month (see checks.py) unless ``accept_partial``.
    """
    log = log or sys.stdout
    os.makedirs(out_dir, exist_ok=True)
    stat_path = os.path.join(out_dir, 'stat.tsv')
    remove_quietly(stat_path)  # the make target: absent until the month is complete
    sub_errors, com_errors = Errors(), Errors()
    sub_span, com_span = Span(), Span()
    warn = functools.partial(print, file=sys.stderr)
    try:
        with AtomicFiles() as out:
            chunks, subs_kept, subs_seen = extract_submissions(
                rs_path, split_size, sub_errors, sub_span, out, out_dir, gz, log)
            check_month(rs_path, month, sub_span, subs_seen, accept_partial, warn)
            com_kept, com_seen = extract_comments(
                rc_path, chunks, keys, com_errors, com_span, out, out_dir, gz, workers, log)
            check_month(rc_path, month, com_span, com_seen, accept_partial, warn)
            out.commit()
    except DumpError:  # an earlier run's chunks must not pass for this dump's
        _remove_stale_chunks(out_dir, 0, '')
        remove_quietly(os.path.join(out_dir, 'stat.errors.tsv'))
        raise
    _remove_stale_chunks(out_dir, len(chunks), CHUNK_EXT if gz else '.tsv')
    rows = sub_errors.rows(month, 'RS') + com_errors.rows(month, 'RC')
    write_atomic(os.path.join(out_dir, 'stat.errors.tsv'), ''.join(r + '\n' for r in rows))
    for kind, path, errs in (('RS', rs_path, sub_errors), ('RC', rc_path, com_errors)):
        for reason in sorted(errs.count):
            print('warning: %s: %d line(s) dropped as %s (first: line %d)'
                  % (path, errs.count[reason], reason, errs.first[reason]), file=sys.stderr)
    write_atomic(stat_path, '\t'.join([month, str(com_kept), str(com_seen),
                                       str(subs_kept), str(subs_seen)]) + '\n')
    return com_kept, com_seen, subs_kept, subs_seen


def _remove_stale_chunks(out_dir, n_chunks, ext):
    """Chunk files of an earlier run (other split size or extension) would be read by conv."""
    keep = {'%s%d%s' % (p, i, ext) for p in ('rs_sub', 'rc_sub') for i in range(n_chunks)}
    for name in os.listdir(out_dir):
        if name.startswith(('rs_sub', 'rc_sub')) and name not in keep and '.tmp' not in name:
            os.remove(os.path.join(out_dir, name))
