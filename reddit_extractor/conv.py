"""The per-month conv step: extract chunks -> ``conv/YYYY-MM.tsv`` lines ``sid,pid,cid<TAB>src<TAB>tgt``.

Byte-identical to the original reddit.py ``--task=conv``, including the
``skip<TAB>reason<TAB>...`` lines on stderr (one per dropped target) and the
stdout/stat files.  Each chunk is processed on its own: targets are the
comments sorted by (link_id, parent_id, cid); each walks up its parents.

Speed-ups that do not change output: every comment body is normalised at
most once (the original redid it for each conversation it appeared in), and
with ``workers > 1`` contiguous slices of the targets run in forked processes
whose results are put back in order.
"""
import hashlib
import multiprocessing
import os
import re
import sys

from tqdm import tqdm

from lsp_io.turns import TURN_SEP

from .dumps import DumpError, iter_line_batches
from .extract import CHUNK_EXT
from .normalise import gpt_norm, load_tokenizer
from .outputs import AtomicFiles, remove_quietly, write_atomic

_TAGS = re.compile(r'[\[\]\(\)]')
_YELLING = re.compile(r'[A-Z]{5,}')
FLUSH_EVERY = 100000


class Settings:
    """The conv options (the original's command-line names)."""

    def __init__(self, min_depth=2, max_depth=10, max_len=30, max_len_type='w', min_score=0,
                 use_title=True, leaves_only=False, clean=False, keys=None, discard=None,
                 bl_words=None, bl_subreddits=None):
        self.__dict__.update(locals())
        del self.__dict__['self']


def chunk_path(folder, prefix, sub):
    """rs_sub/rc_sub chunk file (compressed as the Makefile leaves it, or plain), or None."""
    for ext in (CHUNK_EXT, '.tsv.gz', '.tsv'):
        p = os.path.join(folder, '%s%d%s' % (prefix, sub, ext))
        if os.path.isfile(p):
            return p
    return None


def read_chunk(path, n_fields):
    """Rows of an extract chunk as the original read them: strip the line, split on tabs.

    A row with too few cells (e.g. an empty title, stripped away) is skipped:
    the original's dict() built from the cells raised and skipped it.
    Yields the rows batch by batch, so the raw lines are never all in memory.
    """
    for batch in iter_line_batches(path):
        try:
            batch = [line.decode('utf-8') for line in batch]
        except UnicodeDecodeError as e:
            raise DumpError('%s: not UTF-8 text: %s' % (path, e)) from None
        for line in batch:
            cells = line.strip().split('\t')
            if len(cells) >= n_fields:
                yield cells


# State shared with forked workers (set by the parent before the fork).
_S = {}


def _convo(cid):
    """The original get_convo(): turns from the top of the kept chain down to ``cid``.

    Returns the raw turn texts.  At most ``max_depth`` comments; a comment
    over ``max_len`` cuts the chain below it (or kills it at the leaf); with
    ``use_title`` a top-level comment adds the submission title as first turn,
    which does not count towards ``max_depth``.
    """
    st, comments, n_words = _S['settings'], _S['comments'], _S['n_words']
    chain = []
    depth = st.max_depth
    while depth != 0:
        link_id, parent, _, n_char, body = comments[cid]
        if st.max_len_type == 'w':
            n = n_words.get(cid)
            if n is None:
                n = n_words[cid] = len(body.split())
            if n > st.max_len:
                break
        elif st.max_len_type == 'c' and int(n_char) > st.max_len:
            break
        chain.append(body)
        if st.use_title and parent.startswith('t3_'):
            title = _S['submissions'][link_id][2]  # KeyError -> "exception", as the original
            chain.append('title: ' + title)
            break
        if parent not in comments:
            break
        cid = parent
        depth -= 1
    chain.reverse()
    return chain


def _norm_turn(text):
    # Keyed by text: ancestors recur in many conversations, short replies in many threads.
    cache = _S['cache']
    out = cache.get(text)
    if out is None:
        out = cache[text] = gpt_norm(text)
    return out


def filter_instance(src, tgt, info):
    """The original filter_instance(): None to keep, else the skip line."""
    st = _S['settings']
    if st.bl_words and not st.leaves_only:
        bad = st.bl_words.found(tgt)
        if bad:  # the original printed flashtext's list as Python shows it
            return 'skip\toffensive\t%s\t%s\tbad word(s): %s' % (info, tgt, bad)
    tgt_toks = tgt.split()
    if len(tgt_toks) <= 1:  # the weight alone counts as one token
        return 'skip\temptytarget\t%s\t%s' % (info, tgt)
    if any(len(w) > 30 for w in tgt_toks):
        return 'skip\tlongword\t%s\t%s\tword too long' % (info, tgt)
    if len(src.split()) + len(tgt_toks) > 200:
        return 'skip\ttoolong\t%s\t%s\tsrc+tgt too long, src=[%s]' % (info, tgt, src)
    srctgt = src + ' ' + tgt
    if '__url__' in srctgt:
        return 'skip\turl\t%s\t%s\turl in tgt, or src =[%s]' % (info, tgt, src)
    if _TAGS.search(srctgt):
        return 'skip\ttags\t%s\t%s\ttag in tgt (or src: [%s])' % (info, tgt, src)
    if _YELLING.search(srctgt):
        return 'skip\tallcaps\t%s\t%s\tall caps in tgt (or src: [%s])' % (info, tgt, src)
    for k in range(2, len(tgt_toks)):
        if tgt_toks[k - 2] == tgt_toks[k] and tgt_toks[k - 1] == tgt_toks[k]:
            return 'skip\trepetitions\t%s\t%s\ttoo many repetitions' % (info, tgt)
    return None


