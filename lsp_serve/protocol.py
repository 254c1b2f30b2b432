"""The OpenAI wire format: the request schemas (chat and raw completions), errors, responses and
stream chunks.

Every parameter is either honoured or refused: a field the schema does not know is a 400 in
OpenAI's error shape `{"error": {"message", "type", "param", "code"}}` naming it, and so is a
feature DialoGPT has no notion of (tools, JSON mode, echo, suffix) unless it is at its "off"
value. Only `user` and `metadata`, which never change a reply, are accepted and ignored.
Bodies are checked before the schema: invalid JSON, nesting deeper than Python's parser allows,
and lone UTF-16 surrogates ("\\ud800", which no UTF-8 text holds) are 400s, never 500s.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lsp_model.generation_args import MAX_TOP_LOGPROBS

MAX_STOP = 4         # OpenAI's limit on stop sequences
MAX_N = 16           # choices per request: each is a row of the batch
MAX_COMPLETION_LOGPROBS = 5   # OpenAI's limit for completions (chat: MAX_TOP_LOGPROBS)
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    # strict: "2" is not an int and 1 is not a bool (an int is still a float, as in JSON);
    # forbid: a parameter we do not implement is refused, never silently ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str = ""     # text parts are joined: DialoGPT reads text only
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, v):
        if v is None or isinstance(v, str):
            return v or ""
        if isinstance(v, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                       and set(p) == {"type", "text"} for p in v):
            return " ".join(p["text"] for p in v)
        raise ValueError('must be a string or a list of {"type": "text", "text": "..."} parts')


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """What chat and raw completions share: the decoding settings of a request."""
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)     # null = the default, as OpenAI accepts
    seed: int | None = None
    stop: list[str] = []
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    # DialoGPT extensions (vLLM and transformers serve accept the same names)
    repetition_penalty: float | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    min_tokens: int | None = Field(None, ge=0)
    # accepted and ignored: they never change a reply
    user: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, v):
        if v is None or isinstance(v, str):
            v = [] if v is None else [v]
        if not (isinstance(v, list) and len(v) <= MAX_STOP and all(isinstance(s, str) and s for s in v)):
            raise ValueError(f"must be a string or a list of at most {MAX_STOP} non-empty strings")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v):
        for k, b in (v or {}).items():
            if not k.isdigit():
                raise ValueError(f"keys must be token ids (got {k!r})")
            if not -100 <= b <= 100:
                raise ValueError(f"values must be in [-100, 100] (got {b} for token {k})")
        return v

    def token_limit(self) -> int | None:
        return self.max_tokens

    def top_logprobs_wanted(self) -> int | None:
        """None: no logprobs; 0: the chosen token's; k: and the k likeliest."""
        raise NotImplementedError


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # OpenAI features DialoGPT cannot honour: accepted only at their "off" value
    tools: list | None = None
    tool_choice: Literal["none"] | None = None
    response_format: dict | None = None

    @model_validator(mode="after")
    def _combine(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def top_logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int]
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError("one prompt per request (send several requests: they are batched)")
            return v[0]
        return v

    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal"))))


def parse_request(body: bytes, schema: type[_Sampling] = ChatRequest) -> _Sampling:
    """The validated request, or an APIError(400) naming the first bad field."""
    try:
        obj = json.loads(body)
    except UnicodeDecodeError:
        raise APIError(400, "request body is not UTF-8 JSON", code="invalid_json") from None
    except json.JSONDecodeError as e:
        raise APIError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "request body is nested too deeply", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise APIError(400, f"request body must be a JSON object, not {type(obj).__name__}", code="invalid_json")
    where = _surrogate_at(obj)
    if where is not None:
        raise APIError(400, f"{where or 'body'}: text holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                       "which is not Unicode text", param=where or None, code="invalid_unicode")
    try:
        req = schema.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        param = _loc(err)
        if err["type"] == "extra_forbidden":
            raise APIError(400, f"unrecognized request argument supplied: {param} (this server does not "
                           "implement it)", param=param, code="unknown_parameter") from None
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] in ("missing", "value_error") else f" (got {json.dumps(err.get('input'))[:60]})"
        raise APIError(400, f"{param or 'body'}: {msg}{got}", param=param or None, code="invalid_value") from None
    _check_supported(req)
    return req


