"""DialogRPT's human-feedback pairs from raw monthly dumps (Gao et al. 2020, arXiv 2009.06978).

As DialogRPT's src/data.py built them: every comment gets three feedback values,
``updown`` (its score, upvotes - downvotes), ``width`` (its direct replies) and
``depth`` (the longest chain of replies below it), counted over every comment of
the months read together, whatever its text.  The replies of one parent (a comment, or the
submission for top-level replies) are sorted by posting time and each two
*consecutive* ones with different values make a pair: the higher one is ``pos``.
So the two replies of a pair were posted close together, and the gap is kept
(``hr_gap``, hours to 2 decimals, compared so as the paper's files held it); with each value's rank among its siblings' distinct values
(0 lowest, 1 highest).  DialogRPT's filters: time gap <= ``max_hr_gap`` hours
(1 in the paper), value gap >= ``min_score_gap``, rank gap >= ``min_rank_gap``
(the paper held out pairs with updown gap >= 20, width/depth >= 4, rank gap >= 0.5).

The context is the submission (title + self text) and every comment down to the
parent; a pair is dropped when any of its turns fails the paper's text clean
(deleted, a quote, over 30 words).  Several months read in one call are one
forest, as the paper read a year at once: a thread that crosses a month boundary
keeps its late replies (their parents, widths and depths) instead of losing them.
Not reproduced: the paper's GPT-2 unknown-subword ratio check.

Output JSONL (what ``rank.py train`` reads, plus the provenance fields):
``{"context": [...], "pos": "...", "neg": "...", "kind": ..., "pos_id", "neg_id",
"hr_gap", "score_pos", "score_neg", "rank_pos", "rank_neg"}``.
"""
import json
import sys
from collections import Counter

from .dumps import DumpError, iter_line_batches
from .extract import Errors
from .outputs import write_atomic
from .records import BadRecord, parse

KINDS = ('updown', 'width', 'depth')
MAX_WORDS = 30  # the paper's clean(): "focus on dialog, so ignore long txt"


def clean_text(txt):
    """DialogRPT's clean(): the turn's text with URLs as (URL), or None when it is not used."""
    if not isinstance(txt, str) or txt.strip() in ('[deleted]', '[removed]'):
        return None
    if '>' in txt or '&gt;' in txt:  # a quote
        return None
    words = ['(URL)' if '://' in w.lower() or 'http' in w.lower() else w
             for w in txt.replace('](', '] (').split()]
    if not words or len(words) > MAX_WORDS:
        return None
    return ' '.join(words)


class Comment:
    __slots__ = ('parent', 'time', 'score', 'text')

    def __init__(self, parent, time, score, text):
        self.parent, self.time, self.score, self.text = parent, time, score, text


def _int(d, key, errors, line_no):
    """An integer field (dumps hold some as strings), or None counted as bad input."""
    try:
        return int(d[key])
    except KeyError:
        errors.add('missing_' + key, line_no)
    except (TypeError, ValueError, OverflowError):
        errors.add('bad_' + key, line_no)
    return None


def _records(path, errors):
    """(line number, JSON object) of a dump; bad lines are counted in ``errors``."""
    n = 0
    for batch in iter_line_batches(path):
        for line in batch:
            n += 1
            try:
                yield n, parse(line)
            except BadRecord as e:
                errors.add(e.args[0], n)


def read_comments(path, errors, out=None):
    """``t1_<id>`` -> Comment, first record of a name kept (as the paper's name_set); added to
    ``out`` when given (several months make one forest)."""
    out = {} if out is None else out
    for n, d in _records(path, errors):
        cid, parent = d.get('id'), d.get('parent_id')
        if not isinstance(cid, str) or not isinstance(parent, str):
            errors.add('bad_id' if 'id' in d and 'parent_id' in d else 'missing_id', n)
            continue
        name = 't1_' + cid
        if name not in out:
            out[name] = Comment(parent, _int(d, 'created_utc', errors, n), _int(d, 'score', errors, n),
                                clean_text(d.get('body')))
    return out


def read_submissions(path, errors, out=None):
    """``t3_<id>`` -> the cleaned title + self text (None when not usable); added to ``out``."""
    out = {} if out is None else out
    for n, d in _records(path, errors):
        sid = d.get('id')
        if not isinstance(sid, str):
            errors.add('bad_id', n)
            continue
        title, self_text = d.get('title'), d.get('selftext') or ''
        out.setdefault('t3_' + sid, clean_text('%s %s' % (title, self_text)) if isinstance(title, str) else None)
    return out


