"""reddit_extractor against the original's outputs (golden/reddit): every run, byte for byte.

The command lines come from golden/reddit/runs/commands.txt.  They run
in-process through the same ``main`` the ``src/reddit.py`` shim calls (one
test also runs the shims as real subprocesses).  Paths in the stderr/stdout
files are mapped back to the golden placeholders before comparing.
"""
import contextlib
import gzip
import io
import os
import re
import shutil
import subprocess
import sys

import pytest

from reddit_extractor.cli import main

RUNS = ['test', 'train', 'train_ignore_keys', 'train_ignore_keys_conv_only', 'test_use_title', 'test_split100']


def parse_commands(golden):
    """{run: [(argv, stdout name, stderr name)]} for the reddit.py lines of commands.txt."""
    runs, cur = {}, None
    for line in (golden / 'reddit' / 'runs' / 'commands.txt').read_text().splitlines():
        m = re.match(r'## run (\S+)', line)
        if m:
            cur = m.group(1)
        elif line.startswith('python src/reddit.py'):
            cmd, rest = line.split(' > ', 1)
            out, err = rest.split(' 2> ')
            runs.setdefault(cur, []).append((cmd.split()[2:], out, err))
    return runs


def sub_paths(argv, golden, out_root):
    return [a.replace('GOLDEN/reddit/runs', str(out_root)).replace('GOLDEN', str(golden)) for a in argv]


def unsub(data, golden, out_root):
    return data.replace(str(out_root).encode(), b'GOLDEN/reddit/runs').replace(str(golden).encode(), b'GOLDEN')


def run_main(argv, stdout_path, stderr_path):
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(argv)
    stdout_path.write_text(so.getvalue())
    stderr_path.write_text(se.getvalue())
    return rc


@pytest.fixture(scope='session')
def reddit_runs(golden, tmp_path_factory):
    """Run every golden command once; return the output root."""
    out_root = tmp_path_factory.mktemp('reddit_runs')
    for run, cmds in parse_commands(golden).items():
        base = out_root / run
        (base / 'extract' / '2011-01').mkdir(parents=True)
        (base / 'conv').mkdir()
        for argv, out, err in cmds:
            assert run_main(sub_paths(argv, golden, out_root), base / out, base / err) == 0, (base / err).read_text()
            if '--task=extract' in argv:  # the Makefile gzips the chunks; keep plain copies to compare
                d = base / 'extract' / '2011-01'
                for f in list(d.glob('r[cs]_sub*.tsv')):
                    shutil.copy(f, str(f) + '.plain')
                    with open(f, 'rb') as src, gzip.open(str(f) + '.gz', 'wb') as dst:
                        dst.write(src.read())
                    f.unlink()
    return out_root


def golden_files(golden, run):
    root = golden / 'reddit' / 'runs' / run
    return sorted(str(p.relative_to(root)) for p in root.rglob('*')
                  if p.is_file() and ('extract' in p.parts or 'conv' in p.parts))


@pytest.mark.parametrize('run', RUNS)
def test_run_matches_golden(golden, reddit_runs, run):
    g_root, o_root = golden / 'reddit' / 'runs' / run, reddit_runs / run
    files = golden_files(golden, run)
    assert files
    for rel in files:
        g = (g_root / rel).read_bytes()
        name = os.path.basename(rel)
        if name.startswith(('rc_sub', 'rs_sub')):
            o = (o_root / (rel + '.plain')).read_bytes()
        elif rel.endswith('stat.tsv.stderr'):
            # the original printed tracebacks for bad lines; we count them (stat.errors.tsv) instead
            g = g.split(b'\n')[0]
            o = unsub((o_root / rel).read_bytes(), golden, reddit_runs).split(b'\n')[0]
        else:
            o = unsub((o_root / rel).read_bytes(), golden, reddit_runs)
        assert o == g, '%s/%s differs' % (run, rel)


def test_extract_error_counts(reddit_runs):
    rows = (reddit_runs / 'train_ignore_keys' / 'extract' / '2011-01' / 'stat.errors.tsv').read_text().splitlines()
    assert rows == ['2011-01\tRS\tbad_json\t1\t151', '2011-01\tRS\tnull_num_comments\t1\t284',
                    '2011-01\tRC\tbad_json\t1\t4944', '2011-01\tRC\tmissing_body\t1\t5245']


