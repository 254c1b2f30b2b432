"""LoRA fine-tuning in LSP_train (`--lora_r N`, N > 0), through peft.

The base (--init_checkpoint, any form lsp_model.checkpoint reads) is frozen and LoRA layers are
injected into the GPT2LMHeadModel in place, so the loop, the loss, AMP, DDP and the optimizer run
unchanged on the same module (only the trainable LoRA tensors reach the optimizer). Checkpoints
hold the adapter alone (GP2-pretrain-step-N-lora/, lsp_model.lora's folder); the resume state
adds the adapter weights and the settings + base sha256 a resume must match. When the run
reaches --num_optim_steps the adapter is merged and written as the original's .pkl and a plain
transformers folder (GP2-pretrain-step-N.pkl and GP2-pretrain-step-N-hf/).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lsp_model import lora as adapters
from lsp_model.checkpoint import save_original_pkl, save_pretrained
from lsp_model.runfolder import weights_path

from .args import UsageError

logger = logging.getLogger("LSP_train")


def settings(args) -> dict:
    """What defines the adapter: a resume must give the same."""
    return {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
            "targets": [t.strip() for t in args.lora_target.split(",") if t.strip()]}


@dataclass
class LoraTraining:
    peft_model: object
    settings: dict
    base: str     # the base checkpoint's absolute path
    sha256: str   # of the base weights (lsp_model.lora.base_sha256)

    def describe(self) -> dict:
        return self.settings | {"base": self.base, "base_sha256": self.sha256}

    def save(self, out_dir: Path, config, tokenizer) -> Path:
        return adapters.save_adapter(self.peft_model, out_dir, self.base, self.sha256, config, tokenizer)

    def resume_state(self) -> dict:
        return {"lora": self.describe(), "adapter": adapters.adapter_state_dict(self.peft_model)}

    def restore(self, resume: dict, source) -> None:
        """Adapter weights from a resume state, after checking it is this adapter on this base."""
        saved = resume.get("lora")
        if saved is None:
            raise UsageError(f"--resume_from_checkpoint: {source} is a full fine-tuning run; resume it without "
                             f"--lora_r")
        diff = [f"{k} {saved.get(k)} vs {v}" for k, v in self.settings.items() if saved.get(k) != v]
        if diff:
            raise UsageError(f"--resume_from_checkpoint: {source} was trained with other LoRA settings "
                             f"({', '.join(diff)})")
        if saved["base_sha256"] != self.sha256:
            raise UsageError(f"--resume_from_checkpoint: --init_checkpoint {self.base} is not the base "
                             f"{saved['base']} this run was trained on (weights differ)")
        adapters.load_adapter_state_dict(self.peft_model, resume["adapter"])

    def export_merged(self, run_dir: Path, step: int, pkl_dtype, tokenizer):
        """Merge the adapter in place (the LoRA layers are gone afterwards) and write the merged
        model as GP2-pretrain-step-N.pkl (original layout) and GP2-pretrain-step-N-hf/."""
        from .checkpoint import hf_path
        model = adapters.merge(self.peft_model)
        pkl = save_original_pkl(model, weights_path(run_dir, step), dtype=pkl_dtype)
        hf = save_pretrained(model, hf_path(run_dir, step), tokenizer=tokenizer)
        logger.info("LoRA merged into the base: %s and %s", pkl, hf)
        return model


def attach(args, model) -> LoraTraining:
    """Freeze `model` (the base, loaded from --init_checkpoint) and inject the LoRA layers."""
    s = settings(args)
    sha = adapters.base_sha256(model)
    try:
        pm = adapters.add_lora(model, s["r"], s["alpha"], s["dropout"], s["targets"])
    except ValueError as e:  # peft: a target that matches no layer
        raise UsageError(f"--lora_target {args.lora_target}: {str(e).splitlines()[0]}") from None
    return LoraTraining(pm, s, str(Path(args.init_checkpoint).resolve()), sha)
