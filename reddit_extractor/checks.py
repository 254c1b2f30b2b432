"""Is a dump the whole month?  Checks made before and while a month is extracted.

A dump cut exactly at a gzip member / zstd frame / bz2 stream boundary decompresses cleanly, so
reading it to its end proves nothing.  What the data says instead: pushshift dumps are ordered by
``created_utc``, so a cut dump's records stop early.  Per dump file:

* records: a file with no record (0 bytes, or no line that is a JSON object) is an error;
* coverage: the earliest ``created_utc`` must lie within ``T`` of the month's first second and the
  latest within ``T`` of its last, where ``T = max(1 day, 50 * month length / records)``: a day
  for any real month, more for a sparse one (the golden set's 300 submissions give 5.2 days),
  since a complete month of n records leaves gaps of about length/n at its edges.  A miss is an
  error unless ``accept_partial`` (``--accept_partial``, make ``ACCEPT_PARTIAL=1``), which makes
  it a warning.  RC_2005-12 is exempt at its start: Reddit added comments during that month;
* manifest (optional): size and sha256 as listed (``sha256  size  name`` lines, lsp_io.download).
"""
import calendar
import datetime
import os
from pathlib import Path

from lsp_io.download import DownloadError, check_file, read_manifest

from .dumps import DumpError

DAY = 86400
MIN_TOLERANCE = DAY
EDGE_GAPS = 50  # a complete month's edge gap is about (month length / records); allow 50 of them
LATE_START = {'RC_2005-12'}  # Reddit added comments during December 2005


def created(d):
    """``created_utc`` of a record as int seconds (int, or a string in older dumps), or None."""
    t = d.get('created_utc')
    if type(t) is int:
        return t
    try:
        return int(t)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(t))
        except (TypeError, ValueError, OverflowError):
            return None


class Span:
    """Records seen, records with a time, and the earliest/latest time."""

    def __init__(self):
        self.records = self.timed = 0
        self.first = self.last = None

    def add(self, t):
        self.records += 1
        if t is None:
            return
        self.timed += 1
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t

    def state(self):
        return self.records, self.timed, self.first, self.last

    def merge(self, state):
        records, timed, first, last = state
        self.records += records
        self.timed += timed
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last > self.last):
            self.last = last


def month_bounds(month):
    """(first second, first second of the next month) of ``YYYY-MM``, UTC epoch seconds."""
    y, m = map(int, month.split('-'))
    start = calendar.timegm((y, m, 1, 0, 0, 0))
    return start, start + calendar.monthrange(y, m)[1] * DAY


def _when(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')


def coverage_problem(name, month, span):
    """None when ``span`` covers ``month``, else why not (one line, without the file name)."""
    start, end = month_bounds(month)
    if span.timed == 0:
        return 'no record has a created_utc, so whether the month is whole cannot be checked'
    tol = max(MIN_TOLERANCE, EDGE_GAPS * (end - start) / span.timed)
    allowed = 'allowed: %.1f days' % (tol / DAY)
    if span.first < start - tol:
        return ('its records start at %s, before the month (%s): a dump of another month?'
                % (_when(span.first), allowed))
    if span.last > end - 1 + tol:
        return 'its records end at %s, after the month (%s): a dump of another month?' % (_when(span.last), allowed)
    if span.last < end - 1 - tol:
        return ('its records end at %s, %.1f days before the month ends (%s): the dump looks cut short'
                % (_when(span.last), (end - 1 - span.last) / DAY, allowed))
    if name not in LATE_START and span.first > start + tol:
        return ('its records start at %s, %.1f days after the month begins (%s): the dump is incomplete'
                % (_when(span.first), (span.first - start) / DAY, allowed))
    return None


def check_month(path, month, span, lines, accept_partial, warn):
    """Raise DumpError for a dump with no record, or one not covering ``month`` unless accepted
    (then ``warn`` gets the line)."""
    if span.records == 0:
        what = '0 bytes' if os.path.getsize(path) == 0 else '%d line(s), none a JSON object' % lines
        raise DumpError('%s: no records (%s): an empty month is an error' % (path, what))
    kind = os.path.basename(path).split('.')[0]
    problem = coverage_problem(kind, month, span)
    if problem is None:
        return
    if not accept_partial:
        raise DumpError('%s: %s. Replace the dump, or pass --accept_partial (make ACCEPT_PARTIAL=1) '
                        'to use it as it is' % (path, problem))
    warn('warning: %s: %s (accepted: --accept_partial)' % (path, problem))


def manifest_entry(manifest, path):
    """(size, sha256) of dump ``path`` in the manifest file; a file not listed is an error."""
    try:
        entries = read_manifest(manifest)
    except DownloadError as e:
        raise DumpError(str(e)) from None
    name = os.path.basename(path)
    if name not in entries:
        raise DumpError('%s: not listed in the manifest %s' % (path, manifest))
    return entries[name]


def check_manifest(manifest, path):
    """Raise DumpError when ``path`` differs from its manifest line (size, then sha256)."""
    size, sha256 = manifest_entry(manifest, path)
    problem = check_file(Path(path), size, sha256)
    if problem is not None:
        raise DumpError('%s (manifest %s)' % (problem, manifest))
