"""The chat template every transformers folder we write carries, so `apply_chat_template`,
`pipeline("text-generation")` on message lists, `transformers serve`, TRL and vLLM can chat with
it (transformers has had no default template since 4.44).

It renders DialoGPT's own format, the one training and lsp_model.chat use:
    user EOS assistant EOS user EOS ...     (EOS = <|endoftext|>)
- each turn's text is stripped (as serve.py does) and followed by EOS;
- system and developer messages are dropped: DialoGPT has no system prompt (serve.py ignores them);
- `add_generation_prompt` adds nothing: after the last EOS the model starts the reply itself;
- assistant turns sit inside {% generation %}, so `return_assistant_tokens_mask` marks exactly
  the reply and its EOS, the tokens DialoGPT trains on;
- OpenAI-style content lists keep their text parts, joined by a space (as lsp_serve does).
One difference: a literal "<|endoftext|>" typed inside a message becomes the EOS token in
transformers, while our own tokenizer keeps it as text (as the original did).

    python -m lsp_model.convert --chat_template models/DialoGPT-medium   # add it to a download
"""
from __future__ import annotations

import json
import os
from pathlib import Path

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] | trim -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text')"
    " | join(' ') | trim -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ text }}{{ eos_token }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- generation -%}{{ text }}{{ eos_token }}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

TOKENIZER_CONFIG = "tokenizer_config.json"
JINJA_FILE = "chat_template.jinja"  # transformers >= 4.50 reads this first when present


def add_chat_template(folder: str | os.PathLike, overwrite: bool = False) -> str:
    """Put CHAT_TEMPLATE into `folder`'s tokenizer_config.json (created if missing), atomically.
    A different template already there (in that file or a chat_template.jinja) is kept unless
    `overwrite`. Returns what was done, in words."""
    from lsp_io.atomic import atomic_file

    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a folder")
    if not any((d / f).is_file() for f in ("vocab.json", "tokenizer.json")):
        raise FileNotFoundError(f"{d}: no tokenizer files (vocab.json or tokenizer.json): not a model folder")
    path = d / TOKENIZER_CONFIG
    try:
        cfg = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read it as JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a JSON object")
    jinja = d / JINJA_FILE
    others = [str(p) for p, t in ((path, cfg.get("chat_template")), (jinja, _read(jinja)))
              if t not in (None, CHAT_TEMPLATE)]
    if others and not overwrite:
        raise FileExistsError(f"{', '.join(others)} already holds another chat template (pass --overwrite)")
    if cfg.get("chat_template") == CHAT_TEMPLATE and _read(jinja) in (None, CHAT_TEMPLATE):
        return f"{path} already has DialoGPT's chat template"
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg.setdefault("eos_token", "<|endoftext|>")
    with atomic_file(path, "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    if jinja.is_file():
        jinja.unlink()  # it would win over tokenizer_config.json
    return f"wrote DialoGPT's chat template into {path}"


def _read(p: Path) -> str | None:
    return p.read_text(encoding="utf-8") if p.is_file() else None
