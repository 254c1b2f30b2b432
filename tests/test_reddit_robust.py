"""reddit_extractor on bad input: formats, truncation, corrupt data, bad lines, atomic outputs, downloads."""
import bz2
import contextlib
import gzip
import http.server
import io
import json
import lzma
import os
import subprocess
import sys
import threading

import pytest
import zstandard

from reddit_extractor.cli import boolean, main, month_parser
from reddit_extractor.dumps import DumpError, iter_line_batches, sniff
from reddit_extractor.merge import cut_columns
from reddit_extractor.normalise import Blocklist, gpt_norm, load_tokenizer, tokenize
from reddit_extractor.outputs import AtomicFiles

TEXT = b'{"a": 1}\n{"b": 2}\r\nthird\rfourth\n\nlast-no-newline'
LINES = [b'{"a": 1}', b'{"b": 2}', b'third', b'fourth', b'', b'last-no-newline']
COMPRESS = {
    'zst': lambda b: zstandard.ZstdCompressor().compress(b),
    'gz': gzip.compress,
    'bz2': bz2.compress,
    'xz': lzma.compress,
    'plain': lambda b: b,
}


def lines_of(path):
    return [line for batch in iter_line_batches(str(path)) for line in batch]


@pytest.mark.parametrize('fmt', sorted(COMPRESS))
def test_format_sniffed_from_magic_bytes_not_name(tmp_path, fmt):
    p = tmp_path / 'RC_2011-01.zst.misnamed.txt'
    p.write_bytes(COMPRESS[fmt](TEXT))
    assert sniff(str(p)) == fmt
    assert lines_of(p) == LINES


def test_multi_frame_and_multi_member(tmp_path):
    p = tmp_path / 'x'
    p.write_bytes(gzip.compress(b'a\nb') + gzip.compress(b'c\n'))
    assert lines_of(p) == [b'a', b'bc']
    p.write_bytes(zstandard.ZstdCompressor().compress(b'a\n') + zstandard.ZstdCompressor().compress(b'b\n'))
    assert lines_of(p) == [b'a', b'b']


def test_zstd_2gib_window(golden):
    """The golden dumps declare a 2 GiB window: a default decompressor refuses them."""
    path = golden / 'reddit' / 'inputs' / 'reddit' / 'RS_2011-01.zst'
    assert len(lines_of(path)) == 301


