"""The HTTP app: OpenAI-compatible routes over the engine and the scheduler, plus the web chat.

  POST /v1/chat/completions   chat completions, plain JSON or server-sent events (stream: true)
  POST /v1/completions        raw prompt completions (the prompt's tokens as they are), same options
  GET  /v1/models             the one model served (and /v1/models/{id})
  GET  /health                status (200 "ok"; 503 "degraded" when decoding is stuck, or "closed"),
                              queue, rows and cost counters, the decoding defaults
  GET  /                      the web chat (static/index.html, its JS and CSS under /static)

Every error is OpenAI's error JSON: 400 bad request, 401 API key, 403 foreign Host or Origin
(guard.py), 404 model or path, 413 body too large, 415 not JSON, 429 busy (queue or token
positions full, with Retry-After), 503 shutting down, 504 per-request timeout. Parsing and
tokenizing run in a thread pool, decoding on the scheduler's thread: the event loop only moves
bytes, so /health and refusals stay fast under any load.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .engine import Engine
from .guard import LOCAL_HOSTS, Guard
from .protocol import APIError, ChatRequest, CompletionRequest, Wire, parse_request
from .scheduler import Closed, QueueFull, Scheduler, Ticket, TooBig

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("lsp_serve")
# the page loads only its own files: no CDN, no inline script
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


async def read_body(request: Request, limit: int) -> bytes:
    """The JSON body, refused with 413 as soon as it is over `limit` bytes (never read whole)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise APIError(415, f"Content-Type must be application/json (got {ctype or 'none'!r})",
                       code="unsupported_media_type")
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


def _as_api_error(e: Exception) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, QueueFull):
        return APIError(429, f"server busy: {e}; retry in a moment", code="queue_full", type="rate_limit_error",
                        headers={"Retry-After": "1"})
    if isinstance(e, TooBig):
        return APIError(400, str(e), param="max_tokens", code="request_too_large")
    if isinstance(e, Closed):
        return APIError(503, str(e), code="shutting_down")
    log.error("generation failed: %r", e)
    return APIError(500, f"generation failed: {type(e).__name__}: {e}", code="generation_failed")


async def _hung_up(request: Request) -> None:
    """Returns when the client closes the connection (the body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def messages(request: Request, scheduler: Scheduler, ticket: Ticket, deadline: float):
    """The job's messages as they come. A client that hangs up (499) or a deadline that passes
    (504) cancels the job at once: it leaves the queue, or its rows leave the batch."""
    loop = asyncio.get_running_loop()
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        while True:
            get = asyncio.ensure_future(ticket.messages.get())
            done, _ = await asyncio.wait({get, gone}, timeout=max(0.0, deadline - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                if gone.done():
                    raise APIError(499, "the client closed the connection", code="client_closed")
                raise APIError(504, "no reply within the server's timeout", code="timeout", type="timeout_error")
            msg = get.result()
            if msg[0] == "error":
                raise _as_api_error(msg[1])
            yield msg
            if msg[0] == "done":
                return
    finally:
        gone.cancel()
        scheduler.cancel(ticket)      # a no-op once the job is done


async def sse(request, scheduler, ticket: Ticket, wire: Wire, deadline: float, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: per choice a role chunk (chat), its text
    deltas as tokens arrive, a finish chunk; the usage chunk if asked; `data: [DONE]`. Reranked
    and beam-search jobs send each choice whole when all candidates are done. An error after
    the first byte is an `error` event (the openai client raises it)."""
    job = ticket.job
    for i in range(job.n):
        if (head := wire.start(i)) is not None:
            yield head
    try:
        async for msg in messages(request, scheduler, ticket, deadline):
            if msg[0] == "delta":
                _, index, text, lps, finish = msg
                yield wire.delta(index, text, lps, finish)
            else:
                reply = msg[1]
                if not job.streams_tokens:
                    for i, c in enumerate(reply.choices):
                        yield wire.delta(i, c.text, c.logprobs, c.finish_reason)
                if include_usage:
                    yield wire.usage_event(reply.usage())
    except APIError as e:
        yield Wire.error_event(e)
    yield Wire.DONE


def create_app(engine: Engine, scheduler: Scheduler, model_id: str, api_key: str | None = None,
               timeout_s: float = 60.0, max_body: int = 1 << 20, hosts=LOCAL_HOSTS) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        scheduler.stop()

    # no /docs: FastAPI's docs page loads its scripts from a CDN
    app = FastAPI(title="DialoGPT", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.add_middleware(Guard, hosts=hosts)
    _error_handlers(app)
    auth = [Depends(api_key_check(api_key))]
    created = int(time.time())
    card = {"id": model_id, "object": "model", "created": created, "owned_by": "dialogpt"}
    ranking = engine.ranking.name if engine.ranking is not None else None

    @app.get("/health")
    async def health():
        h = scheduler.health()
        status = h.pop("status")
        body = {"status": status, "model": model_id, "reranker": ranking, "auth": api_key is not None, **h,
                "defaults": engine.defaults()}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    @app.get("/v1/models", dependencies=auth)
    async def models():
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{name}", dependencies=auth)
    async def model(name: str):
        if name != model_id:
            raise APIError(404, f"model {name!r} not found; this server serves {model_id!r}", code="model_not_found")
        return card

    async def complete(request: Request, schema, prepare, chat: bool):
        body = await read_body(request, max_body)
        req = await run_in_threadpool(parse_request, body, schema)
        if req.model is not None and req.model != model_id:
            raise APIError(404, f"model {req.model!r} not found; this server serves {model_id!r}", param="model",
                           code="model_not_found")
        job = await run_in_threadpool(prepare, req)
        try:
            ticket = scheduler.submit(job)
        except (QueueFull, TooBig, Closed) as e:
            raise _as_api_error(e) from None
        wire = Wire(model_id, chat)
        deadline = asyncio.get_running_loop().time() + timeout_s
        if req.stream:
            usage = req.stream_options is not None and req.stream_options.include_usage
            return StreamingResponse(sse(request, scheduler, ticket, wire, deadline, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        async for msg in messages(request, scheduler, ticket, deadline):
            if msg[0] == "done":
                return wire.body(msg[1])

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(request: Request):
        return await complete(request, ChatRequest, engine.prepare_chat, chat=True)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(request: Request):
        return await complete(request, CompletionRequest, engine.prepare_completion, chat=False)

    @app.api_route("/", methods=["GET", "HEAD"])
    async def page():
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve(app: FastAPI, sock, log_level: str = "info", drain_s: float = 10.0) -> None:
    """uvicorn on the already bound socket `sock`, with SIGTERM/SIGINT draining: new requests get 503 at once, the queued and
    running ones have `drain_s` seconds to finish, the rest are answered 503; then it exits."""
    import uvicorn

    scheduler: Scheduler = app.state.scheduler

    def drain():
        end = time.monotonic() + drain_s
        while not scheduler.idle() and time.monotonic() < end:
            time.sleep(0.05)
        scheduler.stop()

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if not self.should_exit:
                scheduler.close()
                threading.Thread(target=drain, name="drain", daemon=True).start()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=drain_s + 5)
    _Server(config).run(sockets=[sock])
