"""Benchmark: comments/s through extract + conv for one synthetic month, ours vs a plain port.

    python benchmarks/bench_reddit.py            # 1M comments (generated once, kept in $TMPDIR)
    python benchmarks/bench_reddit.py --n 100000 # smaller
    python benchmarks/bench_reddit.py --full_scale  # one 2015-shaped month through the Makefile, keyed
                                                    # at the real keys' share and keeping everything:
                                                    # cost per million comments, 2005-12..2017-11 projected
    python benchmarks/bench_reddit.py --full_scale --compare DIR  # also DIR's checkout, interleaved

Runs, each in a fresh process, side by side on the same .zst month:
  baseline  a straightforward single-process port of the original reddit.py
            algorithm (json, TextIOWrapper over a zstd stream reader, one
            gpt_norm per turn per conversation, recursive get_convo); it lives
            in this file only, as the yardstick
  ours x1   reddit_extractor, 1 process
  ours x2   reddit_extractor, 2 processes (--workers 2)
Settings are the Makefile train ones without keys (the HASH_FLAG run): every
comment is a candidate.  Outputs of all runs are checked to be identical.
Prints wall seconds, comments/s, CPU seconds, the speed-up and peak RSS (largest
process).  On a shared machine compare CPU times: wall times move with the load.
"""
import argparse
import io
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
MONTH = '2011-01'
BL_WORDS = ['stupid', 'shut up', 'hate']
BL_SUBS = {'politics', 'wtf'}