@pytest.mark.parametrize('fmt', ['zst', 'gz', 'bz2', 'xz'])
def test_truncated_dump_is_an_error(tmp_path, fmt):
    data = COMPRESS[fmt](os.urandom(300000).hex().encode() + b'\n')
    p = tmp_path / ('RC_2011-01.' + fmt)
    p.write_bytes(data[:len(data) // 2])
    with pytest.raises(DumpError, match='truncated|corrupt') as e:
        lines_of(p)
    assert str(p) in str(e.value)


def test_corrupt_gz(tmp_path):
    data = bytearray(gzip.compress(b'hello world\n' * 1000))
    data[30:40] = b'\xff' * 10
    p = tmp_path / 'x.gz'
    p.write_bytes(bytes(data))
    with pytest.raises(DumpError, match='corrupt gz') as e:
        lines_of(p)
    assert str(p) in str(e.value)


JAN_2011 = 1293840000  # 2011-01-01 00:00 UTC; a few records cover any month (see checks.py)


def sub_line(sid, n=3, title='a title', t=JAN_2011 + 86400):
    return json.dumps({'id': sid, 'score': 5, 'num_comments': n, 'domain': 'self.x',
                       'permalink': '/r/x/comments/%s/t/' % sid, 'title': title, 'created_utc': t})


def com_line(cid, sid, parent, body='some words here', score=3, t=JAN_2011 + 86400):
    return json.dumps({'id': cid, 'author': 'u', 'parent_id': parent, 'link_id': 't3_' + sid,
                       'score': score, 'body': body, 'created_utc': str(t)})


def write_month(folder, month, rs, rc, fmt='zst'):
    folder.mkdir(parents=True, exist_ok=True)
    for kind, lines in (('RS', rs), ('RC', rc)):
        (folder / ('%s_%s.%s' % (kind, month, fmt))).write_bytes(COMPRESS[fmt](('\n'.join(lines) + '\n').encode()))


def good_month():
    rc = [com_line('c%d' % i, 's1', 't3_s1' if i == 0 else 't1_c%d' % (i - 1)) for i in range(6)]
    return [sub_line('s1')], rc


def run_cli(argv):
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(argv)
    return rc, so.getvalue(), se.getvalue()


def test_bad_lines_counted_not_traced(tmp_path):
    rs, rc = good_month()
    rs += ['not json', json.dumps({'id': 's2', 'num_comments': None, 'title': 't'}), '[1, 2]']
    rc += ['{"id": "x", "body": "trunc', json.dumps({'id': 'nb', 'link_id': 't3_s1'}),
           json.dumps({'id': 'nn', 'link_id': 't3_s1', 'body': None}),
           json.dumps({'id': 'na', 'link_id': 't3_s1', 'parent_id': 't3_s1', 'score': 1, 'body': 'two words'}),
           '\xff\xfe']
    write_month(tmp_path / 'in', '2011-01', rs, rc)
    rc_, out, err = run_cli(['2011-01', '--task=extract', '--reddit_input', str(tmp_path / 'in'),
                             '--reddit_output', str(tmp_path / 'out')])
    assert rc_ == 0
    assert 'Traceback' not in err
    d = tmp_path / 'out' / 'extract' / '2011-01'
    assert (d / 'stat.tsv').read_text() == '2011-01\t6\t11\t1\t4\n'
    errors = {tuple(r.split('\t')[1:4]) for r in (d / 'stat.errors.tsv').read_text().splitlines()}
    assert errors == {('RS', 'bad_json', '1'), ('RS', 'null_num_comments', '1'), ('RS', 'not_an_object', '1'),
                      ('RC', 'bad_json', '2'), ('RC', 'missing_body', '1'), ('RC', 'null_body', '1'),
                      ('RC', 'missing_author', '1')}
    assert 'missing_body' in err  # a one-line summary per reason on stderr


def test_truncated_month_fails_cleanly_others_unaffected(tmp_path):
    rs, rc = good_month()
    write_month(tmp_path / 'in', '2011-01', rs, rc)
    write_month(tmp_path / 'in', '2011-02', rs, rc * 2000)
    bad = tmp_path / 'in' / 'RC_2011-02.zst'
    bad.write_bytes(bad.read_bytes()[:-20])
    common = ['--reddit_input', str(tmp_path / 'in'), '--reddit_output', str(tmp_path / 'out')]
    # an earlier complete run of the month must not survive a failed rerun
    d2 = tmp_path / 'out' / 'extract' / '2011-02'
    d2.mkdir(parents=True)
    (d2 / 'stat.tsv').write_text('old\n')
    rc_, _, err = run_cli(['2011-02', '--task=extract'] + common)
    assert rc_ == 1
    assert 'RC_2011-02.zst' in err and 'truncated' in err and 'lines read' in err and 'Traceback' not in err
    assert sorted(os.listdir(d2)) == []  # no partial chunk, no temp file, no stat.tsv
    assert run_cli(['2011-01', '--task=extract'] + common)[0] == 0
    assert run_cli(['2011-01', '--task=conv', '--min_depth', '2'] + common)[0] == 0
    assert (tmp_path / 'out' / 'conv' / '2011-01.tsv').read_text().count('\n') == 6  # default --use_title 1
    # conv of the failed month says what is missing
    rc_, _, err = run_cli(['2011-02', '--task=conv'] + common)
    assert rc_ == 1 and 'run the extract step first' in err


def test_atomic_files_abort(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicFiles() as out:
            out.open(str(tmp_path / 'a.tsv')).write(b'partial')
            out.open(str(tmp_path / 'b.tsv.gz'), gz=True).write(b'partial')
            raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_outputs_are_fsynced_atomic_files(tmp_path, monkeypatch):
    """Every output goes through lsp_io.atomic: temporary name in its folder, fsync, rename."""
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: (synced.append(os.readlink('/proc/self/fd/%d' % fd)), real_fsync(fd))[1])
    rs, rc = good_month()
    write_month(tmp_path / 'in', '2011-01', rs, rc)
    common = ['--reddit_input', str(tmp_path / 'in'), '--reddit_output', str(tmp_path / 'out'), '--gzip', 'true']
    assert run_cli(['2011-01', '--task=extract'] + common)[0] == 0
    assert run_cli(['2011-01', '--task=conv'] + common)[0] == 0
    month = str(tmp_path / 'out' / 'conv' / '2011-01.tsv.gz')
    assert run_cli(['concat', str(tmp_path / 'all.tsv.gz'), month, month])[0] == 0
    assert run_cli(['cut', str(tmp_path / 'train.tsv'), str(tmp_path / 'all.tsv.gz')])[0] == 0
    # lsp_io.atomic also fsyncs the folders; the outputs are the temporary files it synced
    finals = sorted(os.path.basename(p).split('.tmp-')[0][1:] for p in synced if '.tmp-' in os.path.basename(p))
    assert finals == ['2011-01.stat.tsv', '2011-01.tsv.gz', 'all.tsv.gz', 'rc_sub0.tsv.zst', 'rs_sub0.tsv.zst',
                      'stat.errors.tsv', 'stat.tsv', 'train.tsv']
    assert gzip.decompress((tmp_path / 'all.tsv.gz').read_bytes()) == 2 * gzip.decompress(open(month, 'rb').read())
    leftovers = [p for p in tmp_path.rglob('*') if '.tmp' in p.name]
    assert leftovers == []


def test_empty_train_tsv_detected(tmp_path):
    empty = tmp_path / 'm.tsv.gz'
    empty.write_bytes(gzip.compress(b''))
    with pytest.raises(DumpError, match='only 0 lines'):
        cut_columns([str(empty)], str(tmp_path / 'train.tsv'))
    assert not (tmp_path / 'train.tsv').exists()
    rc_, _, err = run_cli(['cut', str(tmp_path / 'train.tsv'), str(empty)])
    assert rc_ == 1 and 'only 0 lines' in err


def test_missing_dump_message(tmp_path):
    rc_, _, err = run_cli(['2011-01', '--task=extract', '--reddit_input', str(tmp_path), '--reddit_output', str(tmp_path)])
    assert rc_ == 1 and 'RS_2011-01' in err and 'not found' in err


def test_booleans():
    assert boolean('True') and boolean('true') and boolean('1')
    assert not boolean('False') and not boolean('false') and not boolean('0')
    a = month_parser().parse_args(['2011-01', '--parallel=True', '--clean', 'False', '--ignore_keys'])
    assert a.parallel is True and a.clean is False and a.ignore_keys is True
    with pytest.raises(SystemExit):
        month_parser().parse_args(['2011-01', '--clean', 'maybe'])


def test_blocklist_whole_words_case_insensitive():
    bl = Blocklist(['hate', 'shut up'])
    assert bl.search('I HATE it') and bl.search('shut up !') and bl.search("hate's")
    assert not bl.search('whatever hateful') and not bl.search('shut upper') and not bl.search('hate_x')


def test_word_blocklist_drops_targets_without_leaves_only(tmp_path):
    """--clean --bl_words --leaves_only 0 (not the Makefile's settings): a blocked target is a skip line."""
    rs, rc = good_month()
    rc[3] = com_line('c3', 's1', 't1_c2', body='that is so Stupid really')
    write_month(tmp_path / 'in', '2011-01', rs, rc)
    (tmp_path / 'words.txt').write_text('# comment\nstupid\nshut up\n')
    common = ['--reddit_input', str(tmp_path / 'in'), '--reddit_output', str(tmp_path / 'out')]
    assert run_cli(['2011-01', '--task=extract'] + common)[0] == 0
    rc_, _, err = run_cli(['2011-01', '--task=conv', '--clean', 'true', '--bl_words', str(tmp_path / 'words.txt'),
                           '--leaves_only', '0', '--use_title', '0'] + common)
    assert rc_ == 0, err
    skips = [line for line in err.splitlines() if line.startswith('skip')]
    # targets in (link_id, parent_id, id) order: c3 (parent t1_c2) before c0 (parent t3_s1)
    assert skips == ["skip\toffensive\tx\tself.x\tthat is so Stupid really\tbad word(s): ['stupid']",
                     'skip\tmin_depth\tx\tself.x\tsome words here\tdepth 1 < 2: some words here']
    out = (tmp_path / 'out' / 'conv' / '2011-01.tsv').read_text()
    assert out.count('\n') == 4 and 'Stupid' in out  # c1, c2, c4, c5 kept; c3 as context only
    assert Blocklist(['Shut up', 'hate']).found('HATE it , shut up and hate') == ['hate', 'Shut up', 'hate']


def test_fast_tokenize_equals_nltk(golden):
    from reddit_extractor.normalise import _ILLEGAL, minimal_norm
    bodies = []
    for line in (golden / 'reddit' / 'inputs' / 'RC_2011-01.jsonl').read_text().splitlines():
        try:
            bodies.append(json.loads(line)['body'])
        except (ValueError, KeyError):
            pass
    bodies += ['a. . b', 'call 555 123 4567 now', 'foo.com/x (y) :) :-( ...... ?!?!', '__url__ URLs',
               # fewer than 7 digits: per-word path; 7+: whole text (a phone number may span spaces)
               'I have 2 dogs, 3 cats and 10.5 fish in 2011', '12 34 5', '555 1234', '1 2 3 4 5 6 7',
               # words of the plain shape (letters, inner apostrophes, trailing .,!?) and near misses
               "don't stop!!!! ok... D: xD. U.S. e.g. a.com co. Hmm?! it's, we're. P.", "D. d! dP, Xd?"]
    for b in bodies:
        t = _ILLEGAL.sub(' ', minimal_norm(b))
        assert tokenize(t) == load_tokenizer().tokenize(t), b
    assert gpt_norm('I <3 b/c w/ #tag http://x.y CURLY “hi”') == 'I 3 because with __url__ C__url__Y “ hi ”'


class RangeHandler(http.server.BaseHTTPRequestHandler):
    data = b''

    def do_GET(self):
        if not self.path.endswith('RC_2011-01.zst'):
            self.send_error(404)
            return
        start = 0
        if 'Range' in self.headers:
            start = int(self.headers['Range'].split('=')[1].split('-')[0])
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(self.data) - start))
        self.end_headers()
        self.wfile.write(self.data[start:])

    def log_message(self, *a):
        pass


