"""Fetching a missing dump (or key file) from a mirror with lsp_io's verified downloader (HTTP Range
resume, `.part` until complete and checked), with the dump layout and a hint on failure."""
from lsp_io.download import DownloadError, download as _download

from .dumps import DumpError


def dump_url(base_url, name):
    """``RS_*`` live under ``submissions/``, ``RC_*`` under ``comments/`` (pushshift layout)."""
    folder = 'submissions' if name.startswith('RS_') else 'comments'
    return '%s/%s/%s' % (base_url.rstrip('/'), folder, name)


def download(url, dest, size=None, sha256=None, timeout=60):
    """Download ``url`` to ``dest`` (checked against ``size``/``sha256`` when given); a ``dest.part``
    left by an interrupted run is resumed."""
    try:
        return str(_download(url, dest, size=size, sha256=sha256, timeout=timeout))
    except DownloadError as e:
        raise DumpError('download failed: %s. Run again to resume, or put the file at %s by hand '
                        '(see docs/reddit.md, "Obtaining the dumps").' % (e, dest)) from None