# ----------------------------------------------------------------------------- baseline
def baseline(dump_dir, out_dir):
    import zstandard
    from nltk.tokenize import TweetTokenizer
    tok = TweetTokenizer(preserve_case=True)
    bl = re.compile(r'(?<![A-Za-z0-9_])(?:%s)(?![A-Za-z0-9_])' % '|'.join(map(re.escape, BL_WORDS)))

    def minimal(t):
        return t.replace('\\', '').replace('\n', ' ').replace('\r', ' ').replace('\t', ' ')

    def gpt_norm(txt):
        words = []
        for w in txt.split():
            if w[0] == '#':
                continue
            i = w.lower().find('http')
            if i >= 0:
                w = w[:i] + ' ' + '__url__'
            words.append(w.strip())
        txt = ' '.join(words).replace('\\', '')
        txt = txt.replace('b/c', 'because').replace('j/k', 'just kidding').replace('w/o', 'without').replace('w/', 'with')
        txt = re.sub('__mention__', 'MENTION', txt)
        txt = re.sub('__url__', 'URL', txt)
        txt = re.sub(r"[^A-Za-z0-9()\[\]:,.!?'“” ]", ' ', txt)
        txt = re.sub('MENTION', '__mention__', txt)
        txt = re.sub('URL', '__url__', txt)
        return ' '.join(' '.join(tok.tokenize(txt)).split())

    def lines_of(path):
        fh = open(path, 'rb')
        reader = zstandard.ZstdDecompressor(max_window_size=2 ** 31).stream_reader(fh)
        return io.TextIOWrapper(reader, encoding='utf-8')

    ext = os.path.join(out_dir, 'extract', MONTH)
    os.makedirs(ext, exist_ok=True)
    # extract: submissions (one chunk), then comments
    sids, rows = set(), []
    for line in lines_of(os.path.join(dump_dir, 'RS_%s.zst' % MONTH)):
        try:
            s = json.loads(line)
            if int(s['num_comments']) < 2:
                continue
            s['title'] = minimal(s['title'])
            rows.append('\t'.join(str(s[k]) for k in ('id', 'score', 'num_comments', 'domain', 'permalink', 'title')))
            sids.add('t3_' + s['id'])
        except Exception:
            continue
    with open(os.path.join(ext, 'rs_sub0.tsv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows))
    rows = []
    for line in lines_of(os.path.join(dump_dir, 'RC_%s.zst' % MONTH)):
        try:
            c = json.loads(line)
            if c['body'] == '[deleted]' or '>' in c['body'] or '&gt;' in c['body']:
                continue
            if c['link_id'] in sids:
                c['n_char'] = len(c['body'])
                c['body'] = minimal(c['body'])
                if len(c['body'].split()) < 2:
                    continue
                rows.append('\t'.join(str(c[k]) for k in ('id', 'author', 'parent_id', 'link_id', 'score', 'n_char', 'body')))
        except Exception:
            continue
    with open(os.path.join(ext, 'rc_sub0.tsv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(rows))
    del rows, sids
    # conv
    subs, comments = {}, {}
    for line in open(os.path.join(ext, 'rs_sub0.tsv'), encoding='utf-8'):
        cells = line.strip().split('\t')
        if len(cells) >= 6:
            subs['t3_' + cells[0]] = dict(zip(('id', 'score', 'num_comments', 'domain', 'permalink', 'title'), cells))
    for line in open(os.path.join(ext, 'rc_sub0.tsv'), encoding='utf-8'):
        cells = line.strip().split('\t')
        if len(cells) >= 7:
            comments['t1_' + cells[0]] = dict(zip(('id', 'author', 'parent_id', 'link_id', 'score', 'n_char', 'body'), cells))
    order = sorted((c['link_id'], c['parent_id'], cid) for cid, c in comments.items())
    parents = {pid for _, pid, _ in order}

    def get_convo(cid, depth=5):
        if depth == 0:
            return []
        c = comments[cid]
        if len(c['body'].split()) > 30:
            return []
        txts = get_convo(c['parent_id'], depth - 1) if c['parent_id'] in comments else []
        txts.append(c['body'])
        return txts

    os.makedirs(os.path.join(out_dir, 'conv'), exist_ok=True)
    out, err = [], []
    for sid, pid, cid in order:
        if cid in parents:
            continue
        sub = subs.get(sid)
        subreddit = sub['permalink'].split('/')[2].lower() if sub else ''
        info = subreddit + '\t' + (sub['domain'].lower() if sub else '')
        if sub is None or subreddit in BL_SUBS:
            err.append('skip\tsubreddit\t' + info)
            continue
        c = comments[cid]
        score = 0 if c['score'] == 'None' else int(c['score'])
        if score < 1:
            err.append('skip\tlow_score\t%s\t%s' % (info, c['body']))
            continue
        txts = get_convo(cid)
        if len(txts) < 2:
            err.append('skip\tmin_depth\t%s\t%s' % (info, c['body']))
            continue
        txts = [('0.0 ' if bl.search(t.lower()) else '1.0 ') + t for t in map(gpt_norm, txts)]
        src, tgt = ' EOS '.join(txts[:-1]), txts[-1]
        tt = tgt.split()
        st = src + ' ' + tgt
        if (len(tt) <= 1 or any(len(w) > 30 for w in tt) or len(src.split()) + len(tt) > 200
                or '__url__' in st or re.search(r'[\[\]\(\)]', st) or re.search('[A-Z]{5,}', st)
                or any(tt[k - 2] == tt[k] == tt[k - 1] for k in range(2, len(tt)))):
            err.append('skip\tfilter\t' + tgt)
            continue
        out.append('%s,%s,%s\t%s\t%s' % (sid, pid, cid, src, tgt))
    with open(os.path.join(out_dir, 'conv', MONTH + '.tsv'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(out) + '\n')
    sys.stderr.write('\n'.join(err) + '\n')


# ----------------------------------------------------------------------------- ours
def ours(dump_dir, out_dir, workers, month=MONTH, gz=False):
    from reddit_extractor.cli import main
    common = ['--reddit_input', dump_dir, '--reddit_output', out_dir, '--workers', str(workers)] + (
        ['--gzip', 'true'] if gz else [])
    bl_w = os.path.join(out_dir, 'words.txt')
    bl_s = os.path.join(out_dir, 'subs.txt')
    os.makedirs(out_dir, exist_ok=True)
    open(bl_w, 'w').write('\n'.join(BL_WORDS) + '\n')
    open(bl_s, 'w').write('\n'.join(BL_SUBS) + '\n')
    with open(os.devnull, 'w') as null:
        so, se = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            rc = main([month, '--task=extract'] + common) or main(
                [month, '--task=conv', '--bl_words', bl_w, '--bl_subreddits', bl_s, '--parallel=True',
                 '--clean', 'true', '--min_score', '1', '--min_depth', '2', '--max_depth', '5',
                 '--use_title', '0', '--leaves_only', '1'] + common)
        finally:
            sys.stdout, sys.stderr = so, se
    if rc:
        raise SystemExit('ours failed')


def run_one(kind, dump_dir, out_dir):
    t = time.perf_counter()
    if kind == 'baseline':
        with open(os.devnull, 'w') as null:
            se, sys.stderr = sys.stderr, null
            try:
                baseline(dump_dir, out_dir)
            finally:
                sys.stderr = se
    elif kind.startswith('gz'):  # the Makefile's way: .tsv.gz outputs (full scale)
        ours(dump_dir, out_dir, int(kind[2:]), month='2015-01', gz=True)
    else:
        ours(dump_dir, out_dir, int(kind[-1]))
    dt = time.perf_counter() - t
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps({'seconds': dt, 'cpu': cpu, 'rss_kb': max(me.ru_maxrss, kids.ru_maxrss)}))


# ----------------------------------------------------------------------------- full scale
# Sources of the real sizes (counts as published). A per-month table of 2005-12..2017-11 exists
# publicly (Watchful1's "Reddit counts per month", pastebin.com/McS2DSNz; the stats.csv of the
# open-index/arctic data set on Hugging Face), but the stored copies searchable from this offline
# machine return only their first rows (2005-12..2009-11 comments): the projection uses the
# published totals instead, an upper bound (see docs/reddit.md, "Full scale").
#  - Baumgartner et al., "The Pushshift Reddit Dataset", ICWSM 2020 (arXiv:2001.08435), sec. 3:
#    "all the submissions and comments posted on Reddit between June 2005 and April 2019 ...
#    651,778,198 submissions and 5,601,331,385 comments". 2005-12..2017-11 is a part of that span
#    (without its largest months, 2017-12..2019-04), so the totals over-estimate the work.
#  - RC_2015-01: 53,851,542 comments, 31,648,374,104 bytes uncompressed (5,452,413,560 as bz2),
#    as counted by users of the dump, e.g. github.com/nicolashahn (NLDS Lab import scripts) and
#    the Zewail City "Analyze-Reddit-Comments-Hadoop" README: 588 bytes per comment line.
#  - RC_2017-11, the largest month of the range: 84,965,681 comments (58.5 GB uncompressed) and
#    RS_2017-11 10,377,379 submissions (github.com/markditsworth/RedditCommentAnalysis, README).
#  - The keys: the original's train.tsv has 146,846,215 lines (its README), one per kept target;
#    its keys-test.gz (the 2018-03..2019-01 test keys, ../shared/data/dialogpt) has 110,573 `dep`
#    lines for 99,436 `keep` lines: 1.112 kept comments per target (targets and the ancestors that
#    are not targets themselves). So the train keys keep about 146,846,215 * 1.112 = 163M comments.
PUSHSHIFT_COMMENTS, PUSHSHIFT_SUBMISSIONS = 5601331385, 651778198
RC_2017_11_COMMENTS = 84965681
RC_2015_01_COMMENTS, RC_2015_01_BYTES = 53851542, 31648374104
SUBS_PER_COMMENT = PUSHSHIFT_SUBMISSIONS / PUSHSHIFT_COMMENTS  # 0.116
TRAIN_LINES, TEST_KEYS_DEP, TEST_KEYS_KEEP = 146846215, 110573, 99436
KEPT_COMMENTS = TRAIN_LINES * TEST_KEYS_DEP / TEST_KEYS_KEEP
# share of the comments the real train keys keep, over the comments the projection counts
KEPT_RATIO = KEPT_COMMENTS / PUSHSHIFT_COMMENTS  # 0.029
TRAIN_MONTHS = 144  # 2005-12 .. 2017-11 (the Makefile's SIZE=full)
TARGET_HOURS_8, TARGET_TEMP_GB = 3.0, 100.0


def make_month_2015(n, out_dir, month='2015-01', seed=0):
    """A month with the field set of 2015 comments (the RC_2015-01 schema), a mean comment line of
    about 588 bytes like RC_2015-01 (longer bodies: several paragraphs now and then), submissions
    in the Pushshift ratio (0.116 per comment, most with few comments) and deep reply trees."""
    import calendar
    import random
    import zstandard
    from make_reddit_month import SUBREDDITS, base36, body, make_vocab, reply_to
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    os.makedirs(out_dir, exist_ok=True)
    y, m = map(int, month.split('-'))
    start, length = calendar.timegm((y, m, 1, 0, 0, 0)), calendar.monthrange(y, m)[1] * 86400
    n_subs = max(1, round(n * SUBS_PER_COMMENT))
    # comments per submission: heavy-tailed (most threads are short, a few are huge)
    weights = [rng.paretovariate(1.2) for _ in range(n_subs)]
    scale = n / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[0] += n - sum(sizes)
    made, line_bytes = 0, 0
    cid = 36 ** 6
    with open(os.path.join(out_dir, 'RS_%s.zst' % month), 'wb') as rs, \
            open(os.path.join(out_dir, 'RC_%s.zst' % month), 'wb') as rc, \
            zstandard.ZstdCompressor(level=3).stream_writer(rs) as ws, \
            zstandard.ZstdCompressor(level=3).stream_writer(rc) as wc:
        ws, wc = io.BufferedWriter(ws, 1 << 20), io.BufferedWriter(wc, 1 << 20)
        for s, k in enumerate(sizes):
            sid = base36(36 ** 5 + s)
            sub = rng.choice(SUBREDDITS)
            t = start + s * length // n_subs
            is_self = rng.random() < 0.36
            ws.write((json.dumps({
                'archived': False, 'author': 'u%d' % rng.randint(1, 10 ** 7), 'author_flair_css_class': None,
                'author_flair_text': None, 'created_utc': t, 'distinguished': None,
                'domain': 'self.' + sub if is_self else rng.choice(['imgur.com', 'i.imgur.com', 'youtube.com', 'nytimes.com']),
                'edited': False, 'gilded': 0, 'hide_score': False, 'id': sid, 'is_self': is_self,
                'link_flair_css_class': None, 'link_flair_text': None, 'media': None, 'media_embed': {},
                'name': 't3_' + sid, 'num_comments': k, 'over_18': False,
                'permalink': '/r/%s/comments/%s/title/' % (sub, sid), 'quarantine': False,
                'retrieved_on': 1440000000, 'score': rng.randint(0, 5000), 'secure_media': None,
                'secure_media_embed': {}, 'selftext': body(rng, vocab) if is_self else '', 'stickied': False,
                'subreddit': sub, 'subreddit_id': 't5_2qh1i', 'thumbnail': 'default',
                'title': body(rng, vocab), 'ups': 1, 'url': 'https://example.com/' + sid}) + '\n').encode())
            ids = []
            for _ in range(k):
                c = base36(cid)
                cid += 1
                parent = reply_to(rng, sid, ids)
                ids.append(c)
                text = body(rng, vocab)
                while rng.random() < 0.25:  # more paragraphs: RC_2015-01's mean line is 588 bytes
                    text += '\n\n' + body(rng, vocab)
                score = int(rng.gauss(5, 10))
                line = (json.dumps({
                    'archived': False, 'author': 'u%d' % rng.randint(1, 10 ** 7), 'author_flair_css_class': None,
                    'author_flair_text': None, 'body': text, 'controversiality': 0,
                    'created_utc': str(start + made * length // n), 'distinguished': None, 'downs': 0,
                    'edited': False, 'gilded': 0, 'id': c, 'link_id': 't3_' + sid, 'name': 't1_' + c,
                    'parent_id': parent, 'retrieved_on': 1425124228, 'score': score, 'score_hidden': False,
                    'subreddit': sub, 'subreddit_id': 't5_2qh1i', 'ups': score}) + '\n').encode()
                line_bytes += len(line)
                wc.write(line)
                made += 1
        ws.flush()
        wc.flush()
    return made, n_subs, line_bytes / made


def _du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def write_keys(dump_dir, keys_dir, month, ratio=None, seed=0):
    """Key files for the month; return (dep lines, keep lines).

    ``ratio`` None: every comment is ``dep`` (kept by extract; conv then runs without keys, the
    upper bound). Otherwise about ``ratio`` of the comments are kept the way the real keys keep
    them: whole threads are picked at random until the share is reached; in a picked thread
    each comment is a target (``keep``) with probability 0.9 and every target's ancestors are
    ``dep``, which gives about the real keys' 1.11 ``dep`` lines per ``keep`` line."""
    import gzip
    import random
    import zstandard
    os.makedirs(keys_dir, exist_ok=True)
    threads = {}  # link_id -> [(cid, parent id)] in file order
    with open(os.path.join(dump_dir, 'RC_%s.zst' % month), 'rb') as f:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding='utf-8'):
            c = json.loads(line)
            threads.setdefault(c['link_id'], []).append((c['id'], c['parent_id']))
    n = sum(len(t) for t in threads.values())
    rng = random.Random(seed)
    dep, keep = [], []
    if ratio is None:
        dep = [(link, cid) for link, t in threads.items() for cid, _ in t]
    else:
        links = sorted(threads)
        rng.shuffle(links)
        picked = 0
        for link in links:
            if picked >= ratio * n:
                break
            parent = dict(threads[link])
            targets = [cid for cid, _ in threads[link] if rng.random() < 0.9]
            need = set()
            for cid in targets:
                while cid not in need:
                    need.add(cid)
                    p = parent.get(cid, '')
                    if not p.startswith('t1_') or p[3:] not in parent:
                        break
                    cid = p[3:]
            dep += [(link, cid) for cid, _ in threads[link] if cid in need]
            keep += [(link, cid) for cid in targets]
            picked += len(need)
    with gzip.open(os.path.join(keys_dir, month + '.gz'), 'wt', compresslevel=1) as out:
        out.writelines('%s\tt1_%s\tdep\n' % k for k in dep)
        out.writelines('%s\tt1_%s\tkeep\n' % k for k in keep)
    with gzip.open(os.path.join(keys_dir, month + '-o.gz'), 'wt'):
        pass
    open(os.path.join(keys_dir, '.create'), 'w').close()
    return len(dep), len(keep)


def run_full(dump_dir, keys_dir, work, month, workers, keyed, repo=os.path.dirname(HERE)):
    """The Makefile's train target for the month (extract, conv, merge, train.tsv); ``keyed``:
    conv filters by the keys as in the real run, else no conv key filter (HASH_FLAG): (cpu s,
    peak RSS bytes, peak bytes under T, bytes under T at the end, train.tsv bytes, conv .tsv.gz
    bytes, wall s)."""
    import threading
    t_dir, data = os.path.join(work, 'out'), os.path.join(work, 'data')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(t_dir)
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.wait(0.2):
            peak[0] = max(peak[0], _du(t_dir))
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(['make', '-C', os.path.join(repo, 'reddit_extractor'), 'train',
                        'TRAIN_MONTHS=' + month, 'S=' + dump_dir, 'K=' + keys_dir, 'T=' + t_dir, 'DATA=' + data,
                        'HASH_FLAG=' + ('' if keyed else '--ignore_keys=true'), 'WORKERS=%d' % workers, 'PYTHON=' + sys.executable],
                       capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t
    done.set()
    th.join()
    if r.returncode:
        raise SystemExit('make failed:\n' + r.stdout[-2000:] + r.stderr[-2000:])
    end = _du(t_dir)
    peak[0] = max(peak[0], end)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    conv = os.path.getsize(os.path.join(t_dir, 'train', 'conv', month + '.tsv.gz'))
    return cpu, after.ru_maxrss * 1024, peak[0], end, os.path.getsize(os.path.join(data, 'train.tsv')), conv, wall


TINY = 2000  # comments of the month run to measure the fixed cost of a month (start-up, imports)


def _month(data, n, month):
    """The 2015-shaped month of ``n`` comments under ``data`` (made once): (dump dir, stamp)."""
    dump = os.path.join(data, 'reddit2015-%d' % n)
    stamp = os.path.join(dump, 'made.json')
    if not os.path.exists(stamp):
        print('generating a 2015-shaped month: %d comments -> %s' % (n, dump), flush=True)
        made, subs, mean_line = make_month_2015(n, dump, month)
        with open(stamp, 'w') as f:
            json.dump({'comments': made, 'submissions': subs, 'mean_line': mean_line}, f)
    return dump, json.load(open(stamp))


def compare(a, dump, keys, work, month, keyed, n):
    """CPU-s per million comments of this checkout and of ``a.compare`` (another checkout, e.g.
    the code before a change) on the same month and keys, interleaved, alternating which goes first."""
    import statistics
    cpu = {'ours': [], 'other': []}
    for r in range(a.rounds):
        for who in (('ours', 'other') if r % 2 == 0 else ('other', 'ours')):
            repo = os.path.dirname(HERE) if who == 'ours' else a.compare
            cpu[who].append(run_full(dump, keys, work, month, 1, keyed, repo)[0] / n * 1e6)
    ratios = [o / u for o, u in zip(cpu['other'], cpu['ours'])]

    def show(v):
        return '%.1f [%.1f-%.1f]' % (statistics.median(v), min(v), max(v))
    print('  same month, %d rounds interleaved: CPU-s per million comments: this checkout %s, %s %s: '
          '%sx less CPU here; load average %.2f %.2f %.2f' % (a.rounds, show(cpu['ours']), a.compare,
                                                              show(cpu['other']), show(ratios), *os.getloadavg()),
          flush=True)


def full_scale(a):
    print('load average %.2f %.2f %.2f' % os.getloadavg(), flush=True)
    month = '2015-01'
    dump, made = _month(a.data, a.n, month)
    tiny, _ = _month(a.data, TINY, month)
    n = made['comments']
    rc = os.path.getsize(os.path.join(dump, 'RC_%s.zst' % month))
    rs = os.path.getsize(os.path.join(dump, 'RS_%s.zst' % month))
    print('month: %d comments (mean line %.0f bytes; RC_2015-01: %.0f), %d submissions; .zst %.0f MB RC + %.0f MB RS'
          % (n, made['mean_line'], RC_2015_01_BYTES / RC_2015_01_COMMENTS, made['submissions'], rc / 1e6, rs / 1e6),
          flush=True)
    total, biggest = PUSHSHIFT_COMMENTS, RC_2017_11_COMMENTS
    for mode in a.modes.split(','):
        keyed = mode == 'keyed'
        ratio = KEPT_RATIO if keyed else None
        keys = os.path.join(a.data, 'keys2015-%d-%s' % (a.n, mode))
        dep, keep = write_keys(dump, keys, month, ratio)
        if keyed:
            print('\nkeyed (realistic): keys keep %d comments = %.1f%% of the month (the real train keys: '
                  '%.0fM of the %.2fB comments counted below, %.1f%%), %d targets (%.3f dep per keep; real: %.3f)'
                  % (dep, 100 * dep / n, KEPT_COMMENTS / 1e6, total / 1e9, 100 * KEPT_RATIO, keep, dep / keep,
                     TEST_KEYS_DEP / TEST_KEYS_KEEP), flush=True)
        else:
            print('\nkeep everything (upper bound): keys keep all %d comments, conv without keys (HASH_FLAG)'
                  % dep, flush=True)
        work = os.path.join(a.data, 'work-full')
        tiny_keys = os.path.join(a.data, 'keys2015-%d-%s' % (TINY, mode))
        write_keys(tiny, tiny_keys, month, ratio)
        if a.compare:
            compare(a, dump, keys, work, month, keyed, n)
        cpu0 = run_full(tiny, tiny_keys, work, month, 1, keyed)[0]
        runs = [run_full(dump, keys, work, month, 1, keyed) for _ in range(a.rounds)]
        by_cpu = sorted(runs)
        cpu, rss, peak, kept, train, conv, wall = by_cpu[(len(runs) - 1) // 2]  # the median run (by CPU)
        # a month costs a fixed part (start-up, imports: nltk pulls in scipy) and a part per comment
        per = (cpu - cpu0) / (n - TINY)
        fixed = max(0.0, cpu0 - per * TINY)
        m = n / 1e6
        print('one month through make (1 process), the median of %d runs by CPU: %.1f s wall, %.1f CPU-s = %.1f '
              '[%.1f-%.1f] CPU-s per million comments (%.1f without the fixed %.1f CPU-s a month costs, measured '
              'on a %d-comment month); peak RSS %.0f MB (%.0f MB per million)' % (
                  a.rounds, wall, cpu, cpu / m, by_cpu[0][0] / m, by_cpu[-1][0] / m, per * 1e6, fixed, TINY,
                  rss / 1e6, rss / 1e6 / m))
        print('  temporary disk per million comments: peak %.1f MB while the month runs, %.1f MB left when it '
              'is done (conv .tsv.gz %.1f MB, skip counts, logs); output train.tsv %.1f MB'
              % (peak / 1e6 / m, kept / 1e6 / m, conv / 1e6 / m, train / 1e6 / m), flush=True)
        # projection: CPU and disk scale with the comments (the month carries submissions in the
        # Pushshift ratio, and keys at the real share), plus the fixed cost of each month. A
        # month's transient disk (its extract chunks) exists only while it runs: at most `procs`
        # months at once, bounded by the largest month; the rest stays until the end.
        cpu_total = fixed * TRAIN_MONTHS + per * total
        print('projection 2005-12..2017-11 (%s; upper bound on the comments: the %s comments and %s '
              'submissions Pushshift holds for 2005-06..2019-04; largest month RC_2017-11, %s comments):' % (
                  'keyed' if keyed else 'keep everything', format(total, ','), format(PUSHSHIFT_SUBMISSIONS, ','),
                  format(biggest, ',')))
        for procs in (8, 64):
            hours = max(cpu_total / procs, fixed + per * biggest) / 3600
            disk = kept / n * total + procs * (peak - kept) / n * biggest
            print('  %2d processes: %.1f h (target <= %.0f h on 8), temporary disk %.0f GB (target <= %.0f GB); '
                  'CPU %.0f h in all, train.tsv %.0f GB' % (procs, hours, TARGET_HOURS_8, disk / 1e9, TARGET_TEMP_GB,
                                                             cpu_total / 3600, train / n * total / 1e9))
        print('load average %.2f %.2f %.2f' % os.getloadavg(), flush=True)


def main():
    p = argparse.ArgumentParser(description='extract+conv throughput, ours vs baseline')
    p.add_argument('--n', type=int, default=1000000, help='comments in the synthetic month (default 1M)')
    p.add_argument('--data', default=os.path.join(tempfile.gettempdir(), 'dialogpt-bench-reddit'),
                   help='where the month and outputs go (default: a folder in the temp dir)')
    p.add_argument('--runs', default='baseline,ours1,ours2')
    p.add_argument('--full_scale', action='store_true',
                   help='one 2015-shaped month through the Makefile settings: CPU-s per million comments, peak '
                   'RSS, peak temporary disk, output size, and the 2005-12..2017-11 projection')
    p.add_argument('--modes', default='keyed,all',
                   help='--full_scale runs: keyed (keys at the real share) and/or all (keep everything)')
    p.add_argument('--compare', help='--full_scale: also run another checkout (e.g. a `git worktree` of main) on the same '
                   'month, interleaved, and print both CPU costs')
    p.add_argument('--rounds', type=int, default=3, help='interleaved rounds (and of --compare)')
    p.add_argument('--json')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    p.add_argument('--_dump', help=argparse.SUPPRESS)
    p.add_argument('--_out', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._one:
        return run_one(a._one, a._dump, a._out)
    if a.full_scale:
        return full_scale(a)
    dump = os.path.join(a.data, 'reddit-%d' % a.n)
    if not os.path.exists(os.path.join(dump, 'RC_%s.zst' % MONTH)):
        print('generating %d comments -> %s' % (a.n, dump), flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, 'make_reddit_month.py'), '--n', str(a.n), '--out', dump],
                       check=True)
    sys.path.insert(0, HERE)
    from common import load, machine, ratio_rounds, summary, write_json
    kinds = a.runs.split(',')
    print('%d comments, %d rounds of %s interleaved, each run a fresh process; %s; before: %s' % (
        a.n, a.rounds, ', '.join(kinds), machine(), load()), flush=True)
    results, outputs = {k: [] for k in kinds}, {}
    for r in range(a.rounds):
        for kind in kinds:
            out = os.path.join(a.data, 'out-%s' % kind)
            shutil.rmtree(out, ignore_errors=True)
            proc = subprocess.run([sys.executable, __file__, '--_one', kind, '--_dump', dump, '--_out', out],
                                  check=True, capture_output=True, text=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[kind].append(res)
            outputs.setdefault(kind, open(os.path.join(out, 'conv', MONTH + '.tsv'), 'rb').read())
            print('  round %d %-9s %7.1f s wall %10.0f comments/s  (%6.1f s CPU)  peak RSS %5.0f MB' % (
                r + 1, kind, res['seconds'], a.n / res['seconds'], res['cpu'], res['rss_kb'] / 1024), flush=True)
    print('median [min-max] over %d rounds; after: %s' % (a.rounds, load()))
    rows = []
    for kind, rs in results.items():
        wall, cpu = summary([x['seconds'] for x in rs]), summary([x['cpu'] for x in rs])
        rate, mb = summary([a.n / x['seconds'] for x in rs]), summary([x['rss_kb'] / 1024 for x in rs])
        row = dict(name=kind, comments=a.n, seconds=wall[0], lo=wall[1], hi=wall[2], comments_per_s=rate[0],
                   rate_lo=rate[1], rate_hi=rate[2], cpu_s=cpu[0], cpu_lo=cpu[1], cpu_hi=cpu[2], rss_mb=mb[0],
                   rss_lo=mb[1], rss_hi=mb[2])
        line = ('%-9s %6.1f s [%.1f-%.1f] wall, %8.0f comments/s [%.0f-%.0f], %6.1f s CPU [%.1f-%.1f], '
                'peak RSS %.0f MB [%.0f-%.0f]' % (kind, *wall, *rate, *cpu, *mb))
        if 'baseline' in results and kind != 'baseline':
            x = summary(ratio_rounds([b['seconds'] for b in results['baseline']], [o['seconds'] for o in rs]))
            xc = summary(ratio_rounds([b['cpu'] for b in results['baseline']], [o['cpu'] for o in rs]))
            row |= dict(speedup=x[0], speedup_lo=x[1], speedup_hi=x[2], cpu_speedup=xc[0], cpu_speedup_lo=xc[1],
                        cpu_speedup_hi=xc[2])
            line += '; %.2fx [%.2f-%.2f] the baseline\'s speed (%.2fx [%.2f-%.2f] less CPU)' % (*x, *xc)
        print(line)
        rows.append(row)
    same = len(set(outputs.values())) == 1
    print('conv outputs identical across runs: %s (%d lines)' % (
        same, next(iter(outputs.values())).count(b'\n')))
    if not same:
        raise SystemExit(1)
    write_json(a.json, 'reddit', rows)


if __name__ == '__main__':
    main()
