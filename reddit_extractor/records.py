"""One dump line -> one extract row (or a reason it was dropped).

The original parsed every line with ``json.loads`` inside a try/except that
printed a traceback and moved on.  Here the same lines are dropped, but each
one gets a reason that is counted in ``stat.errors.tsv`` (bad input) or not
counted at all (an ordinary filter).
"""
import json

from .normalise import minimal_norm

try:  # orjson is ~3x faster; any line it rejects goes through json, so results are identical
    import orjson
    _fast_loads = orjson.loads
    _FastError = orjson.JSONDecodeError
except ImportError:  # pragma: no cover
    _fast_loads = None
    _FastError = ValueError

class BadRecord(Exception):
    """A dump line the original would have dropped with a traceback; args[0] is the reason."""


def parse(line):
    """The JSON object on ``line`` (bytes)."""
    if _fast_loads is not None:
        try:
            obj = _fast_loads(line)
        except _FastError:
            obj = _slow_loads(line)
    else:
        obj = _slow_loads(line)
    if type(obj) is not dict:
        raise BadRecord('not_an_object')
    return obj


def _slow_loads(line):
    try:  # decode first, as the original's text reader did (a BOM is then an error)
        return json.loads(line.decode('utf-8'))
    except UnicodeDecodeError:
        raise BadRecord('bad_utf8') from None
    except (ValueError, RecursionError):
        raise BadRecord('bad_json') from None


def _field(d, key):
    try:
        return d[key]
    except KeyError:
        raise BadRecord('missing_' + key) from None


def submission_row(d):
    """(``t3_<id>``, rs_sub row) for a kept submission, None when it has < 2 comments."""
    num = _field(d, 'num_comments')
    if num is None:
        raise BadRecord('null_num_comments')
    try:
        if int(num) < 2:
            return None
    except (TypeError, ValueError, OverflowError):
        raise BadRecord('bad_num_comments') from None
    title = _field(d, 'title')
    if not isinstance(title, str):
        raise BadRecord('null_title' if title is None else 'bad_title')
    sid = _field(d, 'id')
    if not isinstance(sid, str):
        raise BadRecord('null_id' if sid is None else 'bad_id')
    row = '\t'.join([sid, str(_field(d, 'score')), str(num), str(_field(d, 'domain')),
                     str(_field(d, 'permalink')), minimal_norm(title)])
    return 't3_' + sid, row


def comment_row(d, keys, sid_to_sub):
    """(chunk number, rc_sub row) for a kept comment, None for a filtered one.

    Filters, in the original's order: key file (``dep`` lines), ``[deleted]``,
    quotes (``>`` or ``&gt;`` anywhere), submission not kept, < 2 words.
    """
    if keys is not None:
        link_id = _field(d, 'link_id')
        cid = _field(d, 'id')
        if not isinstance(link_id, str) or not isinstance(cid, str):
            raise BadRecord('bad_id')
        if link_id + '\tt1_' + cid not in keys:
            return None
    body = _field(d, 'body')
    if body == '[deleted]':
        return None
    if not isinstance(body, str):
        raise BadRecord('null_body' if body is None else 'bad_body')
    if '>' in body or '&gt;' in body:
        return None
    sid = _field(d, 'link_id')
    try:
        sub = sid_to_sub.get(sid)
    except TypeError:
        raise BadRecord('bad_link_id') from None
    if sub is None:
        return None
    n_char = len(body)
    body = minimal_norm(body)
    if len(body.split()) < 2:
        return None
    row = '\t'.join([str(_field(d, 'id')), str(_field(d, 'author')), str(_field(d, 'parent_id')),
                     str(sid), str(_field(d, 'score')), str(n_char), body])
    return sub, row
