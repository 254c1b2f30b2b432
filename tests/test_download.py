"""lsp_io.download (and lsp_model.download's tables) against a local HTTP server on 127.0.0.1, never the network."""
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from lsp_io import download as io_dl
from lsp_model import download as dl

PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    files: dict = {}
    log: list = []
    honour_range = True
    cut_after = None  # bytes to send before dropping the connection
    lie_length = None
    send_length = True
    content_type = "application/octet-stream"

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = self.files.get(self.path)
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and self.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", self.content_type)
        if self.send_length:
            self.send_header("Content-Length", str(self.lie_length or len(body)))
        self.end_headers()
        if self.cut_after is not None:
            self.wfile.write(body[:self.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    Handler.files = {"/model.pkl": PAYLOAD, "/b.bin": b"second file"}
    Handler.log = []
    Handler.honour_range, Handler.cut_after, Handler.lie_length = True, None, None
    Handler.send_length, Handler.content_type = True, "application/octet-stream"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def get(url, dest, **kw):
    return io_dl.download(url, dest, progress=False, **kw)


def closed_port_url(path="/model.pkl"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def test_full_download_records_what_was_verified(server, tmp_path):
    out = get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "m.pkl.part").exists()
    assert Handler.log == [("/model.pkl", None)]
    assert (tmp_path / "m.pkl.sha256").read_text() == f"{SHA}  {len(PAYLOAD)}  m.pkl\n"
    assert io_dl.read_manifest(tmp_path / "m.pkl.sha256") == {"m.pkl": (len(PAYLOAD), SHA)}


def test_resume_sends_range_and_appends(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD[:100_000])
    get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert Handler.log == [("/model.pkl", "bytes=100000-")]


def test_interrupted_then_resumed(server, tmp_path):
    Handler.cut_after = 50_000
    with pytest.raises(io_dl.DownloadError, match="run again to resume"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()
    assert (tmp_path / "m.pkl.part").stat().st_size == 50_000
    Handler.cut_after = None
    get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert Handler.log[-1] == ("/model.pkl", "bytes=50000-")


def test_no_length_is_refused_unless_a_sha256_is_known(server, tmp_path):
    """A response without Content-Length that closes early would look complete: refused unread."""
    Handler.send_length, Handler.cut_after = False, 50_000
    with pytest.raises(io_dl.DownloadError, match="no Content-Length"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # with a known sha256 the cut body is caught by the hash and discarded ...
    with pytest.raises(io_dl.DownloadError, match="sha256.*discarded"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl", sha256=SHA)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # ... and the whole body passes it
    Handler.cut_after = None
    assert get(f"{server}/model.pkl", tmp_path / "m.pkl", sha256=SHA).read_bytes() == PAYLOAD


def test_html_page_is_refused(server, tmp_path):
    Handler.content_type = "text/html; charset=utf-8"
    with pytest.raises(io_dl.DownloadError, match="HTML page"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_same_size_wrong_bytes_fail_the_sha256(server, tmp_path):
    Handler.files["/model.pkl"] = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(io_dl.DownloadError, match=f"sha256 .*expected {SHA}.*discarded"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl", size=len(PAYLOAD), sha256=SHA)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no .part to resume from


def test_rerun_reverifies_and_repairs(server, tmp_path, capsys):
    dest = tmp_path / "m.pkl"
    get(f"{server}/model.pkl", dest)
    get(f"{server}/model.pkl", dest)  # verified against its record: no request
    assert Handler.log == [("/model.pkl", None)]
    dest.write_bytes(b"\xff" + PAYLOAD[1:])  # same size, wrong bytes: caught by the recorded sha256
    get(f"{server}/model.pkl", dest)
    assert dest.read_bytes() == PAYLOAD and len(Handler.log) == 2
    assert "sha256" in capsys.readouterr().err
    dest.write_bytes(PAYLOAD[:1000])  # cut short, with a size known from the table
    (tmp_path / "m.pkl.sha256").unlink()
    get(f"{server}/model.pkl", dest, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and len(Handler.log) == 3
    assert "has 1000 bytes, expected 256000: downloading it again" in capsys.readouterr().err


def test_hand_placed_file_is_kept_with_a_warning(server, tmp_path, capsys):
    (tmp_path / "m.pkl").write_bytes(b"already here")
    get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == b"already here"
    assert Handler.log == []
    assert "not verified" in capsys.readouterr().err


def test_server_ignoring_range_restarts(server, tmp_path):
    Handler.honour_range = False
    (tmp_path / "m.pkl.part").write_bytes(b"garbage" * 10)
    get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_complete_part_is_finished_on_416(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD)
    get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_part_that_cannot_belong_is_discarded(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD + b"extra")  # longer than the server's file
    with pytest.raises(io_dl.DownloadError, match="does not fit"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl.part").exists() and not (tmp_path / "m.pkl").exists()
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD + b"extra")  # longer than the known size
    get(f"{server}/model.pkl", tmp_path / "m.pkl", size=len(PAYLOAD))
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_size_check_against_expected(server, tmp_path):
    with pytest.raises(io_dl.DownloadError, match="expected 999"):
        get(f"{server}/model.pkl", tmp_path / "m.pkl", size=999)
    assert not (tmp_path / "m.pkl").exists()


def test_short_body_is_not_renamed(server, tmp_path):
    Handler.lie_length = len(PAYLOAD) + 10  # announces more than it sends
    with pytest.raises(io_dl.DownloadError):
        io_dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", timeout=5, progress=False)
    assert not (tmp_path / "m.pkl").exists()


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(io_dl.DownloadError, match="HTTP 404"):
        get(f"{server}/nope.pkl", tmp_path / "x.pkl")


def test_manifest_format(tmp_path):
    m = tmp_path / "SHA256SUMS"
    m.write_text(f"# comment\n\n{SHA}  256000  RC_2011-01.zst\n-  12  RS_2011-01.zst\n{SHA.upper()}  -  a b\n")
    assert io_dl.read_manifest(m) == {"RC_2011-01.zst": (256000, SHA), "RS_2011-01.zst": (12, None),
                                      "a b": (None, SHA)}
    assert io_dl.manifest_line("x", 3, None) == "-  3  x\n"
    m.write_text(f"{SHA}  256000  ok\nnot a line\n")
    with pytest.raises(io_dl.DownloadError, match=f"{re.escape(str(m))}:2: expected 'sha256  size  name'"):
        io_dl.read_manifest(m)


def test_offline_message_names_files(tmp_path, monkeypatch):
    url = closed_port_url()
    monkeypatch.setitem(dl.LSP_MODEL_URL["multiref"], "small_ft", url)
    with pytest.raises(dl.DownloadError) as e:
        dl.fetch_model_files("small", "ft", tmp_path / "models", timeout=5, progress=False)
    msg = str(e.value)
    assert "cannot connect" in msg and url in msg
    assert str(tmp_path / "models" / "small_ft.pkl") in msg and "--model_dir" in msg


def test_fallback_mirror_and_local_dir(server, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.GPT2_PRETRAINED_MODEL_ARCHIVE_MAP, "small", closed_port_url())
    monkeypatch.setitem(dl.GPT2_HUB_MIRROR, "small", f"{server}/model.pkl")
    got = dl.fetch_model_files("small", "gpt2", tmp_path / "models", timeout=5, progress=False)
    assert got == tmp_path / "models" / "pytorch_model.bin" and got.read_bytes() == PAYLOAD
    # a --model_dir that already holds the file needs no network at all
    Handler.log.clear()
    assert dl.fetch_model_files("small", "gpt2", tmp_path / "elsewhere", model_dir=tmp_path / "models") == got
    assert Handler.log == []


def test_known_files_table_is_used(server, tmp_path, monkeypatch):
    url = f"{server}/model.pkl"
    monkeypatch.setitem(dl.LSP_MODEL_URL["multiref"], "small_ft", url)
    monkeypatch.setitem(dl.KNOWN_FILES, url, (len(PAYLOAD), "0" * 64))
    with pytest.raises(dl.DownloadError, match="sha256"):
        dl.fetch_model_files("small", "ft", tmp_path / "models", timeout=5, progress=False)
    assert not (tmp_path / "models" / "small_ft.pkl").exists()


def test_url_tables_are_the_originals():
    for name, url in dl.LSP_MODEL_URL["multiref"].items():
        assert url == f"https://acvrpublicycchen.blob.core.windows.net/dialogpt/multiref/{name}.pkl"
    assert dl.CONFIG_FILE["large"].endswith("/1542M/config.json")  # the original's quirk
    assert dl.KNOWN_FILES[dl.LSP_MODEL_URL["dstc"]["medium_ft"]] == (351_265_269, None)
    for size, url in dl.GPT2_PRETRAINED_MODEL_ARCHIVE_MAP.items():
        assert urlparse(url).netloc == "s3.amazonaws.com" and "gpt2" in url
    assert dl.model_files("medium", "ft") == {"medium_ft.pkl": [dl.LSP_MODEL_URL["multiref"]["medium_ft"]]}
    with pytest.raises(ValueError, match="unknown model size"):
        dl.model_files("huge")
