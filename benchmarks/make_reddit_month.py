"""Generate a synthetic pushshift-style month (RS_/RC_YYYY-MM.zst) for benchmarks.

    python benchmarks/make_reddit_month.py --n 1000000 --out /tmp/reddit

Comment trees, bodies and fields are shaped like real dumps: ~20 comments
per submission, replies biased towards recent comments (depths up to ~15),
bodies of 1-80 words with punctuation, some URLs, quotes, [deleted], common
short replies, non-ASCII, scores including 0 and negatives.  Seeded.
"""
import argparse
import calendar
import io
import json
import os
import random

import zstandard

COMMON = ['lol', 'This.', 'Yes', 'Thanks!', 'Same here', 'I agree', 'Source?', 'haha yes', 'No way',
          'Came here to say this', 'Well said.', 'What?', 'Exactly', 'This is the way']
PUNCT = [',', '.', '!', '?', '...', '']
SUBREDDITS = ['AskReddit', 'funny', 'pics', 'gaming', 'worldnews', 'todayilearned', 'science',
              'movies', 'Music', 'books', 'politics', 'WTF', 'videos', 'aww', 'technology']


def base36(n):
    s = ''
    while True:
        n, r = divmod(n, 36)
        s = '0123456789abcdefghijklmnopqrstuvwxyz'[r] + s
        if n == 0:
            return s


def make_vocab(rng, size=20000):
    syll = ['ka', 'lo', 'mi', 're', 'tan', 'so', 'ver', 'in', 'ble', 'ght', 'th', 'and', 'ex', 'pre',
            'ous', 'ing', 'ed', 'al', 'con', 'st', 'ar', 'po', 'de', 'un', 'ly']
    common = ('the a to of and I you it is that in for was on my this but with have be not are just '
              'so like they what do if he at or can me your all think one would about get people').split()
    vocab = set()
    while len(vocab) < size:
        vocab.add(''.join(rng.choice(syll) for _ in range(rng.randint(1, 4))))
    return common * 40 + sorted(vocab)


def body(rng, vocab):
    r = rng.random()
    if r < 0.02:
        return '[deleted]'
    if r < 0.12:
        return rng.choice(COMMON)
    n = min(int(rng.lognormvariate(2.5, 0.8)) + 1, 120)
    words = []
    for k in range(n):
        w = rng.choice(vocab)
        if k == 0 or words[-1][-1] in '.!?':
            w = w.capitalize()
        if rng.random() < 0.08:
            w += rng.choice(PUNCT)
        words.append(w)
    text = ' '.join(words)
    r = rng.random()
    if r < 0.03:
        text += ' http://example.com/' + rng.choice(vocab)
    elif r < 0.05:
        text = '> ' + text
    elif r < 0.06:
        text += ' \u2019caf\u00e9\u2019 \U0001F600'
    elif r < 0.08:
        text = text.replace(' ', '\n\n', 1)
    elif r < 0.09:
        text = text.upper()
    return text


def reply_to(rng, sid, ids):
    """The parent of the thread's next comment: the submission (30 %, and for the first), else a
    comment of the thread, mostly a recent one (reply chains of depth up to ~15)."""
    if not ids or rng.random() < 0.3:
        return 't3_' + sid
    return 't1_' + ids[max(0, len(ids) - 1 - int(rng.expovariate(0.3)))]


def generate(n_comments, out_dir, month='2011-01', seed=0, per_sub=20):
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    os.makedirs(out_dir, exist_ok=True)
    n_subs = max(1, n_comments // per_sub)
    # records spread over the month, in time order, as a whole pushshift month (its coverage is checked)
    y, m = map(int, month.split('-'))
    start, length = calendar.timegm((y, m, 1, 0, 0, 0)), calendar.monthrange(y, m)[1] * 86400
    # one compressor per stream: a ZstdCompressor cannot feed two streams at once
    rs = open(os.path.join(out_dir, 'RS_%s.zst' % month), 'wb')
    rc = open(os.path.join(out_dir, 'RC_%s.zst' % month), 'wb')
    with zstandard.ZstdCompressor(level=3).stream_writer(rs) as ws, \
            zstandard.ZstdCompressor(level=3).stream_writer(rc) as wc:
        ws, wc = io.BufferedWriter(ws, 1 << 20), io.BufferedWriter(wc, 1 << 20)
        cid = 36 ** 6
        made = 0
        for s in range(n_subs):
            sid = base36(36 ** 5 + s)
            k = n_comments - made if s == n_subs - 1 else min(int(rng.expovariate(1 / per_sub)), n_comments - made)
            sub = rng.choice(SUBREDDITS)
            ws.write((json.dumps({
                'author': 'u%d' % rng.randint(1, 10 ** 6), 'created_utc': start + s * length // n_subs,
                'domain': 'self.' + sub, 'id': sid, 'num_comments': k, 'over_18': False,
                'permalink': '/r/%s/comments/%s/title/' % (sub, sid), 'score': rng.randint(0, 5000),
                'selftext': '', 'subreddit': sub, 'title': body(rng, vocab), 'url': ''}) + '\n').encode())
            ids = []
            for j in range(k):
                c = base36(cid)
                cid += 1
                parent = reply_to(rng, sid, ids)
                ids.append(c)
                score = int(rng.gauss(5, 10))
                wc.write((json.dumps({
                    'author': 'u%d' % rng.randint(1, 10 ** 6), 'author_flair_css_class': None,
                    'author_flair_text': None, 'body': body(rng, vocab), 'controversiality': 0,
                    'created_utc': str(start + made * length // n_comments), 'distinguished': None, 'downs': 0,
                    'edited': False, 'gilded': 0, 'id': c, 'link_id': 't3_' + sid, 'name': 't1_' + c,
                    'parent_id': parent, 'retrieved_on': 1427426400, 'score': score,
                    'score_hidden': False, 'subreddit': sub, 'subreddit_id': 't5_2qh1i', 'ups': score}) + '\n').encode())
            made += k
        ws.flush()
        wc.flush()
    return made


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=1000000, help='number of comments (default 1M)')
    p.add_argument('--out', required=True, help='folder for RS_/RC_<month>.zst')
    p.add_argument('--month', default='2011-01')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    n = generate(a.n, a.out, a.month, a.seed)
    print('wrote %d comments to %s' % (n, a.out))


if __name__ == '__main__':
    main()
