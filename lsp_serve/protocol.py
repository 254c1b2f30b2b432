"""The OpenAI chat-completions wire format: the request schema, errors, responses, stream chunks.

Only what DialoGPT can honour is accepted: fields of the wrong type, out-of-range values and
features it has no notion of (tools, JSON mode, logprobs) are 400s in OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}`, so an OpenAI client raises a readable error.
Fields the API defines that do not change a DialoGPT reply (user, metadata, ...) are ignored.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP = 4         # OpenAI's limit on stop sequences
MAX_N = 16           # choices per request: each is a row of the batch


class APIError(Exception):
    """An error answered as OpenAI's error JSON with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    # strict: "2" is not an int and 1 is not a bool (an int is still a float, as in JSON)
    model_config = ConfigDict(strict=True, extra="ignore")


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = ""     # text parts are joined: DialoGPT reads text only

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, v):
        if v is None or isinstance(v, str):
            return v or ""
        if isinstance(v, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                       for p in v):
            return " ".join(p["text"] for p in v)
        raise ValueError('must be a string or a list of {"type": "text", "text": "..."} parts')


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    seed: int | None = None
    stop: list[str] = []
    stream: bool = False
    stream_options: StreamOptions | None = None
    # OpenAI features DialoGPT cannot honour: accepted only at their "off" value
    logprobs: bool | None = None
    tools: list | None = None
    response_format: dict | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, v):
        if v is None or isinstance(v, str):
            v = [] if v is None else [v]
        if not (isinstance(v, list) and len(v) <= MAX_STOP and all(isinstance(s, str) and s for s in v)):
            raise ValueError(f"must be a string or a list of at most {MAX_STOP} non-empty strings")
        return v


def parse_request(body: bytes) -> ChatRequest:
    """The validated request, or an APIError(400) naming the first bad field."""
    try:
        obj = json.loads(body)
    except UnicodeDecodeError:
        raise APIError(400, "request body is not UTF-8 JSON", code="invalid_json") from None
    except json.JSONDecodeError as e:
        raise APIError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from None
    if not isinstance(obj, dict):
        raise APIError(400, f"request body must be a JSON object, not {type(obj).__name__}", code="invalid_json")
    try:
        req = ChatRequest.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] in ("missing", "value_error") else f" (got {json.dumps(err.get('input'))[:60]})"
        raise APIError(400, f"{param}: {msg}{got}", param=param, code="invalid_value") from None
    _check_supported(req)
    return req


def _check_supported(req: ChatRequest) -> None:
    if req.logprobs:
        raise APIError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported")
    if req.tools:
        raise APIError(400, "tools are not supported: DialoGPT is a plain dialogue model", param="tools",
                       code="unsupported")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise APIError(400, "only response_format {\"type\": \"text\"} is supported", param="response_format",
                       code="unsupported")


# ---------------------------------------------------------------------------------------------
# responses


@dataclass
class Choice:
    text: str
    finish_reason: str          # "stop" (EOS or a stop string) or "length" (max_tokens reached)
    n_tokens: int               # reply tokens generated (EOS not counted)
    pieces: list[str] = field(default_factory=list)   # text deltas, one per token that adds text


@dataclass
class Reply:
    choices: list[Choice]
    prompt_tokens: int          # context tokens the model saw

    def usage(self) -> dict:
        done = sum(c.n_tokens for c in self.choices)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": done,
                "total_tokens": self.prompt_tokens + done}


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion_body(reply: Reply, model: str) -> dict:
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                         "finish_reason": c.finish_reason} for i, c in enumerate(reply.choices)],
            "usage": reply.usage()}


def stream_events(reply: Reply, model: str, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: per choice a role chunk, its text deltas and
    a finish chunk; then (if asked) a usage chunk with no choices; then `data: [DONE]`."""
    head = {"id": completion_id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def event(choices, **extra) -> str:
        return "data: " + json.dumps(head | {"choices": choices} | extra, ensure_ascii=False) + "\n\n"

    for i, c in enumerate(reply.choices):
        yield event([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in c.pieces:
            yield event([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
        yield event([{"index": i, "delta": {}, "finish_reason": c.finish_reason}])
    if include_usage:
        yield event([], usage=reply.usage())
    yield "data: [DONE]\n\n"