def _target(sid, pid, cid):
    """One target: (turns normalised or -1, output line or None, skip line or None, target length)."""
    st, comments, submissions = _S['settings'], _S['comments'], _S['submissions']
    if st.leaves_only and cid in _S['parents']:
        return -1, None, None, 0
    if st.keys is not None and sid + '\t' + cid not in st.keys:
        return -1, None, None, 0
    sub = submissions.get(sid)
    subreddit = domain = ''
    if sub is not None:
        parts = sub[0].split('/')
        subreddit = parts[2].lower() if len(parts) > 2 else ''
        domain = sub[1].lower()
    info = subreddit + '\t' + domain
    if st.bl_subreddits is not None:
        if sub is None:
            return -1, None, 'skip\tmissing\t%s\tN/A\tmissing submission: %s' % (info, sid), 0
        if subreddit in st.bl_subreddits:
            return -1, None, 'skip\tbad_subreddit\t%s\tN/A\toffensive subreddit: %s' % (info, subreddit), 0
    body = comments[cid][4]
    score = comments[cid][2]
    try:
        score = 0 if score == 'None' else int(score)
    except ValueError:  # the original crashed on a non-integer score
        return -1, None, 'skip\texception\t%s\t%s\texception' % (info, body), 0
    if score < st.min_score:
        return -1, None, 'skip\tlow_score\t%s\t%s\tscore %d < %d' % (info, body, score, st.min_score), 0
    try:
        chain = _convo(cid)
    except Exception:  # the original caught everything around get_convo the same way
        return -1, None, 'skip\texception\t%s\t%s\texception' % (info, body), 0
    if len(chain) < st.min_depth:
        return -1, None, 'skip\tmin_depth\t%s\t%s\tdepth %d < %d: %s' % (
            info, body, len(chain), st.min_depth, '|'.join(chain)), 0
    turns = [_norm_turn(text) for text in chain]
    if st.leaves_only and st.clean:
        turns = [_weight(t) + ' ' + t for t in turns]
    src = TURN_SEP.join(turns[:-1])
    tgt = turns[-1]
    if st.clean:
        msg = filter_instance(src, tgt, info)
        if msg is not None:
            return len(chain), None, msg, 0
    return len(chain), '%s,%s,%s\t%s\t%s' % (sid, pid, cid, src, tgt), None, len(tgt.split())


def _weight(turn):
    st = _S['settings']
    if st.discard is not None and hashlib.sha224(turn.encode('utf-8')).hexdigest() in st.discard:
        return '0.0'
    if st.bl_words and st.bl_words.search(turn):
        return '0.0'
    return '1.0'


def _run_slice(bounds):
    """Targets ``a:b`` as one compact result: (codes, lines kept, their UTF-8 text, skip-line text,
    sum of target lengths).

    ``codes`` holds, per target, ``2 * n_turns + (1 if it gave a line)``: all
    the parent's per-target bookkeeping needs.  Lines and skip messages leave
    the worker already joined, because unpickling and printing them one by one
    kept the parent as busy as a worker, so two workers ran little faster
    than one process.
    """
    a, b = bounds
    codes, lines, msgs = [], [], []
    total_len = 0
    for sid, pid, cid in _S['targets'][a:b]:
        n_turns, line, msg, tgt_len = _target(sid, pid, cid)
        if msg is not None:
            msgs.append(msg + '\n')
        if line is not None:
            lines.append(line)
            total_len += tgt_len
        codes.append(2 * n_turns + (line is not None))
    text = ('\n'.join(lines) + '\n').encode('utf-8') if lines else b''
    return codes, len(lines), text, ''.join(msgs), total_len


