"""Command line: the original reddit.py interface, plus a few helper subcommands.

    python -m reddit_extractor YYYY-MM --task=extract|conv [original options] [--workers N]
    python -m reddit_extractor pairs YYYY-MM --kind updown|width|depth --reddit_input DIR --out PAIRS.jsonl
    python -m reddit_extractor multiref --data test.tsv.gz --testids IDS --out scored_refs.txt
    python -m reddit_extractor strip-scores scored_refs.txt refs.txt
    python -m reddit_extractor cut OUT.tsv IN.tsv.gz [IN.tsv.gz ...]
    python -m reddit_extractor concat OUT.tsv.gz IN.tsv.gz [IN.tsv.gz ...]
    python -m reddit_extractor fetch URL DEST
    python -m reddit_extractor slurm submit|status [flags] [VAR=value ...]   (slurm/submit.py)

Booleans take real values (``--clean false`` is false); the original's
``--parallel=True --clean True`` still work.
"""
import argparse
import collections
import functools
import io
import os
import re
import sys

from lsp_io.flags import parse_bool

from .checks import check_manifest, manifest_entry
from .dumps import DumpError, find_dump
from .keys import load_hashes, load_pairs
from .normalise import Blocklist, read_list
from lsp_io.cli import command

# The original's options, in its order: the "Args: Namespace(...)" stderr line lists them so.
ORIGINAL_ARGS = ('dump_name', 'bl_words', 'ignore_keys', 'keep_keys', 'discard_tgt_keys', 'freq_words',
                 'bl_subreddits', 'reddit_input', 'reddit_output', 'max_len', 'max_len_type',
                 'min_depth', 'max_depth', 'min_score', 'use_title', 'leaves_only', 'split_size',
                 'task', 'parallel', 'pre_tok', 'clean')


def boolean(text):
    """lsp_io's one boolean vocabulary; '' is False, as the original's type=bool made it."""
    return False if str(text).strip() == '' else parse_bool(text)


def month_parser():
    p = argparse.ArgumentParser(prog='python -m reddit_extractor',
                                description='One month of the DialoGPT Reddit pipeline (extract or conv).')
    p.add_argument('dump_name', help='month, YYYY-MM')
    p.add_argument('--bl_words', help='word/phrase blocklist: turns containing one get weight 0.0')
    p.add_argument('--ignore_keys', type=boolean, nargs='?', const=True, default=False,
                   help='ignore --keep_keys and --discard_tgt_keys')
    p.add_argument('--keep_keys', help='key file (t3_sid<TAB>t1_cid<TAB>dep|keep), .gz or plain')
    p.add_argument('--discard_tgt_keys', help='sha224 hashes of turns that get weight 0.0')
    p.add_argument('--freq_words', help=argparse.SUPPRESS)  # broken in the original, not supported
    p.add_argument('--bl_subreddits', help='subreddit blocklist (case-insensitive)')
    p.add_argument('--reddit_input', default='reddit_in', help='folder with RS_/RC_YYYY-MM dumps')
    p.add_argument('--reddit_output', default='reddit_out', help='output root (extract/, conv/)')
    p.add_argument('--max_len', type=int, default=30, help='longest turn kept (words or chars)')
    p.add_argument('--max_len_type', default='w', choices=['w', 'c'])
    p.add_argument('--min_depth', type=int, default=2)
    p.add_argument('--max_depth', type=int, default=10)
    p.add_argument('--min_score', type=int, default=0)
    p.add_argument('--use_title', type=int, default=1)
    p.add_argument('--leaves_only', type=int, default=0)
    p.add_argument('--split_size', type=int, default=500000)
    p.add_argument('--task', default='conv', choices=['extract', 'conv'])
    p.add_argument('--parallel', type=boolean, nargs='?', const=True, default=False,
                   help='accepted for compatibility (outputs are always per month)')
    p.add_argument('--pre_tok', type=boolean, nargs='?', const=True, default=False, help=argparse.SUPPRESS)
    p.add_argument('--clean', type=boolean, nargs='?', const=True, default=False,
                   help='apply the instance filters (and turn weights when --leaves_only)')
    g = p.add_argument_group('additions (not in the original)')
    g.add_argument('--workers', type=int, default=1, help='processes within the month (default 1)')
    g.add_argument('--gzip', type=boolean, nargs='?', const=True, default=False,
                   help='write compressed outputs directly (what the Makefile does): conv .tsv.gz, extract '
                   'chunks .tsv.zst')
    g.add_argument('--base_url', default=os.environ.get('REDDIT_BASE_URL') or None,
                   help='mirror to download a missing dump from ($REDDIT_BASE_URL)')
    g.add_argument('--manifest', help="extract: check each dump's size/sha256 against this file's "
                   "'sha256  size  name' lines first (docs/reddit.md)")
    g.add_argument('--skip_log', help="conv: write the 'skip' lines (one per dropped target) to this file "
                   "instead of stderr, gzip-compressed when it ends in .gz (make SKIP_LINES=1)")
    g.add_argument('--skip_counts', help="conv: write only 'reason<TAB>count' of the skip lines to this file "
                   "(the Makefile's default: the lines are the largest file of a month)")
    g.add_argument('--accept_partial', type=boolean, nargs='?', const=True, default=False,
                   help='extract: use a dump whose records do not cover the whole month '
                   '(a warning instead of an error)')
    return p


