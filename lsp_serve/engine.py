"""The model side of the server: a chat request becomes a DialoGPT context and decoding settings
(`prepare`, on the event loop, cheap), and a list of prepared jobs with the same settings becomes
one batched `generate` call (`run`, on the worker thread).

Context: the messages' user and assistant turns, oldest first, each followed by EOS, trimmed to
the newest turns that fit the chat history budget (lsp_model.chat.history_context, as
interact.py does). System messages are dropped: DialoGPT was trained on Reddit turns only.

Batch invariance: generate draws row r of a context from a generator seeded by
row_seed(cfg.seed, indices[i], r). The server fixes cfg.seed = 0 and passes each request's own
seed as its index, so a request's reply depends on its seed and settings only, never on which
other requests share its batch. Requests are batched only with others of identical settings
(the batch key), since generate takes one GenConfig.
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

from lsp_model.chat import clean_hypothesis, history_context
from lsp_model.generate import GenConfig, check_config, generate
from lsp_model.decoding import Reranker
from lsp_model.defaults import HISTORY_BUDGET
from lsp_model.tokenizer import decode, encode_batch

from .protocol import APIError, ChatRequest, Choice, Reply


@dataclass
class MMI:
    """Reverse-model reranking: `num_candidates` drawn per request, ranked by lsp_model.decoding's
    Reranker, then the best n."""
    rerank: Reranker
    num_candidates: int = 10


@dataclass
class Job:
    context: list[int]            # the ids the model sees
    turns: list[list[int]]        # the turns inside it (for MMI)
    cfg: GenConfig                # seed 0; the batch key
    seed: int
    n: int
    stop: list[str]
    stream: bool

    def key(self) -> tuple:
        return dataclasses.astuple(self.cfg)


class Engine:
    def __init__(self, model, tok, eos: int, vocab: int, cfg: GenConfig, history_budget: int = HISTORY_BUDGET,
                 mmi: MMI | None = None):
        self.model, self.tok, self.eos, self.vocab = model, tok, eos, vocab
        self.cfg, self.history_budget, self.mmi = cfg, history_budget, mmi
        self.n_positions = model.config.n_positions

    def defaults(self) -> dict:
        """The settings a request gets for the fields it leaves out."""
        c = self.cfg
        return {"max_tokens": c.max_new_tokens, "temperature": c.temperature if c.do_sample else 0.0,
                "top_p": c.top_p, "history_budget": self.history_budget, "n_positions": self.n_positions}

    # -- on the event loop ------------------------------------------------------------------

    def prepare(self, req: ChatRequest) -> Job:
        turns_text = [m.content.strip() for m in req.messages if m.role in ("user", "assistant")]
        last = next((m for m in reversed(req.messages) if m.role in ("user", "assistant")), None)
        if last is None or last.role != "user":
            raise APIError(400, "messages: the last user/assistant message must be from the user "
                           "(system messages are ignored: DialoGPT has no system prompt)", param="messages")
        max_tokens = req.max_tokens or req.max_completion_tokens or self.cfg.max_new_tokens
        if max_tokens > self.n_positions - 1:
            raise APIError(400, f"max_tokens {max_tokens} is beyond the model: it has {self.n_positions} positions "
                           f"and needs at least one for the context (at most {self.n_positions - 1})",
                           param="max_tokens", code="invalid_value")
        turns = encode_batch(self.tok, turns_text)
        room = min(self.history_budget, self.n_positions - max_tokens)
        if len(turns[-1]) + 1 > room:
            raise APIError(400, f"the last message is {len(turns[-1]) + 1} tokens (with its EOS); with "
                           f"max_tokens={max_tokens} the model sees at most {room} context tokens "
                           f"(history budget {self.history_budget}, {self.n_positions} positions): "
                           "shorten it or lower max_tokens", param="messages", code="context_length_exceeded")
        context, dropped = history_context(turns, self.eos, room)
        cfg = self._settings(req, max_tokens)
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        return Job(context, turns[dropped:], cfg, seed, req.n, req.stop, req.stream)

    def _settings(self, req: ChatRequest, max_tokens: int) -> GenConfig:
        change = {"max_new_tokens": max_tokens, "min_new_tokens": min(self.cfg.min_new_tokens, max_tokens), "seed": 0}
        if req.temperature == 0:
            change["do_sample"] = False
        elif req.temperature is not None:
            change |= {"do_sample": True, "temperature": req.temperature, "num_beams": 1}
        if req.top_p is not None:
            change["top_p"] = req.top_p
        cfg = dataclasses.replace(self.cfg, **change)
        n_rows = req.n
        if self.mmi is not None and (cfg.do_sample or cfg.num_beams > 1):
            n_rows = cfg.num_beams if cfg.num_beams > 1 else self.mmi.num_candidates
            if req.n > n_rows:
                raise APIError(400, f"n={req.n} is more than the {n_rows} MMI candidates per request", param="n")
        elif cfg.num_beams > 1:
            n_rows = max(req.n, 1)
        cfg = dataclasses.replace(cfg, num_return_sequences=n_rows)
        try:
            check_config(cfg)
        except ValueError as e:
            raise APIError(400, str(e), param="n" if "sequence" in str(e) else None) from None
        return cfg

    # -- on the worker thread ---------------------------------------------------------------

    def run(self, jobs: list[Job]) -> list[Reply]:
        """One generate call for jobs that share a batch key (and one MMI rerank if set)."""
        cfg = jobs[0].cfg
        hyps = generate(self.model, [j.context for j in jobs], cfg, self.eos, self.vocab,
                        indices=[j.seed for j in jobs])
        if self.mmi is not None and cfg.num_return_sequences > 1:
            hyps = self.mmi.rerank([j.turns for j in jobs], hyps)
        return [Reply([self._choice(h, j) for h in hs[:j.n]], len(j.context)) for hs, j in zip(hyps, jobs)]

    def _choice(self, hyp: dict, job: Job) -> Choice:
        ids = hyp["ids"]
        text = clean_hypothesis(decode(self.tok, ids))
        finish = "stop" if hyp["finished"] else "length"
        cut = min((i for i in (text.find(s) for s in job.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut].rstrip(), "stop"
        return Choice(text, finish, len(ids), token_pieces(self.tok, ids, text) if job.stream else [])


def token_pieces(tok, ids: list[int], text: str) -> list[str]:
    """`text` split where each token's text ends: the deltas a stream sends. Always joins to
    exactly `text` (a token that ends inside a UTF-8 character adds nothing until it is whole)."""
    out, sent = [], 0
    for k in range(1, len(ids) + 1):
        prefix = clean_hypothesis(decode(tok, ids[:k]))
        if prefix.endswith("\ufffd"):
            continue
        end = min(len(prefix), len(text))
        if end > sent:
            out.append(text[sent:end])
            sent = end
    if sent < len(text):
        out.append(text[sent:])
    return out
