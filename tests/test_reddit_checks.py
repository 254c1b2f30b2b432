"""Is a dump the whole month: truncation at a frame boundary, empty dumps, time coverage, manifests."""
import bz2
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest
import zstandard

from reddit_extractor.checks import Span, coverage_problem, month_bounds
from reddit_extractor.cli import main

COMPRESS = {'zst': lambda b: zstandard.ZstdCompressor().compress(b), 'gz': gzip.compress, 'bz2': bz2.compress}
N_SUBS, N_COMS = 1000, 2000


def month_records(month='2011-01'):
    """RS and RC lines spread evenly over the month, as a complete dump's would be."""
    start, end = month_bounds(month)

    def t(i, n):
        return start + int((i + 0.5) * (end - start) / n)

    rs = [json.dumps({'id': 's%d' % i, 'score': 1, 'num_comments': 3, 'domain': 'self.x', 'title': 'a title',
                      'permalink': '/r/x/comments/s%d/t/' % i, 'created_utc': t(i, N_SUBS)}) for i in range(N_SUBS)]
    rc = [json.dumps({'id': 'c%d' % i, 'author': 'u', 'parent_id': 't3_s%d' % (i // 2), 'link_id': 't3_s%d' % (i // 2),
                      'score': 2, 'body': 'some words here', 'created_utc': str(t(i, N_COMS))}) for i in range(N_COMS)]
    return rs, rc


def write(path, lines, fmt='zst', frames=1):
    """``lines`` compressed as ``frames`` concatenated frames/members/streams; returns the frame byte sizes."""
    k = len(lines) // frames
    parts = [COMPRESS[fmt](('\n'.join(lines[i * k:(i + 1) * k if i < frames - 1 else None]) + '\n').encode())
             for i in range(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b''.join(parts))
    return [len(p) for p in parts]


def run(argv):
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(argv)
    return rc, se.getvalue()


def extract(tmp_path, month='2011-01', *extra):
    return run([month, '--task=extract', '--reddit_input', str(tmp_path / 'in'),
                '--reddit_output', str(tmp_path / 'out')] + list(extra))


def errors(err):
    return [line for line in err.splitlines() if line.startswith(('error', 'warning'))]


@pytest.mark.parametrize('fmt', sorted(COMPRESS))
def test_dump_cut_at_a_frame_boundary_fails_the_month(tmp_path, fmt):
    rs, rc = month_records()
    write(tmp_path / 'in' / ('RS_2011-01.' + fmt), rs, fmt)
    rc_path = tmp_path / 'in' / ('RC_2011-01.' + fmt)
    first, _ = write(rc_path, rc, fmt, frames=2)
    assert extract(tmp_path)[0] == 0  # the whole month passes
    rc_path.write_bytes(rc_path.read_bytes()[:first])  # half a month: decompresses cleanly
    status, err = extract(tmp_path)
    assert status == 1
    assert errors(err) == ['error: %s: its records end at 2011-01-16 11:48 UTC, 15.5 days before the month '
                           'ends (allowed: 1.6 days): the dump looks cut short. Replace the dump, or pass '
                           '--accept_partial (make ACCEPT_PARTIAL=1) to use it as it is' % rc_path]
    assert sorted(os.listdir(tmp_path / 'out' / 'extract' / '2011-01')) == []  # nothing of the month left
    status, err = extract(tmp_path, '2011-01', '--accept_partial')
    assert status == 0 and errors(err)[0].startswith('warning: %s: its records end' % rc_path)
    assert errors(err)[0].endswith('(accepted: --accept_partial)')
    assert (tmp_path / 'out' / 'extract' / '2011-01' / 'stat.tsv').read_text() == '2011-01\t1000\t1000\t1000\t1000\n'


def test_empty_dumps_are_errors(tmp_path):
    rs, rc = month_records()
    write(tmp_path / 'in' / 'RC_2011-01.zst', rc)
    (tmp_path / 'in' / 'RS_2011-01.zst').write_bytes(b'')
    status, err = extract(tmp_path)
    assert status == 1 and errors(err) == ['error: %s: no records (0 bytes): an empty month is an error'
                                           % (tmp_path / 'in' / 'RS_2011-01.zst')]
    write(tmp_path / 'in' / 'RS_2011-01.zst', rs)
    write(tmp_path / 'in' / 'RC_2011-01.zst', ['not json', '[1]'])
    status, err = extract(tmp_path, '2011-01', '--accept_partial')  # accepting partial months does not help
    assert status == 1 and errors(err)[-1] == ('error: %s: no records (2 line(s), none a JSON object): an empty '
                                               'month is an error' % (tmp_path / 'in' / 'RC_2011-01.zst'))


def test_coverage_rule():
    start, end = month_bounds('2011-01')
    assert (start, end) == (1293840000, 1296518400)

    def span(first, last, n):
        s = Span()
        s.merge((n, n, first, last))
        return s

    day = 86400
    assert coverage_problem('RC_2011-01', '2011-01', span(start + 10, end - 10, 10 ** 6)) is None
    assert coverage_problem('RC_2011-01', '2011-01', span(start + day - 60, end - day + 60, 10 ** 6)) is None
    assert 'cut short' in coverage_problem('RC_2011-01', '2011-01', span(start, end - 2 * day, 10 ** 6))
    assert 'days after the month begins' in coverage_problem('RC_2011-01', '2011-01', span(start + 2 * day, end - 1, 10 ** 6))
    assert 'another month' in coverage_problem('RC_2011-02', '2011-02', span(start, end - 1, 10 ** 6))
    assert 'no record has a created_utc' in coverage_problem('RC_2011-01', '2011-01', Span())
    # a sparse month gets 50 average gaps of slack: the golden set's 300 submissions end 3 days early
    assert coverage_problem('RS_2011-01', '2011-01', span(start, end - 3 * day, 300)) is None
    assert 'cut short' in coverage_problem('RS_2011-01', '2011-01', span(start, end - 6 * day, 300))
    # Reddit added comments in December 2005: that month's start is not checked
    s05, e05 = month_bounds('2005-12')
    assert coverage_problem('RC_2005-12', '2005-12', span(s05 + 10 * day, e05 - 60, 1000)) is None
    assert 'begins' in coverage_problem('RS_2005-12', '2005-12', span(s05 + 10 * day, e05 - 60, 1000))


def test_manifest(tmp_path):
    rs, rc = month_records()
    write(tmp_path / 'in' / 'RS_2011-01.zst', rs)
    write(tmp_path / 'in' / 'RC_2011-01.zst', rc)
    data = {k: (tmp_path / 'in' / ('%s_2011-01.zst' % k)).read_bytes() for k in ('RS', 'RC')}
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in data.items()}
    man = tmp_path / 'dumps.sha256'
    man.write_text('# sha256  size  name\n%s  %d  RS_2011-01.zst\n-  %d  RC_2011-01.zst\n'
                   % (sha['RS'], len(data['RS']), len(data['RC'])))
    assert extract(tmp_path, '2011-01', '--manifest', str(man))[0] == 0
    man.write_text('%s  %d  RS_2011-01.zst\n-  %d  RC_2011-01.zst\n' % (sha['RS'], len(data['RS']), len(data['RC']) + 1))
    status, err = extract(tmp_path, '2011-01', '--manifest', str(man))
    rc_path = tmp_path / 'in' / 'RC_2011-01.zst'
    assert status == 1 and errors(err) == ['error: %s has %d bytes, expected %d (manifest %s)'
                                           % (rc_path, len(data['RC']), len(data['RC']) + 1, man)]
    man.write_text('%s  %d  RS_2011-01.zst\n' % ('0' * 64, len(data['RS'])))  # same size, other bytes
    status, err = extract(tmp_path, '2011-01', '--manifest', str(man))
    assert status == 1 and errors(err) == ['error: %s: sha256 %s, expected %s (manifest %s)'
                                           % (tmp_path / 'in' / 'RS_2011-01.zst', sha['RS'], '0' * 64, man)]
    man.write_text('%s  %d  RS_2011-01.zst\n' % (sha['RS'], len(data['RS'])))
    status, err = extract(tmp_path, '2011-01', '--manifest', str(man))
    assert status == 1 and errors(err) == ['error: %s: not listed in the manifest %s' % (rc_path, man)]
    man.write_text('%s %d\n' % (sha['RS'], len(data['RS'])))
    status, err = extract(tmp_path, '2011-01', '--manifest', str(man))
    assert status == 1 and errors(err)[0].startswith("error: %s:1: expected 'sha256  size  name'" % man)


@pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')
def test_make_fails_a_cut_month_and_checks_the_manifest(repo_dir, tmp_path):
    rs, rc = month_records()
    write(tmp_path / 'in' / 'RS_2011-01.zst', rs)
    first, _ = write(tmp_path / 'in' / 'RC_2011-01.zst', rc, frames=2)
    rc_path = tmp_path / 'in' / 'RC_2011-01.zst'
    rc_path.write_bytes(rc_path.read_bytes()[:first])
    keys = tmp_path / 'keys'
    keys.mkdir()
    (keys / '.create').touch()
    (keys / '2011-01.gz').write_bytes(gzip.compress(b''))
    target = str(tmp_path / 'out' / 'train' / 'extract' / '2011-01' / 'stat.tsv')

    def make(*args):
        return subprocess.run(['make', '-C', str(repo_dir / 'reddit_extractor'), 'S=' + str(tmp_path / 'in'),
                               'K=' + str(keys), 'T=' + str(tmp_path / 'out'), target] + list(args),
                              capture_output=True, text=True)

    r = make()
    assert r.returncode != 0
    shown = [line for line in r.stderr.splitlines() if not line.startswith('make')]
    assert shown[0].startswith('FAILED: %s (log: ' % target) and len(shown) == 2  # the error line, no noise
    assert shown[1].startswith('error: %s: its records end at 2011-01-16' % rc_path) and 'ACCEPT_PARTIAL=1' in shown[1]
    assert not os.path.exists(target)
    r = make('ACCEPT_PARTIAL=1')
    assert r.returncode == 0, r.stderr
    os.remove(target)
    man = tmp_path / 'dumps.sha256'
    man.write_text('-  %d  RS_2011-01.zst\n-  1  RC_2011-01.zst\n' % (tmp_path / 'in' / 'RS_2011-01.zst').stat().st_size)
    r = make('ACCEPT_PARTIAL=1', 'MANIFEST=' + str(man))
    assert r.returncode != 0
    assert ('error: %s has %d bytes, expected 1 (manifest %s)' % (rc_path, first, man)) in r.stderr
