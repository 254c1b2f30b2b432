"""Keyed extract: lines of submissions without keys are skipped from their bytes, same output."""
import io
import json

import pytest

from reddit_extractor import extract

from test_reddit_robust import JAN_2011, com_line, sub_line, write_month


def month(odd=None):
    """Submissions s0..s9 (s0 keyed); ``odd`` is a comment line added to an unkeyed thread."""
    rs = [sub_line('s%d' % s, t=JAN_2011 + s * 260000) for s in range(10)]
    rc = []
    for i in range(200):
        s = i % 10
        rc.append(com_line('c%d' % i, 's%d' % s, 't3_s%d' % s if i < 10 else 't1_c%d' % (i - 10),
                           body='words number %d' % i, t=JAN_2011 + 600 + i * 13300))
    # a body quoting the keyed submission's field, escaped as JSON must: not a field of its own
    rc.append(com_line('q1', 's3', 't3_s3', body='"link_id":"t3_s0" and "created_utc":1 quoted'))
    rc.append(json.dumps({'id': 'm2', 'author': 'u', 'link_id': 't3_s0', 'score': 1,
                          'body': 'keyed but no parent', 'created_utc': JAN_2011 + 9}))
    if odd is not None:
        rc.insert(50, odd)
    keys = {'t3_s0\tt1_c%d' % i for i in range(0, 200, 10)} | {'t3_s0\tt1_m2'}
    return rs, rc, keys


def run(tmp_path, name, rs, rc, keys):
    write_month(tmp_path / ('in-' + name), '2011-01', rs, rc)
    src, out = tmp_path / ('in-' + name), tmp_path / name
    extract.extract_month('2011-01', str(src / 'RS_2011-01.zst'), str(src / 'RC_2011-01.zst'), str(out),
                          keys=keys, log=io.StringIO())
    return {p.name: p.read_bytes() for p in out.iterdir()}


def parse_counted(monkeypatch):
    parsed = []
    real_parse = extract.parse

    def counting_parse(line):
        parsed.append(line)
        return real_parse(line)
    monkeypatch.setattr(extract, 'parse', counting_parse)
    return parsed


@pytest.mark.parametrize('odd', [
    None,
    com_line('f1', 's4', 't3_s4', t='1293926400.5'),  # a float time: the block is parsed line by line
    json.dumps({'id': 'm1', 'author': 'u', 'parent_id': 't3_s2', 'link_id': 't3_s2', 'score': 1,
                'body': 'no time here'}),  # no created_utc: the same
    '{"link_id": "t3_s6", "link_id": "t3_s0", "id": "c0", "created_utc": 1293926400}',  # twice: the same
])
def test_keyed_skip_equals_full_parse(tmp_path, monkeypatch, odd):
    rs, rc, keys = month(odd)
    parsed = parse_counted(monkeypatch)
    fast = run(tmp_path, 'fast', rs, rc, keys)
    n_fast = len(parsed)
    monkeypatch.setattr(extract, '_keyed_lines', lambda *a: None)
    slow = run(tmp_path, 'slow', rs, rc, keys)
    assert fast == slow
    assert b'c10\t' in fast['rc_sub0.tsv'] and b'c11\t' not in fast['rc_sub0.tsv']
    assert len(parsed) - n_fast == len(rs) + len(rc)
    if odd is None:  # the submissions, then only the keyed thread's 20 comments and m2
        assert n_fast == len(rs) + 21
    else:
        assert n_fast == len(rs) + len(rc)


def test_keyed_skip_does_not_validate_unkeyed_lines(tmp_path, monkeypatch):
    """A malformed line in a thread without keys is dropped unparsed, so it is not counted as an
    error (the one difference from a full parse); the chunks and stat.tsv are the same."""
    rs, rc, keys = month('{"id": "x", "link_id": "t3_s5", "created_utc": 1293926400, "body": "trunc')
    fast = run(tmp_path, 'fast', rs, rc, keys)
    monkeypatch.setattr(extract, '_keyed_lines', lambda *a: None)
    slow = run(tmp_path, 'slow', rs, rc, keys)
    m2 = b'2011-01\tRC\tmissing_parent_id\t1\t203\n'  # keyed, so parsed either way
    assert fast.pop('stat.errors.tsv') == m2
    assert slow.pop('stat.errors.tsv') == b'2011-01\tRC\tbad_json\t1\t51\n' + m2
    assert fast == slow
