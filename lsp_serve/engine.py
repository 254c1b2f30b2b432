"""The model side of the server: a request becomes a Job (a context, one decoding-row setting per
candidate, stop strings, its cost), and a job's finished rows become a Reply.

`prepare_*` runs in a worker thread of the event loop's pool (tokenizing is CPU work); the rows
run in the scheduler's decoder; `reply` runs on the scheduler thread.

Context (chat): the messages' user and assistant turns, oldest first, each followed by EOS,
trimmed to the newest turns that fit the chat history budget (lsp_model.chat.history_context, as
interact.py does). Only the turns that can fit are tokenized, newest first, and a turn longer in
bytes than the room times the longest token is refused or dropped before it is tokenized. System
messages are dropped: DialoGPT was trained on Reddit turns only. Raw completions: the prompt's
tokens as they are (an empty prompt is [EOS], the start of a conversation).

Batch invariance: candidate j of a request samples from its own generator seeded by
row_seed(seed, 0, j), so a seeded request's reply never depends on the rows it shares a step with.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from lsp_model.chat import history_context
from lsp_model.generate import GenConfig, RowSettings, check_config, generate, row_seed
from lsp_model.defaults import HISTORY_BUDGET
from lsp_model.tokenizer import decode, encode_batch

from .protocol import APIError, ChatRequest, Choice, CompletionRequest, Reply, TokenLogprob, _Sampling
from .text import TextStream


@dataclass
class Ranking:
    """Reranking (MMI, or any callable `(contexts_turns, hyps) -> hyps` such as
    lsp_model.decoding.Reranker): `num_candidates` drawn per sampled request, the best n kept."""
    rerank: object
    num_candidates: int = 10
    name: str = "mmi"


@dataclass
class Job:
    context: list[int]              # the ids the model sees
    turns: list[list[int]] | None   # the turns inside it, for a reranker (None: a raw prompt)
    rows: list[RowSettings]         # one decoder row per candidate
    n: int                          # choices returned
    stop: list[str]
    clean: bool                     # chat text is one cleaned line; raw completions as decoded
    rerank: bool                    # rows are candidates: all finish, then the best n are returned
    logprobs: int | None
    stream: bool
    beam: GenConfig | None = None   # beam search (a beam preset): decoded whole, not step by step

    @property
    def streams_tokens(self) -> bool:
        """A stream whose deltas go out token by token (candidates to rerank and beams come whole)."""
        return self.stream and not self.rerank and self.beam is None

    @property
    def cost(self) -> int:
        """KV-cache positions the job may hold: its rows x (context + reply)."""
        return len(self.rows) * (len(self.context) + self.rows[0].max_new_tokens)


class Engine:
    def __init__(self, model, tok, eos: int, vocab: int, cfg: GenConfig, history_budget: int = HISTORY_BUDGET,
                 ranking: Ranking | None = None):
        self.model, self.tok, self.eos, self.vocab = model, tok, eos, vocab
        self.cfg, self.history_budget, self.ranking = cfg, history_budget, ranking
        self.n_positions = model.config.n_positions
        # byte-level BPE: a token covers at most this many bytes (its string is one char per byte)
        self.max_token_bytes = max(len(t) for t in tok.get_vocab())

    def defaults(self) -> dict:
        """The settings a request gets for the fields it leaves out."""
        c = self.cfg
        return {"max_tokens": c.max_new_tokens, "temperature": c.temperature if c.do_sample else 0.0,
                "top_p": c.top_p, "top_k": c.top_k, "repetition_penalty": c.repetition_penalty,
                "no_repeat_ngram_size": c.no_repeat_ngram_size, "min_tokens": c.min_new_tokens,
                "history_budget": self.history_budget, "n_positions": self.n_positions}

    # -- in the event loop's thread pool ----------------------------------------------------

    def prepare_chat(self, req: ChatRequest) -> Job:
        turns_text = [m.content.strip() for m in req.messages if m.role in ("user", "assistant")]
        last = next((m for m in reversed(req.messages) if m.role in ("user", "assistant")), None)
        if last is None or last.role != "user":
            raise APIError(400, "messages: the last user/assistant message must be from the user "
                           "(system messages are ignored: DialoGPT has no system prompt)", param="messages")
        max_tokens = self._max_tokens(req)
        room = min(self.history_budget, self.n_positions - max_tokens)
        turns = self._newest_turns(turns_text, room, max_tokens)
        context, dropped = history_context(turns, self.eos, room)
        return self._job(req, context, turns[dropped:], max_tokens, clean=True)

    def prepare_completion(self, req: CompletionRequest) -> Job:
        max_tokens = self._max_tokens(req)
        room = self.n_positions - max_tokens
        if isinstance(req.prompt, str):
            if len(req.prompt.encode()) > room * self.max_token_bytes:
                self._too_long("prompt", None, room, max_tokens)
            context = encode_batch(self.tok, [req.prompt])[0] if req.prompt else []
        else:
            context = list(req.prompt)
            bad = [t for t in context if not 0 <= t < self.vocab]
            if bad:
                raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary (0..{self.vocab - 1})",
                               param="prompt", code="invalid_value")
        context = context or [self.eos]
        if len(context) > room:
            self._too_long("prompt", len(context), room, max_tokens)
        return self._job(req, context, None, max_tokens, clean=False)

    def _max_tokens(self, req: _Sampling) -> int:
        max_tokens = req.token_limit() or self.cfg.max_new_tokens
        if max_tokens > self.n_positions - 1:
            raise APIError(400, f"max_tokens {max_tokens} is beyond the model: it has {self.n_positions} positions "
                           f"and needs at least one for the context (at most {self.n_positions - 1})",
                           param="max_tokens", code="invalid_value")
        return max_tokens

    def _too_long(self, param: str, n_tokens: int | None, room: int, max_tokens: int):
        size = f"is {n_tokens} tokens" if n_tokens is not None else "is longer than any text of that many tokens"
        raise APIError(400, f"the {'last message' if param == 'messages' else param} {size}; with "
                       f"max_tokens={max_tokens} the model sees at most {room} context tokens "
                       f"(history budget {self.history_budget}, {self.n_positions} positions): "
                       "shorten it or lower max_tokens", param=param, code="context_length_exceeded")

    def _newest_turns(self, texts: list[str], room: int, max_tokens: int) -> list[list[int]]:
        """The newest turns that may fit `room` tokens, tokenized (older ones are never encoded);
        older turns are stand-ins that history_context will drop. Raises if the last one cannot fit."""
        out: list[list[int]] = []
        used = 0
        for i, text in enumerate(reversed(texts)):
            if len(text.encode()) > (room - used) * self.max_token_bytes:   # cannot fit: not even tokenized
                if i == 0:
                    self._too_long("messages", None, room, max_tokens)
                break
            ids = encode_batch(self.tok, [text])[0]
            out.append(ids)
            used += len(ids) + 1
            if used > room:
                break
        if len(out[0]) + 1 > room:
            self._too_long("messages", len(out[0]) + 1, room, max_tokens)
        return out[::-1]

    def _job(self, req: _Sampling, context, turns, max_tokens: int, clean: bool) -> Job:
        cfg = self.cfg
        sample = cfg.do_sample if req.temperature is None else req.temperature > 0
        min_tokens = req.min_tokens if req.min_tokens is not None else min(cfg.min_new_tokens, max_tokens)
        if min_tokens > max_tokens:
            raise APIError(400, f"min_tokens {min_tokens} is more than max_tokens {max_tokens}", param="min_tokens")
        bias = {int(k): v for k, v in (req.logit_bias or {}).items()}
        if any(k >= self.vocab for k in bias):
            raise APIError(400, f"logit_bias: token id {max(bias)} is outside the vocabulary (0..{self.vocab - 1})",
                           param="logit_bias", code="invalid_value")
        logprobs = req.top_logprobs_wanted()
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        row = dict(max_new_tokens=max_tokens, min_new_tokens=min_tokens, do_sample=sample,
                   temperature=req.temperature if req.temperature else cfg.temperature,
                   top_k=cfg.top_k if req.top_k is None else req.top_k,
                   top_p=cfg.top_p if req.top_p is None else req.top_p,
                   repetition_penalty=cfg.repetition_penalty if req.repetition_penalty is None
                   else req.repetition_penalty,
                   frequency_penalty=req.frequency_penalty or 0.0, presence_penalty=req.presence_penalty or 0.0,
                   no_repeat_ngram_size=cfg.no_repeat_ngram_size if req.no_repeat_ngram_size is None
                   else req.no_repeat_ngram_size,
                   logit_bias=bias or None, logprobs=logprobs)
        n = req.n or 1
        ranking = self.ranking if turns is not None else None
        rerank = ranking is not None and sample
        n_rows = ranking.num_candidates if rerank else n
        if rerank and n > n_rows:
            raise APIError(400, f"n={n} is more than the {n_rows} {ranking.name.upper()} candidates per request",
                           param="n")
        if not sample and n > 1 and cfg.num_beams == 1:
            raise APIError(400, f"n={n} needs sampling (temperature > 0): greedy decoding gives one reply",
                           param="n")
        if rerank:
            row["logprobs"] = 0 if logprobs is None else logprobs     # the reranker reads the forward logprob
        beam = None
        if not sample and cfg.num_beams > 1:        # the server's beam preset, unless the request samples
            beam = GenConfig(**{**cfg.__dict__, "max_new_tokens": max_tokens, "min_new_tokens": min_tokens,
                                "num_return_sequences": cfg.num_beams if ranking else n, "seed": 0})
            try:
                check_config(beam)
            except ValueError as e:
                raise APIError(400, str(e), param="n") from None
            rerank = ranking is not None
        rows = [RowSettings(**row, seed=row_seed(seed, 0, j)) for j in range(n_rows)]
        try:
            rows[0].check(self.vocab)
        except ValueError as e:
            raise APIError(400, str(e), code="invalid_value") from None
        return Job(context, turns, rows, n, req.stop, clean, rerank, logprobs, bool(req.stream), beam)

    # -- on the scheduler thread ------------------------------------------------------------

    def token_logprob(self, token: int, lp: float, top) -> TokenLogprob:
        return TokenLogprob(decode(self.tok, [token]), lp,
                            None if top is None else [(decode(self.tok, [t]), p) for t, p in top])

    def rank(self, job: Job, hyps: list[dict]) -> list[dict]:
        """The candidates best first (the reranker's order), when the job reranks."""
        return self.ranking.rerank([job.turns], [hyps])[0] if job.rerank else hyps

    def beam_hyps(self, job: Job) -> list[dict]:
        return generate(self.model, [job.context], job.beam, self.eos, self.vocab)[0]

    def choice(self, job: Job, ids: list[int], finished: bool) -> Choice:
        """A whole hypothesis as a choice (beam search, reranked candidates)."""
        stream = TextStream(self.tok, job.stop, job.clean)
        for t in ids:
            stream.push(t)
            if stream.stopped:
                break
        stream.finish()
        return Choice(stream.text, "stop" if finished or stream.stopped else "length", len(ids))

