"""Who may talk to the server: a Host allow-list and no cross-origin browser requests.

A local server is reachable by every web page its user opens: a page can POST to
http://127.0.0.1:8000 (a "simple" request needs no CORS preflight), and DNS rebinding lets a
page on attacker.example read the replies from a server it reaches under its own name. So:
- the Host header must name an allowed host (127.0.0.1, localhost and ::1 by default; the
  serve.py flag --allow_host adds names, `*` allows any);
- a request a browser marks as coming from another page (an Origin header other than this
  server's own, or Sec-Fetch-Site cross-site/same-site) is refused. The web chat at / is this
  server's own page, so its requests pass; clients that are not browsers send no Origin.
Both are 403s in OpenAI's error JSON, before any route runs.
"""
from __future__ import annotations

import json

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(host: str) -> str:
    """'example.org:8000' -> 'example.org', '[::1]:8000' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware: refuse foreign Host headers and cross-origin browser requests."""

    def __init__(self, app, hosts=LOCAL_HOSTS):
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            why = self.refusal({k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]})
            if why is not None:
                return await _forbidden(send, why)
        await self.app(scope, receive, send)

    def refusal(self, headers: dict) -> str | None:
        host = headers.get("host", "")
        if not self.any_host and host_name(host) not in self.hosts:
            return (f"Host {host!r} is not allowed (this server answers to {', '.join(sorted(self.hosts))}; "
                    "serve.py --allow_host NAME adds one)")
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            return f"cross-origin request from {origin!r} refused: only this server's own page may call it"
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return "cross-site browser request refused: only this server's own page may call it"
        return None


async def _forbidden(send, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": "forbidden"}}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
