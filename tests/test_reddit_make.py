"""reddit_extractor/Makefile: month lists, dry run, and a real run on the golden month."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')


def make(repo_dir, *args):
    return subprocess.run(['make', '-C', str(repo_dir / 'reddit_extractor')] + list(args),
                          capture_output=True, text=True)


@pytest.mark.parametrize('size,n_train', [('small', 49), ('full', 144)])
def test_dry_run_lists_every_month(repo_dir, tmp_path, size, n_train):
    r = make(repo_dir, '-n', 'SIZE=' + size, 'all', 'T=' + str(tmp_path / 'out'), 'DATA=' + str(tmp_path / 'data'))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace('\\\n', ' ').splitlines()  # join recipe continuation lines
    conv = [line for line in lines if '--task=conv' in line]
    train = [line for line in conv if '/train' in line]
    assert len(train) == n_train
    assert len(conv) - len(train) == (11 if size == 'full' else 0)  # refs only with SIZE=full
    assert '2005-12 --task=conv' in r.stdout and ('2017-11 --task=conv' in r.stdout) == (size == 'full')


def test_bad_size(repo_dir):
    r = make(repo_dir, '-n', 'SIZE=huge')
    assert r.returncode != 0 and 'SIZE must be small or full' in r.stderr


@pytest.mark.slow
def test_real_run_on_golden_month(repo_dir, golden, tmp_path):
    """make train test refs for one month reproduces the golden train.tsv and test.refs.txt."""
    g = golden / 'reddit'
    keys = tmp_path / 'keys'
    keys.mkdir()
    for f in ('2011-01.gz', '2011-01-o.gz'):
        shutil.copy(g / 'inputs' / 'keys' / f, keys / f)
    (keys / '.create').touch()
    args = ['-j2', 'train', 'refs', 'TRAIN_MONTHS=2011-01', 'TEST_MONTHS=2011-01',
            'S=' + str(g / 'inputs' / 'reddit'), 'K=' + str(keys), 'T=' + str(tmp_path / 'out'),
            'DATA=' + str(tmp_path / 'data'), 'TEST_KEYS=' + str(g / 'inputs' / 'data' / 'keys-test.gz'),
            'TEST_IDS=' + str(g / 'inputs' / 'test-multi-refs-ids.txt'),
            'WORDS_BLOCKLIST=--bl_words ' + str(g / 'inputs' / 'lists' / 'words.blocklist.txt'),
            'SUBREDDITS_BLOCKLIST=--bl_subreddits ' + str(g / 'inputs' / 'lists' / 'subreddits.blocklist.txt')]
    r = make(repo_dir, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / 'data' / 'train.tsv').read_bytes() == (g / 'runs' / 'train' / 'train.tsv').read_bytes()
    assert (tmp_path / 'data' / 'test.refs.txt').read_bytes() == (g / 'runs' / 'test' / 'test.refs.txt').read_bytes()
    # done months are not redone
    r = make(repo_dir, *args)
    assert r.returncode == 0 and '--task=' not in r.stdout
