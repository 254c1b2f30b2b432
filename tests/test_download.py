"""lsp_model.download against a local HTTP server on 127.0.0.1 (never the network)."""
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from lsp_model import download as dl

PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes


class Handler(BaseHTTPRequestHandler):
    files: dict = {}
    log: list = []
    honour_range = True
    cut_after = None  # bytes to send before dropping the connection
    lie_length = None

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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(path="/model.pkl"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def test_full_download(server, tmp_path):
    out = dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "m.pkl.part").exists()
    assert Handler.log == [("/model.pkl", None)]


def test_resume_sends_range_and_appends(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD[:100_000])
    dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert Handler.log == [("/model.pkl", "bytes=100000-")]


def test_interrupted_then_resumed(server, tmp_path):
    Handler.cut_after = 50_000
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert not (tmp_path / "m.pkl").exists()
    assert (tmp_path / "m.pkl.part").stat().st_size == 50_000
    Handler.cut_after = None
    dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD
    assert Handler.log[-1] == ("/model.pkl", "bytes=50000-")


def test_server_ignoring_range_restarts(server, tmp_path):
    Handler.honour_range = False
    (tmp_path / "m.pkl.part").write_bytes(b"garbage" * 10)
    dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_complete_part_is_finished_on_416(server, tmp_path):
    (tmp_path / "m.pkl.part").write_bytes(PAYLOAD)
    dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert (tmp_path / "m.pkl").read_bytes() == PAYLOAD


def test_size_check_against_expected(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="expected 999"):
        dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", expected_size=999, progress=False)
    assert not (tmp_path / "m.pkl").exists()


def test_short_body_is_not_renamed(server, tmp_path):
    Handler.lie_length = len(PAYLOAD) + 10  # announces more than it sends
    with pytest.raises(dl.DownloadError):
        dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", timeout=5, progress=False)
    assert not (tmp_path / "m.pkl").exists()


def test_existing_file_is_kept(server, tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"already here")
    dl.download(f"{server}/model.pkl", tmp_path / "m.pkl", progress=False)
    assert (tmp_path / "m.pkl").read_bytes() == b"already here"
    assert Handler.log == []


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{server}/nope.pkl", tmp_path / "x.pkl", progress=False)


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


def test_url_tables_are_the_originals():
    for name, url in dl.LSP_MODEL_URL["multiref"].items():
        assert url == f"https://acvrpublicycchen.blob.core.windows.net/dialogpt/multiref/{name}.pkl"
    assert dl.CONFIG_FILE["large"].endswith("/1542M/config.json")  # the original's quirk
    assert dl.EXPECTED_SIZE[dl.LSP_MODEL_URL["dstc"]["medium_ft"]] == 351_265_269
    for size, url in dl.GPT2_PRETRAINED_MODEL_ARCHIVE_MAP.items():
        assert urlparse(url).netloc == "s3.amazonaws.com" and "gpt2" in url
    assert dl.model_files("medium", "ft") == {"medium_ft.pkl": [dl.LSP_MODEL_URL["multiref"]["medium_ft"]]}
    with pytest.raises(ValueError, match="unknown model size"):
        dl.model_files("huge")
