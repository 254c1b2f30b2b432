"""Serving DialoGPT over HTTP: an OpenAI-compatible API with continuous batching and token
streaming, and a web chat.

  protocol.py   the request schemas (chat, raw completions), OpenAI's error shape, responses and chunks
  engine.py     requests -> Jobs (a context, per-row decoding settings, cost); reranking hook
  text.py       a reply's text as tokens arrive: UTF-8 safe deltas, stop strings
  scheduler.py  one worker thread stepping lsp_model.generate.Decoder; admission by cost, cancels
  guard.py      Host allow-list and refusal of cross-origin browser requests
  app.py        the FastAPI app: routes, API key, body limits, timeouts, server-sent events, SIGTERM drain
  launch.py     serve.py as a subprocess on a free port (tests, benchmark, notebooks)
  static/       the single-page web chat (plain HTML + JS, no build step, no CDN)

The command is `python serve.py --model CKPT`; see docs/serving.md.
"""