def test_download_resumes_with_range(tmp_path):
    rs, rc = good_month()
    write_month(tmp_path / 'src', '2011-01', rs, rc)
    RangeHandler.data = (tmp_path / 'src' / 'RC_2011-01.zst').read_bytes()
    server = http.server.HTTPServer(('127.0.0.1', 0), RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = 'http://127.0.0.1:%d' % server.server_address[1]
        dest = tmp_path / 'dl'
        dest.mkdir()
        (dest / 'RC_2011-01.zst.part').write_bytes(RangeHandler.data[:10])  # an interrupted earlier try
        (dest / 'RS_2011-01.zst').write_bytes((tmp_path / 'src' / 'RS_2011-01.zst').read_bytes())
        rc_, _, err = run_cli(['2011-01', '--task=extract', '--reddit_input', str(dest),
                               '--reddit_output', str(tmp_path / 'out'), '--base_url', base])
        assert rc_ == 0, err
        assert (dest / 'RC_2011-01.zst').read_bytes() == RangeHandler.data
        assert not (dest / 'RC_2011-01.zst.part').exists()
        rc_, _, err = run_cli(['fetch', base + '/nothere.zst', str(tmp_path / 'x.zst')])
        assert rc_ == 1 and 'HTTP 404' in err and 'by hand' in err
    finally:
        server.shutdown()


def test_reddit_extractor_does_not_import_the_model_package():
    code = ('import sys, reddit_extractor.cli, reddit_extractor.download, reddit_extractor.extract, '
            'reddit_extractor.conv, reddit_extractor.multiref, reddit_extractor.merge; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("lsp_model", "lsp_data", "torch")))')
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]'


