"""Fetching a missing dump from a mirror: the toolkit's resumable downloader (HTTP Range,
size-checked, `.part` file until complete), with the dump layout and a hint on failure."""
from lsp_model.download import DownloadError, download as _download

from .dumps import DumpError


def dump_url(base_url, name):
    """``RS_*`` live under ``submissions/``, ``RC_*`` under ``comments/`` (pushshift layout)."""
    folder = 'submissions' if name.startswith('RS_') else 'comments'
    return '%s/%s/%s' % (base_url.rstrip('/'), folder, name)


def download(url, dest, timeout=60):
    """Download ``url`` to ``dest``; a ``dest.part`` left by an interrupted run is resumed."""
    try:
        return str(_download(url, dest, timeout=timeout))
    except DownloadError as e:
        raise DumpError('download failed: %s. Run again to resume, or put the file at %s by hand '
                        '(see docs/reddit.md, "Obtaining the dumps").' % (e, dest)) from None