def _surrogate_at(obj, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(obj, str):
        return path if _SURROGATE.search(obj) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        sub = f"{path}.{k}" if path else str(k)
        if isinstance(k, str) and _SURROGATE.search(k):
            return sub
        hit = _surrogate_at(v, sub)
        if hit is not None:
            return hit
    return None


def _check_supported(req: _Sampling) -> None:
    if isinstance(req, ChatRequest):
        if req.tools:
            raise APIError(400, "tools are not supported: DialoGPT is a plain dialogue model", param="tools",
                           code="unsupported")
        if req.response_format and req.response_format.get("type", "text") != "text":
            raise APIError(400, "only response_format {\"type\": \"text\"} is supported", param="response_format",
                           code="unsupported")
    elif req.echo:
        raise APIError(400, "echo is not supported: the reply is the completion only", param="echo",
                       code="unsupported")
    elif req.suffix:
        raise APIError(400, "suffix is not supported: DialoGPT continues a prompt, it does not fill in",
                       param="suffix", code="unsupported")
    elif req.best_of is not None and req.best_of != (req.n or 1):
        raise APIError(400, "best_of other than n is not supported (use n; with --reverse_model, MMI picks "
                       "the best candidates)", param="best_of", code="unsupported")
    if req.stream_options is not None and not req.stream:
        raise APIError(400, "stream_options needs stream: true", param="stream_options")


# ---------------------------------------------------------------------------------------------
# responses


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] | None     # the likeliest tokens, when asked


@dataclass
class Choice:
    text: str
    finish_reason: str          # "stop" (EOS or a stop string) or "length" (max_tokens reached)
    n_tokens: int               # reply tokens generated (EOS not counted)
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Reply:
    choices: list[Choice]
    prompt_tokens: int          # context tokens the model saw

    def usage(self) -> dict:
        return usage(self.prompt_tokens, sum(c.n_tokens for c in self.choices))


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _bytes(s: str) -> list[int]:
    return list(s.encode("utf-8", "replace"))


def chat_logprobs(lps: list[TokenLogprob] | None) -> dict | None:
    if lps is None:
        return None
    return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": _bytes(t.token),
                         "top_logprobs": [{"token": s, "logprob": p, "bytes": _bytes(s)} for s, p in t.top or []]}
                        for t in lps], "refusal": None}


def completion_logprobs(lps: list[TokenLogprob] | None, offset: int = 0) -> dict | None:
    if lps is None:
        return None
    offsets, at = [], offset
    for t in lps:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in lps], "token_logprobs": [t.logprob for t in lps],
            "top_logprobs": [dict(t.top) if t.top is not None else None for t in lps], "text_offset": offsets}


class Wire:
    """One response's OpenAI shapes: chat ("chat.completion") or raw ("text_completion")."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def body(self, reply: Reply) -> dict:
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": c.text},
                        "logprobs": chat_logprobs(c.logprobs), "finish_reason": c.finish_reason}
                       for i, c in enumerate(reply.choices)]
        else:
            choices = [{"index": i, "text": c.text, "logprobs": completion_logprobs(c.logprobs),
                        "finish_reason": c.finish_reason} for i, c in enumerate(reply.choices)]
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, "usage": reply.usage()}

    def event(self, choices: list[dict], **extra) -> str:
        obj = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
               "created": self.created, "model": self.model, "choices": choices} | extra
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

    def start(self, index: int) -> str | None:
        """The role chunk a chat stream opens each choice with."""
        if not self.chat:
            return None
        return self.event([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None}])

    def delta(self, index: int, text: str, lps: list[TokenLogprob] | None = None, finish: str | None = None) -> str:
        if self.chat:
            return self.event([{"index": index, "delta": {"content": text} if text else {},
                                "logprobs": chat_logprobs(lps), "finish_reason": finish}])
        return self.event([{"index": index, "text": text, "logprobs": completion_logprobs(lps),
                            "finish_reason": finish}])

    def usage_event(self, usage_: dict) -> str:
        return self.event([], usage=usage_)

    @staticmethod
    def error_event(e: APIError) -> str:
        return "data: " + json.dumps(e.body()) + "\n\n"

    DONE = "data: [DONE]\n\n"
