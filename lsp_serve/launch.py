"""Run `serve.py` as a subprocess on a free local port, wait until it answers, stop it after:
what the tests and the benchmark do, and what a notebook can do.

    with Server(["--model", "models/medium"]) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="none")
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVE = Path(__file__).resolve().parents[1] / "serve.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`serve.py ARGS --port P` on 127.0.0.1; `url` once /health answers. A start that fails
    (e.g. the port was taken meanwhile) is retried on another port; a server that dies raises
    with the end of its log."""

    def __init__(self, args: list[str], env: dict | None = None, ready_timeout: float = 180.0, tries: int = 3):
        self.args, self.ready_timeout, self.tries = list(args), ready_timeout, tries
        self.env = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._log = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log", delete=False)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> "Server":
        for _ in range(self.tries):
            port = free_port()
            self.proc = subprocess.Popen([sys.executable, str(SERVE), *self.args, "--port", str(port)],
                                         stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=SERVE.parent, stdin=subprocess.DEVNULL)
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready():
                return self
            if "address already in use" not in self.log().lower():
                break
        self.stop()
        raise RuntimeError(f"serve.py {' '.join(self.args)} did not start:\n{self.log()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        return False

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None if self.proc is None else self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)