def args_line(args):
    return 'Args: Namespace(%s)' % ', '.join('%s=%r' % (k, getattr(args, k)) for k in ORIGINAL_ARGS)


def dump_path(args, kind):
    """The month's RS/RC dump: found in --reddit_input (checked against --manifest when given),
    else downloaded from --base_url (verified against the manifest's size/sha256 when listed)."""
    path = find_dump(args.reddit_input, kind, args.dump_name)
    if path is not None:
        if args.manifest:
            check_manifest(args.manifest, path)
        return path
    name = '%s_%s.zst' % (kind, args.dump_name)
    dest = os.path.join(args.reddit_input, name)
    if not args.base_url:
        raise DumpError('%s: dump not found (looked for %s_%s with .zst/.bz2/.xz/.gz/no extension). '
                        'Download it (docs/reddit.md) or pass --base_url.' % (dest, kind, args.dump_name))
    size, sha256 = manifest_entry(args.manifest, dest) if args.manifest else (None, None)
    from .download import download, dump_url
    return download(dump_url(args.base_url, name), dest, size=size, sha256=sha256)


def run_month(argv):
    args = month_parser().parse_args(argv)
    print(args_line(args), file=sys.stderr)
    if args.freq_words:
        raise DumpError('--freq_words is not supported (it crashed in the original)')
    if args.min_depth < 1 or args.max_depth < 1:
        raise DumpError('--min_depth and --max_depth must be >= 1')
    use_keys = args.keep_keys and not args.ignore_keys
    if args.task == 'extract':
        from .extract import extract_month
        keys = load_pairs(args.keep_keys, 'dep') if use_keys else None
        extract_month(args.dump_name, dump_path(args, 'RS'), dump_path(args, 'RC'),
                      os.path.join(args.reddit_output, 'extract', args.dump_name), keys=keys,
                      split_size=args.split_size, workers=args.workers, gz=args.gzip,
                      accept_partial=args.accept_partial)
    else:
        from .conv import Settings, conv_month
        settings = Settings(
            min_depth=args.min_depth, max_depth=args.max_depth, max_len=args.max_len,
            max_len_type=args.max_len_type, min_score=args.min_score, use_title=bool(args.use_title),
            leaves_only=bool(args.leaves_only), clean=args.clean,
            keys=load_pairs(args.keep_keys, 'keep') if use_keys else None,
            discard=load_hashes(args.discard_tgt_keys) if args.discard_tgt_keys and not args.ignore_keys else None,
            bl_words=Blocklist(_list(args.bl_words)) if args.bl_words else None,
            bl_subreddits={s.lower() for s in _list(args.bl_subreddits)} if args.bl_subreddits else None)
        run = functools.partial(conv_month, args.dump_name, args.reddit_output, settings, workers=args.workers,
                                gz=args.gzip)
        if args.skip_counts:
            counts = SkipCounts()
            run(err=counts)
            from .outputs import write_atomic
            write_atomic(args.skip_counts, ''.join('%s\t%d\n' % kv for kv in sorted(counts.items())))
        elif args.skip_log:
            from .outputs import AtomicFiles
            with AtomicFiles() as files:  # written with the month's files, not before
                err = io.TextIOWrapper(files.open(args.skip_log, gz=args.skip_log.endswith('.gz'), level=1),
                                       encoding='utf-8', newline='\n')
                run(err=err)
                err.flush()
                err.detach()
                files.commit()
        else:
            run()
    return 0


class SkipCounts(collections.Counter):
    """A stand-in for conv's stderr that keeps only how many targets each reason dropped."""

    def write(self, text):
        for line in text.splitlines():
            if line.startswith('skip\t'):
                self[line.split('\t', 2)[1]] += 1


def _list(path):
    return [w for w in read_list(path) if not w.startswith('#')]


def run_multiref(argv):
    p = argparse.ArgumentParser(prog='python -m reddit_extractor multiref',
                                description='create-multiref: scored multi-reference test file')
    p.add_argument('--data', required=True, help='test.tsv.gz (sid,pid,cid<TAB>src<TAB>tgt)')
    p.add_argument('--testids', required=True, help='test-multi-refs-ids.txt')
    p.add_argument('--out', required=True, help='output, e.g. test.scored_refs.txt')
    p.add_argument('--refs', help='also write the score-stripped refs file here (test.refs.txt)')
    args = p.parse_args(argv)
    from .multiref import create_multiref, strip_scores
    create_multiref(args.data, args.testids, args.out)
    if args.refs:
        strip_scores(args.out, args.refs)
    return 0