def _results(targets, workers):
    """``_run_slice`` results, in target order, computed in ``workers`` forked processes."""
    # Many more slices than workers keeps them busy when thread sizes vary;
    # one process takes the same path in slices, so results cannot differ.
    step = max(1000, len(targets) // (workers * 8) + 1)
    bounds = [(a, min(a + step, len(targets))) for a in range(0, len(targets), step)]
    if workers <= 1 or len(bounds) < 2 or 'fork' not in multiprocessing.get_all_start_methods():
        yield from map(_run_slice, bounds)
        return
    with multiprocessing.get_context('fork').Pool(workers) as pool:
        yield from pool.imap(_run_slice, bounds)


def conv_chunk(rs_path, rc_path, settings, out, err, log, workers=1):
    """Process one extract chunk; write its lines to ``out`` (binary), return (m, n, avg_len)."""
    print('reading submissions...', file=log)
    # permalink, domain, title
    submissions = {'t3_' + c[0]: (c[4], c[3], c[5]) for c in read_chunk(rs_path, 6)}
    print('reading comments...', file=log)
    comments = {}
    for c in read_chunk(rc_path, 7):  # id, author, parent_id, link_id, score, n_char, body
        comments['t1_' + c[0]] = (c[3], c[2], c[4], c[5], c[6])
    targets = sorted((c[0], c[1], cid) for cid, c in comments.items())
    n = len(comments)
    print('total comments: %i' % n, file=log)
    parents = set()
    if settings.leaves_only:
        parents = {pid for _, pid, _ in targets}
        if targets:
            # labelled "leaves", but the original printed the share of *parent* ids
            print('leaves ratio : %f' % (len(parents) / len(targets)), file=err)
    _S.update(settings=settings, comments=comments, submissions=submissions,
              parents=parents, targets=targets, cache={}, n_words={})
    # Sequential bookkeeping, as the original loop: its progress counter i was
    # reset by the per-turn loop, and every 1e5 counts it wrote the pending
    # lines, each followed by a newline, then at the end the rest the same way.
    # Lines are written as their slice arrives (same bytes); what remains of
    # the original's order is one '\n' at the end when a flush came after the
    # last line (it wrote an empty pending list).  Slices are consumed as they
    # come, never all held at once.
    i = m = total_len = 0
    pending = False  # lines kept since the last flush
    bar = tqdm(total=len(targets), file=sys.stderr, disable=None, leave=False, desc='conv')
    try:
        for codes, n_lines, text, msgs, slice_len in _results(targets, workers):
            for code in codes:
                i += 1
                if i % FLUSH_EVERY == 0:
                    pending = False
                if code > 0:  # the target had a chain: i = n_turns - 1
                    i = (code >> 1) - 1
                    if code & 1:
                        pending = True
            out.write(text)
            err.write(msgs)
            m += n_lines
            total_len += slice_len
            bar.update(len(codes))
    finally:
        bar.close()
        _S.clear()
    if m == 0:  # the original died here (division by zero) and wrote nothing more
        print('warning: %s: no conversation selected in this chunk' % rc_path, file=sys.stderr)
        avg_len = 0.0
    else:
        avg_len = total_len / m
        if not pending:
            out.write(b'\n')
    print('finally selected %i/%i, avg len = %.2f' % (m, n, avg_len), file=log)
    return m, n, avg_len


def conv_month(month, out_root, settings, workers=1, gz=False, log=None, err=None):
    """Run the conv step for one month: ``<out_root>/conv/<month>.tsv[.gz]`` and ``.stat.tsv``."""
    log = log or sys.stdout
    err = sys.stderr if err is None else err  # (a Counter stand-in is falsy when empty)
    folder = os.path.join(out_root, 'extract', month)
    conv_dir = os.path.join(out_root, 'conv')
    os.makedirs(conv_dir, exist_ok=True)
    path_out = '%s/conv/%s.tsv' % (out_root, month)
    stat_path = os.path.join(conv_dir, month + '.stat.tsv')
    final = path_out + ('.gz' if gz else '')
    for p in (final, stat_path):
        remove_quietly(p)
    if chunk_path(folder, 'rs_sub', 0) is None:
        raise DumpError('%s: no extract output (rs_sub0.tsv[.zst]); run the extract step first' % folder)
    print(path_out, file=log)
    load_tokenizer()  # before any fork, so workers share it instead of each importing nltk
    stats = []
    with AtomicFiles() as files:
        out = files.open(final, gz)
        sub = 0
        while True:
            rs = chunk_path(folder, 'rs_sub', sub)
            if rs is None:
                break
            rc = chunk_path(folder, 'rc_sub', sub)
            if rc is None:
                raise DumpError('%s: rc_sub%d.tsv[.gz] is missing' % (folder, sub))
            print('-' * 10 + ' sub%i ' % sub + '-' * 10, file=log)
            stats.append(conv_chunk(rs, rc, settings, out, err, log, workers))
            sub += 1
        files.commit()
    lines = ['%s\t%d\t%d\t%d\t%.2f\n' % (month, k, m, n, a) for k, (m, n, a) in enumerate(stats)]
    lines.append('%s\tall\t%d\t%d\t\n' % (month, sum(s[0] for s in stats), sum(s[1] for s in stats)))
    write_atomic(stat_path, ''.join(lines))
    return stats
