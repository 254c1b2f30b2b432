"""Serving DialoGPT over HTTP: an OpenAI-compatible chat API with dynamic batching, and a web chat.

  protocol.py  the request schema, OpenAI's error shape, responses and stream chunks
  engine.py    requests -> DialoGPT contexts and decoding settings; one batched generate call
  batcher.py   a bounded queue and one worker thread that gathers requests into batches
  app.py       the FastAPI app: routes, API key, body limits, timeouts, server-sent events
  static/      the single-page web chat (plain HTML + JS, no build step, no CDN)

The command is `python serve.py --model CKPT`; see docs/serving.md.
"""
