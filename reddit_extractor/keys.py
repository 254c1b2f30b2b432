"""Key files: which comments the official data set kept, and discarded turn hashes.

A key file (``keys-test.gz``, ``keys/YYYY-MM.gz``) has lines
``t3_<sid>\\tt1_<cid>\\t{dep|keep}``: ``dep`` marks every comment the extract
step must keep (targets and their ancestors), ``keep`` the conv targets.
A ``-o.gz`` file holds sha224 hex digests of normalised turns whose weight
becomes 0.0.
"""
from .dumps import read_text_lines


def load_pairs(path, tag):
    """Set of ``'t3_sid\\tt1_cid'`` strings whose key line ends with ``tag``."""
    suffix = '\t' + tag
    out = set()
    for line in read_text_lines(path):
        line = line.strip()
        if line.endswith(suffix):
            out.add(line[:-len(suffix)])
    return out


def load_hashes(path):
    """Set of the stripped lines of a discard-hash file."""
    return {line.strip() for line in read_text_lines(path)}
