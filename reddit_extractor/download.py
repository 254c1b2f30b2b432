"""Fetching a missing dump from a mirror, resumable (HTTP Range), never silently partial."""
import os
import shutil
import sys
import urllib.error
import urllib.request

from .dumps import DumpError


def dump_url(base_url, name):
    """``RS_*`` live under ``submissions/``, ``RC_*`` under ``comments/`` (pushshift layout)."""
    folder = 'submissions' if name.startswith('RS_') else 'comments'
    return '%s/%s/%s' % (base_url.rstrip('/'), folder, name)


def download(url, dest, timeout=60):
    """Download ``url`` to ``dest``; a ``dest.part`` left by an interrupted run is resumed."""
    part = dest + '.part'
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={'Range': 'bytes=%d-' % have} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already complete
            os.replace(part, dest)
            return dest
        raise DumpError('download of %s failed: HTTP %d %s. Put the file at %s by hand '
                        '(see docs/reddit.md, "Obtaining the dumps").' % (url, e.code, e.reason, dest)) from None
    except (urllib.error.URLError, OSError) as e:
        raise DumpError('download of %s failed: %s. Put the file at %s by hand '
                        '(see docs/reddit.md, "Obtaining the dumps").' % (url, e, dest)) from None
    with resp:
        resumed = have and resp.status == 206
        total = resp.headers.get('Content-Length')
        expected = (int(total) + (have if resumed else 0)) if total else None
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        with open(part, 'ab' if resumed else 'wb') as f:
            try:
                shutil.copyfileobj(resp, f, 1 << 20)
            except OSError as e:
                raise DumpError('download of %s interrupted after %d bytes (%s); run again to resume'
                                % (url, f.tell(), e)) from None
    size = os.path.getsize(part)
    if expected is not None and size != expected:
        raise DumpError('download of %s incomplete: %d of %d bytes; run again to resume'
                        % (url, size, expected))
    os.replace(part, dest)
    print('downloaded %s (%d bytes)' % (dest, size), file=sys.stderr)
    return dest
