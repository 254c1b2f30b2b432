"""The HTTP app: OpenAI-compatible routes over the engine and the batcher, plus the web chat.

  POST /v1/chat/completions   chat completions, plain JSON or server-sent events (stream: true)
  GET  /v1/models             the one model served (and /v1/models/{id})
  GET  /health                liveness, queue and batch counters, the decoding defaults
  GET  /                      the web chat (static/index.html, its JS and CSS under /static)

Every error is OpenAI's error JSON: 400 bad request, 401 API key, 404 model or path, 413 body
too large, 429 queue full (with Retry-After), 503 shutting down, 504 per-request timeout.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .batcher import Batcher, Closed, QueueFull
from .engine import Engine
from .protocol import APIError, completion_body, parse_request, stream_events

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("lsp_serve")
# the page loads only its own files: no CDN, no inline script
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is over `limit` bytes (never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body of {declared} bytes is over the limit of {limit}", code="too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes", code="too_large")
    return bytes(body)


def api_key_check(api_key: str | None):
    def check(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                           code="invalid_api_key")
    return check


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        msg = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return JSONResponse(APIError(e.status_code, msg).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal(request, e: Exception):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(APIError(500, "internal server error").body(), status_code=500)


async def _hung_up(request: Request) -> None:
    """Returns when the client closes the connection (the body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def complete(request: Request, batcher: Batcher, job, timeout_s: float):
    """Queue one job and wait for its reply, with the errors a client should see. A client
    that hangs up or times out cancels its job: the worker skips it if it has not started."""
    try:
        fut = batcher.submit(job.key(), job)
    except QueueFull as e:
        raise APIError(429, f"server busy: {e}; retry in a moment", code="queue_full", type="rate_limit_error",
                       headers={"Retry-After": "1"}) from None
    except Closed as e:
        raise APIError(503, str(e), code="shutting_down") from None
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        await asyncio.wait({fut, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is stopping this handler
        fut.cancel()
        raise
    finally:
        gone.cancel()
    if not fut.done():
        fut.cancel()
        if gone.done():
            raise APIError(499, "the client closed the connection", code="client_closed")
        raise APIError(504, f"no reply within the server's timeout of {timeout_s:g} s", code="timeout",
                       type="timeout_error")
    try:
        return fut.result()
    except Closed as e:
        raise APIError(503, str(e), code="shutting_down") from None
    except Exception as e:
        log.error("generation failed: %r", e)
        raise APIError(500, f"generation failed: {type(e).__name__}: {e}", code="generation_failed") from None


def create_app(engine: Engine, batcher: Batcher, model_id: str, api_key: str | None = None,
               timeout_s: float = 60.0, max_body: int = 1 << 20) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    # no /docs: FastAPI's docs page loads its scripts from a CDN
    app = FastAPI(title="DialoGPT", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _error_handlers(app)
    auth = [Depends(api_key_check(api_key))]
    created = int(time.time())
    card = {"id": model_id, "object": "model", "created": created, "owned_by": "dialogpt"}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id, "queued": batcher.queued(), "max_queue": batcher.max_queue,
                "max_batch": batcher.max_batch, "mmi": engine.mmi is not None, "auth": api_key is not None,
                **batcher.stats, "defaults": engine.defaults()}

    @app.get("/v1/models", dependencies=auth)
    async def models():
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{name}", dependencies=auth)
    async def model(name: str):
        if name != model_id:
            raise APIError(404, f"model {name!r} not found; this server serves {model_id!r}", code="model_not_found")
        return card

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(request: Request):
        req = parse_request(await read_body(request, max_body))
        if req.model is not None and req.model != model_id:
            raise APIError(404, f"model {req.model!r} not found; this server serves {model_id!r}", param="model",
                           code="model_not_found")
        reply = await complete(request, batcher, engine.prepare(req), timeout_s)
        if req.stream:
            usage = req.stream_options is not None and req.stream_options.include_usage
            return StreamingResponse(stream_events(reply, model_id, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return completion_body(reply, model_id)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