def test_merged_files(golden, reddit_runs, tmp_path):
    from reddit_extractor.merge import cut_columns
    from reddit_extractor.multiref import create_multiref, strip_scores
    g = golden / 'reddit' / 'runs'
    for run in ('train', 'train_ignore_keys', 'train_ignore_keys_conv_only'):
        conv = tmp_path / (run + '.tsv.gz')
        conv.write_bytes(gzip.compress((reddit_runs / run / 'conv' / '2011-01.tsv').read_bytes()))
        cut_columns([str(conv)], str(tmp_path / (run + '.train.tsv')))
        assert (tmp_path / (run + '.train.tsv')).read_bytes() == (g / run / 'train.tsv').read_bytes()
    assert gzip.decompress((tmp_path / 'train.tsv.gz').read_bytes()) == gzip.decompress((g / 'train' / 'train.tsv.gz').read_bytes())
    test_gz = tmp_path / 'test.tsv.gz'
    test_gz.write_bytes(gzip.compress((reddit_runs / 'test' / 'conv' / '2011-01.tsv').read_bytes()))
    assert gzip.decompress(test_gz.read_bytes()) == gzip.decompress((g / 'test' / 'test.tsv.gz').read_bytes())
    err = io.StringIO()
    create_multiref(str(test_gz), str(golden / 'reddit' / 'inputs' / 'test-multi-refs-ids.txt'),
                    str(tmp_path / 'scored.txt'), err=err)
    assert (tmp_path / 'scored.txt').read_bytes() == (g / 'test' / 'test.scored_refs.txt').read_bytes()
    assert err.getvalue() == (g / 'test' / 'create-multiref.stderr').read_text()
    strip_scores(str(tmp_path / 'scored.txt'), str(tmp_path / 'refs.txt'))
    assert (tmp_path / 'refs.txt').read_bytes() == (g / 'test' / 'test.refs.txt').read_bytes()


def test_shims_take_the_original_command_lines(golden, repo_dir, tmp_path):
    """src/reddit.py and src/create-multiref.py, run from reddit_extractor/ as the Makefile did."""
    cwd = repo_dir / 'reddit_extractor'
    rel = os.path.relpath(golden, cwd)
    out = tmp_path / 'runs'
    (out / 'test' / 'extract' / '2011-01').mkdir(parents=True)
    (out / 'test' / 'conv').mkdir()
    for argv, so, se in parse_commands(golden)['test']:
        argv = [a.replace('GOLDEN/reddit/runs', str(out)).replace('GOLDEN', rel) for a in argv]
        with open(out / 'test' / so, 'w') as fo, open(out / 'test' / se, 'w') as fe:
            subprocess.run([sys.executable, 'src/reddit.py'] + argv, cwd=cwd, stdout=fo, stderr=fe, check=True)
        for f in (out / 'test' / 'extract' / '2011-01').glob('r[cs]_sub*.tsv'):
            subprocess.run(['gzip', '-f', str(f)], check=True)
    g = golden / 'reddit' / 'runs' / 'test'
    assert (out / 'test' / 'conv' / '2011-01.tsv').read_bytes() == (g / 'conv' / '2011-01.tsv').read_bytes()
    err = (out / 'test' / 'conv' / '2011-01.tsv.gz.stderr').read_bytes()
    err = err.replace(str(out).encode(), b'GOLDEN/reddit/runs').replace(rel.encode(), b'GOLDEN')
    assert err == (g / 'conv' / '2011-01.tsv.gz.stderr').read_bytes()
    test_gz = out / 'test.tsv.gz'
    test_gz.write_bytes(gzip.compress((out / 'test' / 'conv' / '2011-01.tsv').read_bytes()))
    with open(out / 'mr.stderr', 'w') as fe:
        subprocess.run([sys.executable, 'src/create-multiref.py', '--data', str(test_gz), '--testids',
                        os.path.join(rel, 'reddit', 'inputs', 'test-multi-refs-ids.txt'), '--out',
                        str(out / 'scored.txt')], cwd=cwd, stderr=fe, check=True)
    assert (out / 'scored.txt').read_bytes() == (g / 'test.scored_refs.txt').read_bytes()


def test_workers_do_not_change_output(golden, reddit_runs, tmp_path):
    """--workers 2 (forked parse/conv workers) gives the same files as one process."""
    argv_e, argv_c = [c[0] for c in parse_commands(golden)['train_ignore_keys']]
    for argv in (argv_e, argv_c):
        argv = sub_paths(argv, golden, tmp_path) + ['--workers', '2']
        assert run_main(argv, tmp_path / 'o', tmp_path / 'e') == 0
    ours = tmp_path / 'train_ignore_keys'
    ref = reddit_runs / 'train_ignore_keys'
    assert (ours / 'conv' / '2011-01.tsv').read_bytes() == (ref / 'conv' / '2011-01.tsv').read_bytes()
    assert (ours / 'extract' / '2011-01' / 'rc_sub0.tsv').read_bytes() == \
        (ref / 'extract' / '2011-01' / 'rc_sub0.tsv.plain').read_bytes()
