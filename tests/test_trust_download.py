"""The downloader refuses an HTML page by its first bytes whatever the Content-Type says, and
`python -m reddit_extractor fetch --sha256` checks a hash the user knows (local server only)."""
import hashlib

import pytest

from lsp_io import download as io_dl
from reddit_extractor import cli as rcli
from test_download import PAYLOAD, SHA, Handler, get, server  # noqa: F401 (server is a fixture)

PAGE = b"\n  <!-- mirror -->\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n"


@pytest.mark.parametrize("body", [PAGE, b"<html>\n<body>404</body></html>", b"\xef\xbb\xbf<HEAD>x</HEAD>"])
def test_an_html_body_is_refused_whatever_its_content_type(server, tmp_path, body):  # noqa: F811
    Handler.files["/model.pkl"] = body  # served as application/octet-stream
    with pytest.raises(io_dl.DownloadError, match="the server sent an HTML page"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing kept, nothing to resume from


def test_a_resumed_part_that_is_html_is_refused(server, tmp_path):  # noqa: F811
    """A `.part` left by an earlier try whose first bytes were a page: caught on the whole file."""
    Handler.files["/model.pkl"] = PAGE + PAYLOAD
    (tmp_path / "m.pkl.part").write_bytes(PAGE)
    with pytest.raises(io_dl.DownloadError, match="HTML page"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists() and not (tmp_path / "m.pkl.part").exists()


def test_binary_that_mentions_html_later_is_kept(server, tmp_path):  # noqa: F811
    Handler.files["/model.pkl"] = PAYLOAD[:1000] + b"<html>" + PAYLOAD
    assert get(f"{server}/model.pkl", tmp_path / "m.pkl").read_bytes() == PAYLOAD[:1000] + b"<html>" + PAYLOAD


def test_fetch_checks_a_known_sha256(server, tmp_path, capsys):  # noqa: F811
    wrong = hashlib.sha256(b"other").hexdigest()
    assert rcli.main(["fetch", f"{server}/model.pkl", str(tmp_path / "m.pkl"), "--sha256", wrong]) == 1
    err = capsys.readouterr().err
    assert f"sha256 {SHA}, expected {wrong}" in err and err.count("\n") == 1
    assert not (tmp_path / "m.pkl").exists()
    assert rcli.main(["fetch", f"{server}/model.pkl", str(tmp_path / "m.pkl"), "--sha256", SHA.upper()]) == 0
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    with pytest.raises(SystemExit) as e:
        rcli.main(["fetch", f"{server}/model.pkl", str(tmp_path / "n.pkl"), "--sha256", "abc"])
    assert e.value.code == 2 and "expected 64 hex digits" in capsys.readouterr().err
