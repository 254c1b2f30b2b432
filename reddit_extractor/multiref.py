"""create-multiref: the 6k multi-reference test file, and the final ``test.refs.txt``.

``test-multi-refs-ids.txt`` lines are ``multiref<TAB>score,t3_sid,t1_pid,t1_cid<TAB>...``.
For each, the output line is ``src<TAB>score|ref<TAB>score|ref...`` where every
ref shares the source of the first one.  Kept quirks of the original: a line
whose first field is not ``multiref`` is reported ("Ignoring line") but still
used; a line whose first ID is missing is dropped; curly double quotes in the
data become ``"``.
"""
import re
import sys

from .dumps import read_text_lines
from .outputs import AtomicFiles

_SCORE = re.compile(r'[0-9]+\|')


def load_data(path, err):
    """``sid,pid,cid`` -> (src, tgt) from a conv/test tsv(.gz)."""
    data = {}
    for no, line in enumerate(read_text_lines(path), 1):
        cells = line.replace('“', '"').replace('”', '"').split('\t')
        if len(cells) != 3:
            print('Warning: %s line %d: not 3 tab-separated fields, skipped' % (path, no), file=err)
            continue
        data[cells[0]] = (cells[1], cells[2])
    return data


def multiref_lines(data, id_lines, err):
    """Yield the scored multi-ref lines (without newline)."""
    for line in id_lines:
        line = line.strip()
        cells = line.split('\t')
        if cells[0] != 'multiref':
            print('Ignoring line: ' + line, file=err)  # ... and, as the original, use it anyway
        src, refs = None, []
        for cell in cells[1:]:
            score, rid = cell.split(',', 1) if ',' in cell else (cell, '')
            if rid not in data:
                print("Error: can't find data for ref ID: " + rid, file=err)
                if src is None:
                    break  # no source to compare with: the whole line is dropped
                continue
            s, tgt = data[rid]
            if src is None:
                src = s
            elif s != src:
                print('Error: mismatch source for ref ID: ' + rid, file=err)
                continue
            refs.append(score + '|' + tgt)
        if src is not None:
            yield src + '\t' + '\t'.join(refs)


def create_multiref(data_path, ids_path, out_path, err=None):
    """Write ``out_path`` (test.scored_refs.txt); return the number of lines."""
    err = err or sys.stderr
    data = load_data(data_path, err)
    n = 0
    with AtomicFiles() as files:
        f = files.open(out_path)
        for line in multiref_lines(data, read_text_lines(ids_path), err):
            f.write((line + '\n').encode('utf-8'))
            n += 1
        files.commit()
    return n


def strip_scores(in_path, out_path):
    """The Makefile's ``sed 's/[0-9]\\+|//g'``: drop every ``digits|`` (in text too)."""
    with open(in_path, encoding='utf-8', newline='') as f:
        text = f.read()
    with AtomicFiles() as files:
        files.open(out_path).write(_SCORE.sub('', text).encode('utf-8'))
        files.commit()
