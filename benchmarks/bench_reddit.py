"""Benchmark: comments/s through extract + conv for one synthetic month, ours vs a plain port.

    python benchmarks/bench_reddit.py            # 1M comments (generated once, kept in $TMPDIR)
    python benchmarks/bench_reddit.py --n 100000 # smaller

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
def ours(dump_dir, out_dir, workers):
    from reddit_extractor.cli import main
    common = ['--reddit_input', dump_dir, '--reddit_output', out_dir, '--workers', str(workers)]
    bl_w = os.path.join(out_dir, 'words.txt')
    bl_s = os.path.join(out_dir, 'subs.txt')
    os.makedirs(out_dir, exist_ok=True)
    open(bl_w, 'w').write('\n'.join(BL_WORDS) + '\n')
    open(bl_s, 'w').write('\n'.join(BL_SUBS) + '\n')
    with open(os.devnull, 'w') as null:
        so, se = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            rc = main([MONTH, '--task=extract'] + common) or main(
                [MONTH, '--task=conv', '--bl_words', bl_w, '--bl_subreddits', bl_s, '--parallel=True',
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
    else:
        ours(dump_dir, out_dir, int(kind[-1]))
    dt = time.perf_counter() - t
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps({'seconds': dt, 'cpu': cpu, 'rss_kb': max(me.ru_maxrss, kids.ru_maxrss)}))


def main():
    p = argparse.ArgumentParser(description='extract+conv throughput, ours vs baseline')
    p.add_argument('--n', type=int, default=1000000, help='comments in the synthetic month (default 1M)')
    p.add_argument('--data', default=os.path.join(tempfile.gettempdir(), 'dialogpt-bench-reddit'),
                   help='where the month and outputs go (default: a folder in the temp dir)')
    p.add_argument('--runs', default='baseline,ours1,ours2')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    p.add_argument('--_dump', help=argparse.SUPPRESS)
    p.add_argument('--_out', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._one:
        return run_one(a._one, a._dump, a._out)
    dump = os.path.join(a.data, 'reddit-%d' % a.n)
    if not os.path.exists(os.path.join(dump, 'RC_%s.zst' % MONTH)):
        print('generating %d comments -> %s' % (a.n, dump), flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, 'make_reddit_month.py'), '--n', str(a.n), '--out', dump],
                       check=True)
    results, outputs = {}, {}
    for kind in a.runs.split(','):
        out = os.path.join(a.data, 'out-%s' % kind)
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run([sys.executable, __file__, '--_one', kind, '--_dump', dump, '--_out', out],
                           check=True, capture_output=True, text=True)
        results[kind] = json.loads(r.stdout.strip().splitlines()[-1])
        path = os.path.join(out, 'conv', MONTH + '.tsv')
        outputs[kind] = open(path, 'rb').read()
        res = results[kind]
        print('%-9s %7.1f s wall %10.0f comments/s  (%6.1f s CPU)  peak RSS %5.0f MB (%.0f MB per 1M comments)' % (
            kind, res['seconds'], a.n / res['seconds'], res['cpu'], res['rss_kb'] / 1024,
            res['rss_kb'] / 1024 / (a.n / 1e6)), flush=True)
    if 'baseline' in results:
        for kind in results:
            if kind != 'baseline':
                print('speed-up %s vs baseline: %.2fx wall (%.2fx CPU time)' % (
                    kind, results['baseline']['seconds'] / results[kind]['seconds'],
                    results['baseline']['cpu'] / results[kind]['cpu']))
    same = len(set(outputs.values())) == 1
    print('conv outputs identical across runs: %s (%d lines)' % (
        same, next(iter(outputs.values())).count(b'\n')))
    if not same:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