def run_pairs(argv):
    from .pairs import KINDS, write_pairs
    p = argparse.ArgumentParser(prog='python -m reddit_extractor pairs',
                                description="DialogRPT's human-feedback pairs of one or more months (docs/reddit.md): "
                                "time-adjacent sibling replies, the one with more upvotes/replies/follow-ups as pos")
    p.add_argument('dump_name', nargs='+',
                   help='month(s), YYYY-MM; several are read as one forest (threads across months kept)')
    p.add_argument('--kind', required=True, choices=KINDS)
    p.add_argument('--reddit_input', default='reddit_in', help='folder with the RS_/RC_YYYY-MM dumps')
    p.add_argument('--out', required=True, help='output JSONL (rank.py train --pairs)')
    p.add_argument('--max_hr_gap', type=float, default=1.0,
                   help='most hours between the two replies (the paper: 1; 0: no limit)')
    p.add_argument('--min_score_gap', type=int, default=1, help='least value gap (the paper held out: updown 20, width/depth 4)')
    p.add_argument('--min_rank_gap', type=float, default=0.0, help='least rank gap (the paper held out 0.5)')
    args = p.parse_args(argv)
    months = []
    for month in dict.fromkeys(args.dump_name):
        paths = [find_dump(args.reddit_input, kind, month) for kind in ('RS', 'RC')]
        for kind, path in zip(('RS', 'RC'), paths):
            if path is None:
                raise DumpError('%s: no %s_%s dump (.zst/.bz2/.xz/.gz/none)' % (args.reddit_input, kind, month))
        months.append(paths)
    write_pairs(months, args.out, args.kind, max_hr_gap=args.max_hr_gap, min_score_gap=args.min_score_gap,
                min_rank_gap=args.min_rank_gap)
    return 0


def run_strip_scores(argv):
    p = argparse.ArgumentParser(prog='python -m reddit_extractor strip-scores',
                                description="sed 's/[0-9]\\+|//g'")
    p.add_argument('input')
    p.add_argument('output')
    args = p.parse_args(argv)
    from .multiref import strip_scores
    strip_scores(args.input, args.output)
    return 0


def run_cut(argv):
    p = argparse.ArgumentParser(prog='python -m reddit_extractor cut',
                                description='zcat INPUTS | cut -f 2-3 > OUTPUT, refusing an implausibly small result')
    p.add_argument('output')
    p.add_argument('inputs', nargs='+')
    p.add_argument('--min_lines', type=int, default=1, help='fail below this many lines (default 1)')
    args = p.parse_args(argv)
    from .merge import cut_columns
    n = cut_columns(args.inputs, args.output, args.min_lines)
    print('%s: %d lines' % (args.output, n), file=sys.stderr)
    return 0


def run_concat(argv):
    p = argparse.ArgumentParser(prog='python -m reddit_extractor concat',
                                description='cat INPUTS > OUTPUT, written atomically (temporary name, fsync, rename)')
    p.add_argument('output')
    p.add_argument('inputs', nargs='+')
    args = p.parse_args(argv)
    from .merge import concat
    concat(args.inputs, args.output)
    return 0


def run_fetch(argv):
    p = argparse.ArgumentParser(prog='python -m reddit_extractor fetch',
                                description='download URL to DEST, resuming DEST.part (HTTP Range)')
    p.add_argument('url')
    p.add_argument('dest')
    p.add_argument('--sha256', type=sha256_hex, help='the file\'s known sha256: checked before DEST gets its name')
    p.add_argument('--size', type=int, help='the file\'s known size in bytes')
    args = p.parse_args(argv)
    from .download import download
    download(args.url, args.dest, size=args.size, sha256=args.sha256)
    return 0


def run_slurm(argv):
    from .slurm.submit import main as slurm_main
    return slurm_main(argv)


def sha256_hex(text):
    if not re.fullmatch(r'[0-9a-fA-F]{64}', text):
        raise argparse.ArgumentTypeError('expected 64 hex digits, got %r' % text)
    return text.lower()


COMMANDS = {'pairs': run_pairs, 'multiref': run_multiref, 'strip-scores': run_strip_scores, 'cut': run_cut,
            'concat': run_concat, 'fetch': run_fetch, 'slurm': run_slurm}


@command("python -m reddit_extractor")
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    run = COMMANDS.get(argv[0]) if argv else None
    try:
        if run is not None:
            return run(argv[1:])
        return run_month(argv)
    except (DumpError, OSError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