def feedback(comments, kind):
    """name -> the comment's ``kind`` value (None when unknown)."""
    if kind == 'updown':
        return {name: c.score for name, c in comments.items()}
    children = {}
    for name, c in comments.items():
        children.setdefault(c.parent, []).append(name)
    if kind == 'width':
        return {name: len(children.get(name, ())) for name in comments}
    depth = {}
    for start in comments:  # longest reply chain below, iteratively (threads can be deep)
        stack, open_ = [start], {start}
        while stack:
            name = stack[-1]
            # a reply already open above is a cycle in bad input: not followed
            todo = [k for k in children.get(name, ()) if k not in depth and k not in open_]
            if todo:
                stack.extend(todo)
                open_.update(todo)
                continue
            stack.pop()
            open_.discard(name)
            depth[name] = max((depth[k] + 1 for k in children.get(name, ()) if k in depth), default=0)
    return depth


def sibling_pairs(replies):
    """DialogRPT's match_time(): ``replies`` are (value, time, name) of one parent's replies.

    Yields (pos name, neg name, hr_gap, value pos, value neg, rank pos, rank neg) for each two
    replies adjacent in time with different values.
    """
    values = sorted({v for v, _, _ in replies})
    if len(values) < 2:
        return
    rank = {v: round(i / (len(values) - 1), 4) for i, v in enumerate(values)}
    timed = sorted((t, v, name) for v, t, name in replies if t is not None)
    for (t_a, v_a, a), (t_b, v_b, b) in zip(timed, timed[1:]):
        if v_a == v_b:
            continue
        hr = round((t_b - t_a) / 3600, 2)
        if v_b > v_a:
            a, b, v_a, v_b = b, a, v_b, v_a
        yield a, b, hr, v_a, v_b, rank[v_a], rank[v_b]


def context_turns(parent, comments, submissions):
    """Turn texts from the submission down to ``parent``, or None when one is missing or unusable."""
    turns = []
    name = parent
    while name.startswith('t1_'):
        c = comments.get(name)
        if c is None or c.text is None:
            return None
        turns.append(c.text)
        name = c.parent
    title = submissions.get(name)
    if title is None:
        return None
    turns.append(title)
    turns.reverse()
    return turns


def month_pairs(comments, submissions, kind, max_hr_gap=1.0, min_score_gap=1, min_rank_gap=0.0, stats=None):
    """The pair records of one month's comments (see the module doc), parents in name order."""
    stats = Counter() if stats is None else stats
    value = feedback(comments, kind)
    by_parent = {}
    for name, c in comments.items():
        if value[name] is not None:
            by_parent.setdefault(c.parent, []).append((value[name], c.time, name))
    for parent in sorted(by_parent):
        context = None
        for pos, neg, hr, v_pos, v_neg, r_pos, r_neg in sibling_pairs(by_parent[parent]):
            stats['candidates'] += 1
            if max_hr_gap > 0 and hr > max_hr_gap:
                stats['time_gap'] += 1
                continue
            if v_pos - v_neg < min_score_gap:
                stats['score_gap'] += 1
                continue
            if r_pos - r_neg < min_rank_gap:
                stats['rank_gap'] += 1
                continue
            if context is None:
                context = context_turns(parent, comments, submissions) or []
            if not context or comments[pos].text is None or comments[neg].text is None:
                stats['text'] += 1
                continue
            stats['pairs'] += 1
            yield {'context': context, 'pos': comments[pos].text, 'neg': comments[neg].text, 'kind': kind,
                   'pos_id': pos, 'neg_id': neg, 'hr_gap': hr, 'score_pos': v_pos, 'score_neg': v_neg,
                   'rank_pos': r_pos, 'rank_neg': r_neg}


def write_pairs(months, out, kind, log=None, **filters):
    """Read the (RS path, RC path) of each month into one forest, write its pairs to ``out``
    (atomically); return the stats Counter."""
    if kind not in KINDS:
        raise DumpError('unknown pair kind %r (one of %s)' % (kind, ', '.join(KINDS)))
    log = log or sys.stderr
    submissions, comments, errors = {}, {}, []
    for rs_path, rc_path in months:
        errors += [(rs_path, Errors()), (rc_path, Errors())]
        read_submissions(rs_path, errors[-2][1], submissions)
        read_comments(rc_path, errors[-1][1], comments)
    stats = Counter()
    lines = [json.dumps(p, ensure_ascii=False) + '\n'
             for p in month_pairs(comments, submissions, kind, stats=stats, **filters)]
    write_atomic(out, ''.join(lines))
    for path, errs in errors:
        for reason in sorted(errs.count):
            print('warning: %s: %d line(s) with %s (first: line %d)'
                  % (path, errs.count[reason], reason, errs.first[reason]), file=log)
    print('%s: %d %s pairs from %d comments (candidates %d; dropped: time gap %d, score gap %d, '
          'rank gap %d, text %d)' % (out, stats['pairs'], kind, len(comments), stats['candidates'],
                                     stats['time_gap'], stats['score_gap'], stats['rank_gap'], stats['text']),
          file=log)
    if not stats['pairs']:
        print('warning: %s: no pair written' % out, file=log)
    return stats