def test_two_workers_months_merge_like_one(golden, tmp_path):
    """Cluster style: months processed by separate worker processes, then concatenated."""
    inp = tmp_path / 'in'
    inp.mkdir()
    src = golden / 'reddit' / 'inputs' / 'reddit'
    for month in ('2011-01', '2011-02'):
        for kind in ('RS', 'RC'):
            os.symlink(src / ('%s_2011-01.zst' % kind), inp / ('%s_%s.zst' % (kind, month)))
    conv = ['--min_score', '1', '--max_depth', '5', '--use_title', '0', '--leaves_only', '1', '--clean', 'true',
            '--gzip', 'true']

    # 2011-02 is the January dump again: its records are a month off, accepted on purpose
    extract = ['--task=extract', '--accept_partial']

    def job(month, out):
        base = [sys.executable, '-m', 'reddit_extractor', month, '--reddit_input', str(inp), '--reddit_output', str(out)]
        return ' '.join(base + extract + ['--gzip', 'true']) + ' && ' + ' '.join(base + ['--task=conv'] + conv)

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get('PYTHONPATH', ''))
    procs = [subprocess.Popen(job(m, tmp_path / ('node%d' % k)), shell=True, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for k, m in enumerate(('2011-01', '2011-02'))]
    assert [p.wait() for p in procs] == [0, 0]
    parts = [str(tmp_path / 'node0' / 'conv' / '2011-01.tsv.gz'), str(tmp_path / 'node1' / 'conv' / '2011-02.tsv.gz')]
    cut_columns(parts, str(tmp_path / 'train.tsv'))
    # reference: one process, both months in turn
    for m in ('2011-01', '2011-02'):
        assert run_cli([m, '--reddit_input', str(inp), '--reddit_output', str(tmp_path / 'one')] + extract)[0] == 0
        assert run_cli([m, '--reddit_input', str(inp), '--reddit_output', str(tmp_path / 'one'), '--task=conv'] + conv)[0] == 0
    cut_columns([str(tmp_path / 'one' / 'conv' / ('%s.tsv.gz' % m)) for m in ('2011-01', '2011-02')],
                str(tmp_path / 'train_one.tsv'))
    assert (tmp_path / 'train.tsv').read_bytes() == (tmp_path / 'train_one.tsv').read_bytes()
    n = (tmp_path / 'train.tsv').read_bytes().count(b'\n')
    assert n > 0 and n % 2 == 0
