"""A ranker: one head, or a DialogRPT ensemble (`.yml`) of heads, with its tokenizer.

Ensemble `.yml` (DialogRPT's restore/ensemble.yml): `prior` and `cond` lists of
`{name, wt, path}`, paths relative to the .yml's folder. Every member's score is the sigmoid of
its head; `final = avg_w(prior) * avg_w(cond)`, where avg_w is the weight-normalised mean
(negative weights allowed) and an empty or absent group counts as 1. A file named by several
members is loaded once.

Scores of one context are a dict {name: [score per candidate]} holding "final"; a single head's
only member is named "final" (`Ranker.single`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lsp_model.checkpoint import CheckpointError
from lsp_model.tokenizer import load_tokenizer

from .model import load_head
from .score import candidate_ids, context_ids, group_logits

GROUPS = ("prior", "cond")
FINAL = "final"


@dataclass
class Member:
    name: str
    weight: float
    path: str  # resolved; the key of its head


@dataclass
class Ranker:
    heads: dict[str, torch.nn.Module]      # path -> head
    groups: dict[str, list[Member]]        # "prior"/"cond" -> members; a single head: cond only
    tok: object
    single: bool
    batch_size: int = 32

    def _combine(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{member name: sigmoid score, "final": the combination} from each head's logits."""
        probs = {p: torch.sigmoid(v) for p, v in logits.items()}
        if self.single:
            return {FINAL: next(iter(probs.values()))}
        scores = {m.name: probs[m.path] for g in GROUPS for m in self.groups[g]}

        def avg_w(members):  # DialogRPT JointScorer.core's order of operations
            if not members:
                return 1
            s, w = 0, 0
            for m in members:
                s = s + scores[m.name] * m.weight
                w += m.weight
            return s / w
        return scores | {FINAL: avg_w(self.groups["prior"]) * avg_w(self.groups["cond"])}

    def score(self, contexts: list[list[str]], hyps: list[list[str]],
              max_cxt_turn: int | None = None) -> list[dict[str, list[float]]]:
        """Scores of every candidate of every context (all contexts share the batches; each
        context runs once, its candidates on its cache)."""
        groups = [(context_ids(self.tok, turns, max_cxt_turn), candidate_ids(self.tok, hs))
                  for turns, hs in zip(contexts, hyps)]
        if any(not c and not h for c, hs in groups for h in hs):
            raise ValueError("an empty context with an empty candidate has no token to score")
        bounds = [0]
        for _, hs in groups:
            bounds.append(bounds[-1] + len(hs))
        if bounds[-1] == 0:
            return [{} for _ in groups]
        flat = self._combine({p: group_logits(m, groups, self.batch_size) for p, m in self.heads.items()})
        flat = {k: v.tolist() for k, v in flat.items()}
        return [{k: v[a:b] for k, v in flat.items()} for a, b in zip(bounds, bounds[1:])]


def read_ensemble(path: Path) -> dict[str, list[Member]]:
    """The members of an ensemble .yml, checked: one clear error naming the file and the field."""
    import yaml
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable YAML file ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or not any(cfg.get(g) for g in GROUPS):
        raise CheckpointError(f"{path}: an ensemble needs a non-empty 'prior' or 'cond' list of {{name, wt, path}}")
    groups, names = {}, set()
    for g in GROUPS:
        items = cfg.get(g) or []
        if not isinstance(items, list):
            raise CheckpointError(f"{path}: '{g}' must be a list of {{name, wt, path}}")
        groups[g] = []
        for i, d in enumerate(items):
            where = f"{path}: {g}[{i}]"
            if not isinstance(d, dict) or not {"name", "wt", "path"} <= set(d):
                raise CheckpointError(f"{where}: needs name, wt and path")
            if not isinstance(d["wt"], (int, float)) or isinstance(d["wt"], bool):
                raise CheckpointError(f"{where} ({d['name']}): wt must be a number, not {d['wt']!r}")
            if d["name"] in names or d["name"] == FINAL:
                raise CheckpointError(f"{where}: name {d['name']!r} is used twice (or is the reserved 'final')")
            names.add(d["name"])
            p = Path(os.path.expanduser(str(d["path"])))
            p = p if p.is_absolute() else path.parent / p
            if not p.exists():
                raise CheckpointError(f"{where} ({d['name']}): {d['path']} not found (looked for {p})")
            groups[g].append(Member(str(d["name"]), float(d["wt"]), str(p.resolve())))
        if groups[g] and sum(m.weight for m in groups[g]) == 0:
            raise CheckpointError(f"{path}: the weights of '{g}' sum to 0: the weighted mean is undefined")
    return groups


def is_ensemble(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in (".yml", ".yaml")


def load_ranker(path: str | os.PathLike, dtype: str = "fp32", device: str = "cpu", batch_size: int = 32,
                tokenizer=None) -> Ranker:
    """A ranker from a head (any lsp_rank.model form) or an ensemble .yml."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"ranker not found: {p}")
    tok = tokenizer if tokenizer is not None else load_tokenizer(p if p.is_dir() else None)
    if not is_ensemble(p):
        key = str(p.resolve())
        return Ranker({key: load_head(p, dtype, device)}, {"prior": [], "cond": [Member(FINAL, 1.0, key)]},
                      tok, True, batch_size)
    groups = read_ensemble(p)
    heads = {}
    for m in (m for g in GROUPS for m in groups[g]):
        if m.path not in heads:
            heads[m.path] = load_head(m.path, dtype, device)
    return Ranker(heads, groups, tok, False, batch_size)
